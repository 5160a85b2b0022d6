"""The lineage database, `.gitpipe/lineage.db`: every run, every step's execution, and
which bytes each execution read and wrote.

Written with sqlite-utils from the main process only, as a listener of run events,
in WAL mode.  The schema is an interface (docs/lineage.md): it changes only through
the numbered migrations below, recorded in SQLite's ``user_version``; a database is
never silently rebuilt.  A database from a newer gitpipe is left alone (the run goes
on unrecorded); a damaged one is reported, never fatal to a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitpipe.core.errors import GitpipeError
from gitpipe.core.redaction import redact_argv  # a --remote url's secrets
from gitpipe.run import events as ev

if TYPE_CHECKING:  # sqlite-utils is imported only to migrate and to query
    import sqlite_utils


class LineageError(GitpipeError):
    """The lineage database cannot be read or written."""

    exit_code = 5


def _v1(db: sqlite_utils.Database) -> None:
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


def _v2(db: sqlite_utils.Database) -> None:
    runs = db["runs"]
    for column, kind in (("pipeline", str), ("jobs", int), ("backend", str)):
        if column not in runs.columns_dict:
            runs.add_column(column, kind)
    db["artifacts"].create({"digest": str, "size": int, "is_dir": int}, pk="digest")
    db["io"].create(
        {"execution_id": int, "role": str, "path": str, "digest": str},
        foreign_keys=[("execution_id", "executions", "id"), ("digest", "artifacts", "digest")],
    )
    db["io"].create_index(["path", "digest"])
    db["io"].create_index(["execution_id"])
    db["params"].create(
        {"execution_id": int, "name": str, "value": str},
        foreign_keys=[("execution_id", "executions", "id")],
    )
    db["params"].create_index(["execution_id"])
    db["metrics"].create(
        {"execution_id": int, "path": str, "name": str, "value": float, "text": str},
        foreign_keys=[("execution_id", "executions", "id")],
    )
    db["metrics"].create_index(["execution_id"])


def _v3(db: sqlite_utils.Database) -> None:
    runs = db["runs"]
    if "overrides" not in runs.columns_dict:  # `repro -p`: params given for this run only
        runs.add_column("overrides", str)
    db["approvals"].create(
        {
            "id": int,
            "step": str,
            "key": str,
            "approved_by": str,
            "approved_at": str,
            "run_id": str,
        },
        pk="id",
        if_not_exists=True,
    )
    db["approvals"].create_index(["step", "key"], if_not_exists=True)


def _v4(db: sqlite_utils.Database) -> None:
    runs = db["runs"]
    # the gitpipe process that runs the run, so that a run whose process is gone can
    # be told from one that still runs (see `settle`)
    for column, kind in (("pid", int), ("process", str)):
        if column not in runs.columns_dict:
            runs.add_column(column, kind)
    db["runs"].create_index(["status"], if_not_exists=True)


def _v5(db: sqlite_utils.Database) -> None:
    executions = db["executions"]
    # where a step ran (a dask worker's address and host; empty: this process) and
    # how long its transfers through the remote store took (none: it ran in place)
    for column, kind in (("worker", str), ("transfer_seconds", float)):
        if column not in executions.columns_dict:
            executions.add_column(column, kind)


def _v6(db: sqlite_utils.Database) -> None:
    # `gitpipe audit`: each step run again in a scratch copy, apart from the real runs
    db["audits"].create(
        {
            "id": int,
            "audit_id": str,
            "started": str,
            "git_commit": str,
            "step": str,
            "key": str,
            "verdict": str,
            "outputs": str,
            "message": str,
            "deterministic": int,
            "duration": float,
        },
        pk="id",
        if_not_exists=True,
    )
    db["audits"].create_index(["step"], if_not_exists=True)


#: migration N brings a database from user_version N-1 to N
MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (_v1, _v2, _v3, _v4, _v5, _v6)
SCHEMA_VERSION = len(MIGRATIONS)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="milliseconds")


def open_connection(path: Path, *, create: bool = True) -> sqlite3.Connection:
    """Open the lineage database, applying the migrations it lacks; a plain
    connection, so that recording a run does not import sqlite-utils."""
    if not create and not path.exists():
        raise LineageError(f"no lineage yet at {path}; run `gitpipe repro` first")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:  # check before anything can change the file
            conn.close()
            raise LineageError(
                f"{path} has lineage schema {version}, newer than this gitpipe's "
                f"{SCHEMA_VERSION}; upgrade gitpipe"
            )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        if version < SCHEMA_VERSION:
            import sqlite_utils

            db = sqlite_utils.Database(conn)
            for number in range(version + 1, SCHEMA_VERSION + 1):
                with conn:
                    MIGRATIONS[number - 1](db)
                    conn.execute(f"PRAGMA user_version={number}")
    except OSError as exc:  # its folder cannot be made: read-only, no space, ...
        raise LineageError(f"cannot write the lineage database {path} ({exc.strerror})") from exc
    except sqlite3.Error as exc:
        raise lineage_error(path, exc) from exc
    return conn


#: SQLite's primary result codes (sqlite3.h) that say the file is not a database, or
#: a damaged one; anything else (no space, read-only, no permission, busy, an I/O
#: error) says nothing of the file's content, which must then be left as it is
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_DAMAGED_WORDS = ("malformed", "not a database", "corrupt")


def damaged(exc: sqlite3.Error) -> bool:
    """True when SQLite says the database file itself is damaged (or is not one)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    return any(word in str(exc).lower() for word in _DAMAGED_WORDS)


