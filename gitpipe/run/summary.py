"""Run summaries for CI: JSON for machines, Markdown for people (a CI job's summary
page, a pull-request comment).

A listener of run events.  Metric changes are measured against the metrics that
`gitpipe.lock` held when the run started, which in CI is the lock committed at the
commit under test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gitpipe.core import atomic
from gitpipe.core.errors import PathError
from gitpipe.pipeline.values import metric_delta
from gitpipe.run import events as ev
from gitpipe.store import lockfile

#: the states every summary counts; others (interrupted, waiting, would run, ...)
#: are counted when a step ended so
ORDER = (ev.RAN, ev.CACHED, ev.UP_TO_DATE, ev.SKIPPED, ev.FAILED, ev.FROZEN)


def metric_changes(
    before: Mapping[str, Mapping[str, Mapping[str, Any]]],
    after: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> list[dict[str, Any]]:
    """Per step, file and name: the value before and after, and the delta
    (:func:`~gitpipe.pipeline.values.metric_delta`: None unless both are finite
    numbers)."""
    rows = []
    for step in sorted(set(before) | set(after)):
        files_before, files_after = before.get(step, {}), after.get(step, {})
        for path in sorted(set(files_before) | set(files_after)):
            old_values, new_values = files_before.get(path, {}), files_after.get(path, {})
            for name in sorted(set(old_values) | set(new_values)):
                old, new = old_values.get(name), new_values.get(name)
                rows.append(
                    {
                        "step": step,
                        "file": path,
                        "name": name,
                        "before": old,
                        "after": new,
                        "delta": metric_delta(old, new),
                    }
                )
    return rows


def writers(
    project: Any, *, json_path: Path | None = None, md_path: Path | None = None
) -> list[SummaryWriter]:
    """The summary writer a `repro` is given: none unless a path is, the Markdown one
    defaulting to ``$GITHUB_STEP_SUMMARY`` (GitHub Actions' job summary) when set."""
    if md_path is None and os.environ.get("GITHUB_STEP_SUMMARY"):
        md_path = Path(os.environ["GITHUB_STEP_SUMMARY"])
    if json_path is None and md_path is None:
        return []
    return [SummaryWriter(project, json_path=json_path, md_path=md_path)]


class SummaryWriter:
    """Collects a run's events and writes the summary files when it finishes."""

    def __init__(
        self, project: Any, *, json_path: Path | None = None, md_path: Path | None = None
    ) -> None:
        self.project = project
        self.json_path = json_path
        self.md_path = md_path
        self.steps: list[ev.StepFinished] = []
        self.started: ev.RunStarted | None = None
        try:
            lock = lockfile.read(project.lock_path)
            self.before = {name: dict(e.metrics) for name, e in lock.steps.items()}
        except Exception:  # a damaged lock is reported by repro itself
            self.before = {}

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self.started = event
        elif isinstance(event, ev.StepFinished):
            self.steps.append(event)
        elif isinstance(event, ev.RunFinished):
            self.write(event)

    def data(self, finished: ev.RunFinished) -> dict[str, Any]:
        try:
            lock = lockfile.read(self.project.lock_path)
            after = {name: dict(e.metrics) for name, e in lock.steps.items()}
        except Exception:
            after = self.before
        started = self.started
        return {
            "run": finished.run_id,
            "status": finished.status,
            "commit": started.commit if started else None,
            "dirty": started.dirty if started else None,
            "duration": round(finished.duration, 3),
            "counts": {
                **{state: finished.counts.get(state, 0) for state in ORDER},
                **{state: n for state, n in finished.counts.items() if state not in ORDER},
            },
            "cache_hits": finished.counts.get(ev.CACHED, 0),
            "steps": [
                {
                    "step": s.step,
                    "state": s.state,
                    "duration": round(s.duration, 3),
                    "reasons": list(s.reasons),
                    "message": s.message,
                    "source": s.source,
                }
                for s in self.steps
            ],
            "metrics": [
                row
                for row in metric_changes(self.before, after)
                if row["before"] != row["after"] or row["before"] is None
            ],
        }

    def write(self, finished: ev.RunFinished) -> None:
        """Write the summaries asked for; one that cannot be written does not keep the
        other from being written, and is then a :class:`PathError` naming it."""
        data = self.data(finished)
        failed: list[tuple[Path, OSError]] = []
        for path, write in ((self.json_path, self._write_json), (self.md_path, self._write_md)):
            if path is not None:
                try:
                    write(path, data)
                except OSError as exc:
                    failed.append((path, exc))
        if failed:
            path, exc = failed[0]
            raise PathError(f"cannot write the run summary {path} ({exc.strerror})") from exc

    @staticmethod
    def _write_json(path: Path, data: dict[str, Any]) -> None:
        atomic.write_bytes(path, json.dumps(data, indent=2).encode() + b"\n")

    @staticmethod
    def _write_md(path: Path, data: dict[str, Any]) -> None:
        markdown = render_markdown(data)
        if path.exists() and path.stat().st_size:
            # $GITHUB_STEP_SUMMARY collects several steps' summaries: append
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("\n" + markdown)
        else:
            atomic.write_bytes(path, markdown.encode())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("|", "\\|")


def render_markdown(data: Mapping[str, Any]) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in data["counts"].items() if n)
    commit = (data.get("commit") or "no commit")[:10] + ("+dirty" if data.get("dirty") else "")
    lines = [
        f"### gitpipe: {data['status']} — {counts or 'no steps'} in {data['duration']:.2f} s",
        "",
        f"Run `{data['run']}` at commit `{commit}`; {data['cache_hits']} step(s) restored "
        "from the store.",
        "",
    ]
    worked = [s for s in data["steps"] if s["state"] != ev.UP_TO_DATE]
    if worked:
        lines += ["| step | state | time | why |", "| --- | --- | ---: | --- |"]
        for s in worked:
            why = s["message"] or "; ".join(s["reasons"])
            took = f"{s['duration']:.2f} s" if s["state"] in (ev.RAN, ev.FAILED) else ""
            lines.append(f"| {_cell(s['step'])} | {s['state']} | {took} | {_cell(why)} |")
        lines.append("")
    if data["metrics"]:
        lines += [
            "| step | metric | before | after | change |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for m in data["metrics"]:
            delta = "" if m["delta"] is None else f"{m['delta']:+.6g}"
            lines.append(
                f"| {_cell(m['step'])} | `{_cell(m['file'])}` {_cell(m['name'])} "
                f"| {_cell(m['before'])} | {_cell(m['after'])} | {delta} |"
            )
        lines.append("")
    return "\n".join(lines)
