"""The lineage database, `.gitpipe/lineage.db`: every run and every step's execution.

Written with sqlite-utils from the main process only, as a listener of run events.
Schema version 1 (documented in docs/lineage.md) holds `runs` and `executions`;
later versions add tables and are applied as numbered migrations, never a rebuild.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

from gitpipe.events import Event, RunFinished, RunStarted, StepFinished

SCHEMA_VERSION = 1


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="milliseconds")


def open_db(path: Path) -> sqlite_utils.Database:
    """Open (and create or migrate) the lineage database."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(sqlite3.connect(path, timeout=30))
    db.conn.execute("PRAGMA journal_mode=WAL")
    db.conn.execute("PRAGMA synchronous=NORMAL")
    version = db.conn.execute("PRAGMA user_version").fetchone()[0]
    if version < 1:
        db["runs"].create(
            {
                "id": str,
                "started": str,
                "ended": str,
                "git_commit": str,
                "dirty": int,
                "argv": str,
                "host": str,
                "status": str,
            },
            pk="id",
            if_not_exists=True,
        )
        db["executions"].create(
            {
                "id": int,
                "run_id": str,
                "step": str,
                "key": str,
                "state": str,
                "reasons": str,
                "started": str,
                "ended": str,
                "duration": float,
                "exit_code": int,
                "log": str,
                "message": str,
            },
            pk="id",
            foreign_keys=[("run_id", "runs", "id")],
            if_not_exists=True,
        )
        db["executions"].create_index(["run_id"], if_not_exists=True)
        db["executions"].create_index(["step"], if_not_exists=True)
        db.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return db


class LineageRecorder:
    """A run-event listener that writes runs and executions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_db(path)
        self.run_id = ""

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.run_id = event.run_id
            self.db["runs"].insert(
                {
                    "id": event.run_id,
                    "started": _iso(event.started),
                    "ended": None,
                    "git_commit": event.commit,
                    "dirty": None if event.dirty is None else int(event.dirty),
                    "argv": json.dumps(list(event.argv)),
                    "host": socket.gethostname(),
                    "status": "running",
                }
            )
        elif isinstance(event, StepFinished):
            self.db["executions"].insert(
                {
                    "run_id": self.run_id,
                    "step": event.step,
                    "key": event.key or None,
                    "state": event.state,
                    "reasons": json.dumps(list(event.reasons)),
                    "started": _iso(event.started) if event.started else None,
                    "ended": _iso(event.ended) if event.ended else None,
                    "duration": event.duration,
                    "exit_code": event.exit_code,
                    "log": event.log or None,
                    "message": event.message or None,
                }
            )
        elif isinstance(event, RunFinished):
            self.db["runs"].update(
                event.run_id, {"ended": _iso(event.ended), "status": event.status}
            )

    def close(self) -> None:
        self.db.conn.close()