def lineage_error(path: Path, exc: sqlite3.Error) -> LineageError:
    """The error to report for ``exc``: moving the file away is advised for a damaged
    database only; a full disk or a read-only file system leaves a healthy history
    that moving it away would lose."""
    if damaged(exc):
        return LineageError(
            f"the lineage database {path} is damaged ({exc}); move it away to start a new one"
        )
    return LineageError(f"cannot use the lineage database {path} ({exc}); it is left as it is")


def connect(path: Path, *, create: bool = True) -> sqlite_utils.Database:
    """The lineage database for queries (sqlite-utils), migrated like `open_connection`,
    with the runs whose gitpipe is gone marked `killed` (:func:`settle`)."""
    import sqlite_utils

    conn = open_connection(path, create=create)
    with contextlib.suppress(sqlite3.Error):  # a read-only database is still read
        settle(conn)
    return sqlite_utils.Database(conn)


def read_only(path: Path) -> sqlite_utils.Database:
    """The lineage database for queries that change nothing, not even the times of
    the folder it is in (`exp`, `diff`).  When no connection has it open (no ``-wal``
    file beside it) SQLite is told the file cannot change, so that it makes no side
    files; else it is opened read-only beside the writer.  A database that lacks
    migrations is opened as :func:`connect` does (migrated first)."""
    import sqlite_utils

    if not path.exists():
        raise LineageError(f"no lineage yet at {path}; run `gitpipe repro` first")
    idle = not path.with_name(path.name + "-wal").exists()
    uri = path.resolve().as_uri() + ("?mode=ro&immutable=1" if idle else "?mode=ro")
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise lineage_error(path, exc) from exc
    if version != SCHEMA_VERSION:
        conn.close()
        return connect(path, create=False)  # migrated, or refused when newer
    return sqlite_utils.Database(conn)


# -- runs whose gitpipe is gone --------------------------------------------------

#: the status of a run whose gitpipe process ended without recording the run's end
KILLED = "killed"


def process_identity(pid: int) -> str | None:
    """What tells a process apart from a later one given the same pid: the boot, the
    pid namespace and the start time (``/proc/PID/stat`` field 22, clock ticks since
    boot).  None where there is no ``/proc`` to read it from."""
    here, stat = _machine(), _stat(pid)
    return None if here is None or stat is None else f"{here} {stat[1]}"


def _machine() -> str | None:
    """This boot of this machine, and this process's pid namespace."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
        return f"{boot} {os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def _stat(pid: int) -> tuple[bytes, int] | None:
    """A process's state letter and start time, from ``/proc/PID/stat``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # pid (comm) state ppid ...: comm may hold spaces and ")", so split after the last
    fields = stat.rsplit(b")", 1)[1].split()
    return fields[0], int(fields[19])


def _gone(pid: int, identity: str | None) -> bool:
    """Whether the process recorded as ``pid`` (with ``identity``) on this host is
    gone: the machine started again since, or no process has that pid, or a zombie
    has, or a later process (a start time of its own).  False where it cannot be
    told: another pid namespace, or nothing to read the start time from."""
    here = _machine()
    recorded, _, started = (identity or "").rpartition(" ")
    if identity is not None and here is not None:
        if recorded.split(" ")[0] != here.split(" ")[0]:
            return True  # another boot
        if recorded != here:
            return False  # another pid namespace: its pids are not ours to look up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process has the pid
        pass
    except OSError:
        return False
    stat = _stat(pid)
    if identity is None or here is None or stat is None:
        return False
    state, now = stat
    return state == b"Z" or str(now) != started


def settle(conn: sqlite3.Connection) -> list[str]:
    """Mark ``killed`` each run recorded as running on this host whose gitpipe process
    is gone (SIGKILL, a crash, a power cut), and return their ids.

    A run from another host, or one recorded before the runs had a pid (schema 3),
    is left as it is: whether it still runs cannot be told from here."""
    host = os.uname().nodename
    rows = conn.execute(
        "SELECT id, pid, process FROM runs WHERE status = 'running' AND host = ?"
        " AND pid IS NOT NULL",
        (host,),
    ).fetchall()
    gone = [run_id for run_id, pid, identity in rows if _gone(int(pid), identity)]
    if gone:
        with conn:
            conn.executemany(
                "UPDATE runs SET status = ? WHERE id = ? AND status = 'running'",
                [(KILLED, run_id) for run_id in gone],
            )
    return gone


_INSERT_EXECUTION = (
    "INSERT INTO executions (run_id, step, key, state, reasons, started, ended,"
    " duration, exit_code, log, message, worker, transfer_seconds)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
#: steps that changed nothing in the workspace: their rows wait for the next commit
_QUIET = frozenset({ev.UP_TO_DATE, ev.FROZEN, ev.SKIPPED, ev.WOULD_RUN, ev.WOULD_RESTORE})


class LineageRecorder:
    """A run-event listener that writes runs, executions, artifacts, io, params, metrics.

    A step that ran, was restored or failed is committed as it finishes; the rows of
    steps that did nothing (up to date, frozen, skipped) join the next commit, at the
    latest when the run finishes, so that a no-op run of many steps is one transaction.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = open_connection(path)
        with contextlib.suppress(sqlite3.Error):  # before this run is one of them
            settle(self.conn)
        self.run_id = ""
        self.error = ""
        self._quiet: list[tuple[Any, ...]] = []  # rows of do-nothing steps, not inserted yet

    def __call__(self, event: ev.Event) -> None:
        if self.error:
            return
        try:
            self._record(event)
        except sqlite3.Error as exc:
            self.error = f"lineage was not recorded ({exc})"

    def _record(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self.run_id = event.run_id
            with self.conn:
                self.conn.execute(
                    "INSERT INTO runs (id, started, ended, git_commit, dirty, argv, host, status,"
                    " pipeline, jobs, backend, overrides, pid, process)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        event.run_id,
                        _iso(event.started),
                        None,
                        event.commit,
                        None if event.dirty is None else int(event.dirty),
                        json.dumps(redact_argv(event.argv)),
                        os.uname().nodename,  # the host name, without importing socket
                        "running",
                        event.pipeline,
                        event.jobs,
                        event.backend,
                        json.dumps(dict(event.overrides), sort_keys=True, default=str)
                        if event.overrides
                        else None,
                        os.getpid(),  # the recorder runs in the process that runs the run
                        process_identity(os.getpid()),
                    ),
                )
        elif isinstance(event, ev.StepFinished):
            self._execution(event)
        elif isinstance(event, ev.RunFinished):
            self._flush()
            with self.conn:
                self.conn.execute(
                    "UPDATE runs SET ended = ?, status = ? WHERE id = ?",
                    (_iso(event.ended), event.status, event.run_id),
                )

    def _execution(self, event: ev.StepFinished) -> None:
        row = (
            self.run_id,
            event.step,
            event.key or None,
            event.state,
            json.dumps(list(event.reasons)) if event.reasons else "[]",
            _iso(event.started) if event.started else None,
            _iso(event.ended) if event.ended else None,
            event.duration,
            event.exit_code,
            event.log or None,
            event.message or None,
            event.worker or None,
            event.transfer,
        )
        if event.state in _QUIET and not (
            event.reads or event.writes or event.params or event.metrics
        ):
            self._quiet.append(row)  # one insert for all of them, at the next commit
            return
        conn = self.conn
        try:
            self._flush(commit=False)
            self._insert_execution(event, row)
        except BaseException:
            conn.rollback()
            raise
        if event.state not in _QUIET:
            conn.commit()

    def _flush(self, *, commit: bool = True) -> None:
        """Insert the rows of do-nothing steps kept so far."""
        if self._quiet:
            rows, self._quiet = self._quiet, []
            self.conn.executemany(_INSERT_EXECUTION, rows)
            if commit:
                self.conn.commit()

    def _insert_execution(self, event: ev.StepFinished, row: tuple[Any, ...]) -> None:
        conn = self.conn
        cursor = conn.execute(_INSERT_EXECUTION, row)
        execution = cursor.lastrowid
        artifacts = [*event.reads, *event.writes]
        if artifacts:
            conn.executemany(
                "INSERT OR IGNORE INTO artifacts (digest, size, is_dir) VALUES (?,?,?)",
                [(a.digest, a.size, int(a.is_dir)) for a in artifacts],
            )
            conn.executemany(
                "INSERT INTO io (execution_id, role, path, digest) VALUES (?,?,?,?)",
                [(execution, a.role, a.path, a.digest) for a in artifacts],
            )
        if event.params:
            conn.executemany(
                "INSERT INTO params (execution_id, name, value) VALUES (?,?,?)",
                [
                    (execution, name, json.dumps(value, sort_keys=True, default=str))
                    for name, value in event.params.items()
                ],
            )
        rows = []
        for path, values in event.metrics.items():
            for name, value in values.items():
                number = (
                    float(value)
                    if isinstance(value, (int, float)) and not isinstance(value, bool)
                    else None
                )
                rows.append((execution, path, name, number, json.dumps(value)))
        if rows:
            conn.executemany(
                "INSERT INTO metrics (execution_id, path, name, value, text) VALUES (?,?,?,?,?)",
                rows,
            )

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._flush()  # quiet steps of a run that never finished
        self.conn.close()


# -- approvals -------------------------------------------------------------------


def record_approval(path: Path, step: str, key: str, who: str, run_id: str = "") -> None:
    """Approve ``step`` to run with ``key`` (and only that key), as ``who``."""
    conn = open_connection(path)
    try:
        with conn:
            conn.execute(
                "INSERT INTO approvals (step, key, approved_by, approved_at, run_id)"
                " VALUES (?,?,?,?,?)",
                (
                    step,
                    key,
                    who,
                    datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    run_id or None,
                ),
            )
    except sqlite3.Error as exc:
        raise LineageError(f"the approval was not recorded ({exc})") from exc
    finally:
        conn.close()


def approval_of(path: Path, step: str, key: str) -> dict[str, Any] | None:
    """Who approved ``step`` to run with ``key``, and when; None: nobody yet."""
    if not path.exists():
        return None
    conn = open_connection(path, create=False)
    try:
        row = conn.execute(
            "SELECT approved_by, approved_at, run_id FROM approvals WHERE step = ? AND key = ?"
            " ORDER BY id DESC LIMIT 1",
            (step, key),
        ).fetchone()
    except sqlite3.Error as exc:
        raise LineageError(f"approvals cannot be read from {path} ({exc})") from exc
    finally:
        conn.close()
    if row is None:
        return None
    return {"approved_by": row[0], "approved_at": row[1], "run_id": row[2] or None}


# -- audits ----------------------------------------------------------------------


def record_audit(
    path: Path, audit_id: str, commit: str | None, verdicts: list[dict[str, Any]]
) -> None:
    """Record one `gitpipe audit`: a row per step (its verdict, the outputs that differ)."""
    conn = open_connection(path)
    started = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    try:
        with conn:
            conn.executemany(
                "INSERT INTO audits (audit_id, started, git_commit, step, key, verdict,"
                " outputs, message, deterministic, duration) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        audit_id,
                        started,
                        commit,
                        v["step"],
                        v["key"],
                        v["verdict"],
                        json.dumps(v["outputs"]),
                        v["message"],
                        int(bool(v["deterministic"])),
                        v["duration"],
                    )
                    for v in verdicts
                ],
            )
    except sqlite3.Error as exc:
        raise LineageError(f"the audit was not recorded ({exc})") from exc
    finally:
        conn.close()


def audits(db: sqlite_utils.Database, *, step: str | None = None) -> list[dict[str, Any]]:
    """The audits' rows, newest first (one step's with ``step``)."""
    where, args = ("WHERE step = ?", [step]) if step else ("", [])
    rows = db.query(f"SELECT * FROM audits {where} ORDER BY id DESC", args)
    return [{**row, "outputs": json.loads(row["outputs"] or "[]")} for row in rows]


# -- queries ---------------------------------------------------------------------


_RUN_COLUMNS = "id, started, ended, git_commit, dirty, status, argv, overrides"


def runs(db: sqlite_utils.Database, *, limit: int = 20) -> list[dict[str, Any]]:
    """The latest runs, newest first, with their execution counts by state."""
    rows = db.query(
        f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY started DESC, rowid DESC LIMIT ?", [limit]
    )
    return [_run_row(db, row) for row in list(rows)]


def run(db: sqlite_utils.Database, run_id: str) -> dict[str, Any]:
    """One run (an id :func:`find_run` gave), with its execution counts by state."""
    row = next(db.query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", [run_id]), None)
    if row is None:
        raise LineageError(f"no run {run_id!r} in lineage; `gitpipe log` lists the runs")
    return _run_row(db, row)


def _run_row(db: sqlite_utils.Database, row: dict[str, Any]) -> dict[str, Any]:
    row["argv"] = json.loads(row["argv"] or "[]")
    _decoded(row)  # overrides: `repro -p`, for this run only
    row["counts"] = {
        r["state"]: r["n"]
        for r in db.query(
            "SELECT state, count(*) AS n FROM executions WHERE run_id = ? GROUP BY state",
            [row["id"]],
        )
    }
    return row


def find_run(db: sqlite_utils.Database, ref: str) -> str:
    """A run id from a full id, a unique prefix, or ``last``."""
    if ref in ("last", "latest", "@"):
        row = next(db.query("SELECT id FROM runs ORDER BY started DESC, rowid DESC LIMIT 1"), None)
        if row is None:
            raise LineageError("no runs recorded yet")
        return str(row["id"])
    matches = [r["id"] for r in db.query("SELECT id FROM runs WHERE id LIKE ?", [ref + "%"])]
    if not matches:
        raise LineageError(f"no run {ref!r} in lineage; `gitpipe log` lists the runs")
    if len(matches) > 1:
        raise LineageError(f"{ref!r} names {len(matches)} runs; give more of the id")
    return str(matches[0])


def executions(db: sqlite_utils.Database, run_id: str) -> list[dict[str, Any]]:
    rows = list(
        db.query(
            "SELECT id, step, key, state, reasons, started, ended, duration, exit_code, log,"
            " message FROM executions WHERE run_id = ? ORDER BY id",
            [run_id],
        )
    )
    for row in rows:
        row["reasons"] = json.loads(row["reasons"] or "[]")
    return rows


def step_logs(db: sqlite_utils.Database, step: str, run_id: str | None = None) -> list[str]:
    """The log files of a step's executions that wrote one, newest first: in one run,
    or in any."""
    where, args = ("AND run_id = ?", [step, run_id]) if run_id else ("", [step])
    rows = db.query(
        f"SELECT log FROM executions WHERE step = ? AND log IS NOT NULL {where} ORDER BY id DESC",
        args,
    )
    return [str(row["log"]) for row in rows]


def current_metrics(db: sqlite_utils.Database) -> dict[str, dict[str, dict[str, Any]]]:
    """Each step's metrics from its latest execution that ran or was restored."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    latest = db.query(
        "SELECT step, max(id) AS id FROM executions WHERE state IN ('ran', 'cached')"
        " AND id IN (SELECT execution_id FROM metrics) GROUP BY step ORDER BY step"
    )
    for row in list(latest):
        values: dict[str, dict[str, Any]] = {}
        for metric in db.query(
            "SELECT path, name, value, text FROM metrics WHERE execution_id = ?"
            " ORDER BY path, name",
            [row["id"]],
        ):
            values.setdefault(metric["path"], {})[metric["name"]] = _metric(metric)
        result[row["step"]] = values
    return result


def experiment_runs(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """The runs given params of their own (`repro -p`: experiments), newest first, each
    with ``steps``: step -> its execution's key, state and metrics (file -> name ->
    value) in that run."""
    found = [
        _decoded(row)
        for row in db.query(
            "SELECT id, started, git_commit, dirty, status, overrides FROM runs"
            " WHERE overrides IS NOT NULL ORDER BY started DESC, rowid DESC"
        )
    ]
    by_id = {row["id"]: row for row in found}
    for row in found:
        row["steps"] = {}
    if not found:
        return found
    chosen = "SELECT id FROM runs WHERE overrides IS NOT NULL"
    executions: dict[int, dict[str, Any]] = {}
    for row in db.query(
        f"SELECT id, run_id, step, key, state FROM executions WHERE run_id IN ({chosen})"
        " ORDER BY id"
    ):
        step = {"key": row["key"], "state": row["state"], "metrics": {}}
        by_id[row["run_id"]]["steps"][row["step"]] = step
        executions[row["id"]] = step
    for row in db.query(
        "SELECT execution_id, path, name, value, text FROM metrics WHERE execution_id IN"
        f" (SELECT id FROM executions WHERE run_id IN ({chosen}))"
    ):
        step = executions.get(row["execution_id"])
        if step is not None:
            step["metrics"].setdefault(row["path"], {})[row["name"]] = _metric(row)
    return found


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    row["overrides"] = json.loads(row["overrides"] or "{}")
    row["dirty"] = None if row["dirty"] is None else bool(row["dirty"])
    return row


def _metric(row: dict[str, Any]) -> Any:
    """A recorded metric's value: as its JSON text holds it, else the number."""
    return json.loads(row["text"]) if row["text"] is not None else row["value"]


def execution_outputs(db: sqlite_utils.Database, run_id: str) -> dict[str, dict[str, str]]:
    """What each step that ran or was restored in a run left at its outputs: step ->
    output path (folders without their trailing "/") -> digest."""
    found: dict[str, dict[str, str]] = {}
    for row in db.query(
        "SELECT e.step, io.path, io.digest FROM io JOIN executions e ON e.id = io.execution_id"
        " WHERE e.run_id = ? AND io.role = 'out' AND e.state IN ('ran', 'cached')",
        [run_id],
    ):
        found.setdefault(row["step"], {})[row["path"].rstrip("/")] = row["digest"]
    return found


# the read side of provenance lives in its own module; its names stay reachable here
from gitpipe.run.provenance import Made, Origin, origin, walk  # noqa: E402

__all__ = ["LineageError", "LineageRecorder", "Made", "Origin", "connect", "origin", "walk"]
