"""`gitpipe diff`: what changed between two commits (or a commit and the work tree),
step by step.

Each side is read the way versions read a commit: the pipeline file, its graph and
its code straight from Git objects (never checked out, the index untouched), plus
that side's ``gitpipe.lock`` for the output digests and metrics a repro recorded.
Comparing two sides is a pure function; the renderers turn the result into text
(styled by a function the CLI passes, so colour is its choice), JSON or a Markdown
table for pull-request comments.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitpipe.core import tomlcache
from gitpipe.core.errors import GitError, LockfileError, PipelineError
from gitpipe.history.git import Repository
from gitpipe.history.rules import CodeChange, changed_keys, code_changes, command_edits
from gitpipe.history.shape import (
    INVALID,
    CodeCache,
    PipelinePath,
    Snapshot,
    Snapshots,
    StepShape,
    worktree_snapshot,
)
from gitpipe.history.versions import resolver
from gitpipe.history.walk import cache_path
from gitpipe.identity.environment import describe
from gitpipe.pipeline.values import jsonable, metric_delta, metric_values
from gitpipe.store import lockfile
from gitpipe.store.lockfile import Lock

WORKTREE = "working tree"
ADDED = "added"
REMOVED = "removed"
CHANGED = "changed"
UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a diff: a commit (or the work tree), its pipeline and its lock."""

    label: str  # as the user named it: HEAD, main, 1.2.0, working tree
    commit: str | None  # None for the work tree
    snapshot: Snapshot
    lock: Lock
    #: the work tree only: each step's metrics as its metrics files hold them now
    #: (step -> file -> name -> value), which an experiment (`repro -p`) changes
    #: without touching the lock
    held: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "commit": self.commit}

    @property
    def title(self) -> str:
        if self.commit is None:
            return self.label
        short = self.commit[:7]
        return short if self.label.lower().startswith(short) else f"{self.label} ({short})"


@dataclass(frozen=True, slots=True)
class ValueChange:
    """A keyed value on both sides; ``None`` stands for absent (shown as such)."""

    key: str
    old: Any
    new: Any
    old_present: bool = True
    new_present: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "old": self.old if self.old_present else None,
            "new": self.new if self.new_present else None,
        }


@dataclass(frozen=True, slots=True)
class OutputChange:
    path: str
    old: str | None  # digests as recorded in each side's lock
    new: str | None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "old": self.old, "new": self.new}


@dataclass(frozen=True, slots=True)
class MetricChange:
    file: str
    key: str
    old: Any
    new: Any
    delta: int | float | None = None  # see gitpipe.pipeline.values.metric_delta

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "key": self.key,
            "old": self.old,
            "new": self.new,
            "delta": self.delta,
        }


@dataclass(frozen=True, slots=True)
class StepDiff:
    """How one step differs; ``status`` is added, removed, changed or unchanged."""

    step: str
    status: str
    edges_added: tuple[str, ...] = ()
    edges_removed: tuple[str, ...] = ()
    deps_added: tuple[str, ...] = ()
    deps_removed: tuple[str, ...] = ()
    outs_added: tuple[str, ...] = ()
    outs_removed: tuple[str, ...] = ()
    command: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    wdir: tuple[str, str] | None = None
    env: tuple[ValueChange, ...] = ()
    code: tuple[CodeChange, ...] = ()
    params: tuple[ValueChange, ...] = ()
    outputs: tuple[OutputChange, ...] = ()
    metrics: tuple[MetricChange, ...] = ()
    #: what differs in the environment the locks recorded: ("package changed",
    #: "scikit-learn 1.5.2 → 1.6.0"), ... (gitpipe.identity.environment.describe)
    environment: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "status": self.status,
            "edges": {"added": list(self.edges_added), "removed": list(self.edges_removed)},
            "deps": {"added": list(self.deps_added), "removed": list(self.deps_removed)},
            "outs": {"added": list(self.outs_added), "removed": list(self.outs_removed)},
            "command": (
                {"old": list(self.command[0]), "new": list(self.command[1])}
                if self.command
                else None
            ),
            "wdir": {"old": self.wdir[0], "new": self.wdir[1]} if self.wdir else None,
            "env": [item.to_json() for item in self.env],
            "code": [item.to_json() for item in self.code],
            "params": [item.to_json() for item in self.params],
            "outputs": [item.to_json() for item in self.outputs],
            "metrics": [item.to_json() for item in self.metrics],
            "environment": [{"change": kind, "what": what} for kind, what in self.environment],
        }


@dataclass(frozen=True, slots=True)
class PipelineDiff:
    a: Side
    b: Side
    steps: tuple[StepDiff, ...]
    params: tuple[ValueChange, ...] = ()  # [params] that no step uses
    #: the work tree's metrics files against its gitpipe.lock: (step, change) where
    #: they differ, as after an experiment (`repro -p`) that left the lock alone
    held: tuple[tuple[str, MetricChange], ...] = ()
    #: the experiment whose results the work tree holds, when one is known
    experiment: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.params) or any(s.status != UNCHANGED for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: values as JSON holds them (a TOML date as its text)."""
        return jsonable(
            {
                "a": {**self.a.to_json(), "fingerprint": self.a.snapshot.fingerprint},
                "b": {**self.b.to_json(), "fingerprint": self.b.snapshot.fingerprint},
                "changed": self.changed,
                "steps": [step.to_json() for step in self.steps],
                "params": [item.to_json() for item in self.params],
                "workspace_metrics": {
                    "experiment": self.experiment or None,
                    "differ": [{"step": step, **item.to_json()} for step, item in self.held],
                },
            }
        )


# -- comparing -------------------------------------------------------------------


def _values(
    old: Mapping[str, Any], new: Mapping[str, Any], *, encoded: bool = False
) -> tuple[ValueChange, ...]:
    """Keys whose values differ; ``encoded`` values (params) are JSON text."""

    def value(values: Mapping[str, Any], key: str) -> Any:
        if key not in values:
            return None
        return json.loads(values[key]) if encoded else values[key]

    return tuple(
        ValueChange(
            key,
            value(old, key),
            value(new, key),
            old_present=key in old,
            new_present=key in new,
        )
        for key in changed_keys(old, new)
    )


def _metrics(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[MetricChange, ...]:
    found = []
    for file in sorted(set(old) | set(new)):
        before, after = old.get(file, {}), new.get(file, {})
        for item in _values(before, after):  # an absent value is None
            found.append(
                MetricChange(file, item.key, item.old, item.new, metric_delta(item.old, item.new))
            )
    return tuple(found)


def _outputs(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[OutputChange, ...]:
    found = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before != after:
            found.append(
                OutputChange(
                    path,
                    str(before) if before is not None else None,
                    str(after) if after is not None else None,
                )
            )
    return tuple(found)


def compare_steps(
    name: str,
    old: StepShape | None,
    new: StepShape | None,
    *,
    old_lock: Lock,
    new_lock: Lock,
) -> StepDiff:
    """How one step differs between two sides (pure)."""
    entry_a, entry_b = old_lock.steps.get(name), new_lock.steps.get(name)
    outputs = _outputs(entry_a.outs if entry_a else {}, entry_b.outs if entry_b else {})
    metrics = _metrics(entry_a.metrics if entry_a else {}, entry_b.metrics if entry_b else {})
    if old is None or new is None:  # all of what the step is, added or removed
        shape = new if old is None else old
        added = old is None
        if shape is None:  # on neither side: what the locks say only
            return StepDiff(name, ADDED, outputs=outputs, metrics=metrics)
        every = (
            tuple(sorted(shape.parents)),
            tuple(sorted(shape.deps)),
            tuple(sorted(shape.outs + shape.metrics)),
        )
        none: tuple[str, ...] = ()
        return StepDiff(
            name,
            ADDED if added else REMOVED,
            edges_added=every[0] if added else none,
            edges_removed=none if added else every[0],
            deps_added=every[1] if added else none,
            deps_removed=none if added else every[1],
            outs_added=every[2] if added else none,
            outs_removed=none if added else every[2],
            command=((), shape.template.cmd) if added else (shape.template.cmd, ()),
            code=tuple(code_changes({}, shape.code) if added else code_changes(shape.code, {})),
            params=_values({}, shape.params, encoded=True)
            if added
            else _values(shape.params, {}, encoded=True),
            outputs=outputs,
            metrics=metrics,
        )
    edits = command_edits(old, new)
    written_a, written_b = old.template, new.template
    diff = StepDiff(
        step=name,
        status=CHANGED,
        edges_added=tuple(sorted(set(new.parents) - set(old.parents))),
        edges_removed=tuple(sorted(set(old.parents) - set(new.parents))),
        deps_added=tuple(sorted(set(new.deps) - set(old.deps))),
        deps_removed=tuple(sorted(set(old.deps) - set(new.deps))),
        outs_added=tuple(sorted(set(new.outs + new.metrics) - set(old.outs + old.metrics))),
        outs_removed=tuple(sorted(set(old.outs + old.metrics) - set(new.outs + new.metrics))),
        command=(written_a.cmd, written_b.cmd) if edits.cmd else None,
        wdir=(written_a.wdir, written_b.wdir) if edits.wdir else None,
        env=tuple(
            ValueChange(
                key,
                written_a.env.get(key),
                written_b.env.get(key),
                old_present=key in written_a.env,
                new_present=key in written_b.env,
            )
            for key in edits.env
        ),
        code=tuple(code_changes(old.code, new.code)),
        params=_values(old.params, new.params, encoded=True),
        outputs=outputs,
        metrics=metrics,
        environment=tuple(describe(entry_b.environment, entry_a.environment))
        if entry_a is not None
        and entry_b is not None
        and entry_a.environment
        and entry_a.environment != entry_b.environment
        else (),
    )
    if diff == StepDiff(name, CHANGED):
        return StepDiff(name, UNCHANGED)
    return diff


def compare(a: Side, b: Side, *, all_steps: bool = False) -> PipelineDiff:
    """Step by step, from side ``a`` to side ``b``; unchanged steps only with
    ``all_steps``.  Steps come in ``b``'s file order, removed ones after."""
    old, new = a.snapshot, b.snapshot
    names = list(new.steps) + [name for name in old.steps if name not in new.steps]
    steps = []
    used: set[str] = set()
    for name in names:
        before, after = old.steps.get(name), new.steps.get(name)
        used |= set(before.params if before else ()) | set(after.params if after else ())
        diff = compare_steps(name, before, after, old_lock=a.lock, new_lock=b.lock)
        if diff.status != UNCHANGED or all_steps:
            steps.append(diff)
    loose = tuple(
        item
        for item in _values(old.params, new.params, encoded=True)
        if not any(item.key == key or item.key.startswith(key + ".") for key in used)
    )
    held = tuple(
        (name, change)
        for name, files in sorted((b.held or {}).items())
        if name in b.lock.steps
        for change in _metrics(
            {f: v for f, v in b.lock.steps[name].metrics.items() if f in files}, files
        )
    )
    return PipelineDiff(a, b, tuple(steps), loose, held)


# -- reading the sides -------------------------------------------------------------


def commit_side(snapshots: Snapshots, commit: str, *, label: str) -> Side:
    """A side read from Git objects: nothing is checked out, the index is not read."""
    repo, pipeline = snapshots.repo, snapshots.pipeline
    tree = repo.commit(commit).tree
    snap, _ = snapshots.snapshot(tree)
    if snap.state == INVALID:
        raise PipelineError(f"at {label}: {snap.error}")
    lock = Lock()
    entry = repo.entry(tree, pipeline.lock)
    if entry is not None:
        try:
            lock = lockfile.loads(repo.blob(entry[1]).decode("utf-8"), name=pipeline.lock)
        except (UnicodeDecodeError, LockfileError) as exc:
            raise LockfileError(f"{pipeline.lock} at {label} cannot be read ({exc})") from exc
    return Side(label, commit, snap, lock)


def worktree_side(pipeline_file: Path, *, cache: CodeCache) -> Side:
    snap = worktree_snapshot(pipeline_file, cache)
    if snap.state == INVALID:
        raise PipelineError(f"in the working tree: {snap.error}")
    lock = lockfile.read(lockfile.path_for(pipeline_file))
    return Side(WORKTREE, None, snap, lock, held_metrics(pipeline_file.parent, snap, lock))


def held_metrics(root: Path, snap: Snapshot, lock: Lock) -> dict[str, dict[str, dict[str, Any]]]:
    """Each locked step's metrics files as the work tree holds them now (a file that
    is missing or cannot be read is left out: `status` tells of it)."""
    held: dict[str, dict[str, dict[str, Any]]] = {}
    for name, shape in snap.steps.items():
        if name not in lock.steps:
            continue
        for relpath in shape.metrics:
            try:
                text = (root / relpath).read_text(encoding="utf-8")
                data = tomlcache.loads(text) if relpath.endswith(".toml") else json.loads(text)
            except (OSError, ValueError):
                continue
            held.setdefault(name, {})[relpath] = metric_values(data)
    return held


def diff(
    pipeline_file: Path,
    a: str | None = None,
    b: str | None = None,
    *,
    state_dir: Path,
    all_steps: bool = False,
) -> PipelineDiff:
    """``A`` against ``B``: two revisions (SHAs, branches, tags, ``HEAD~n``, version
    names), or one revision against the work tree (default: HEAD)."""
    repo = Repository.find(pipeline_file.resolve().parent)
    if repo is None:
        raise GitError(
            f"{pipeline_file.resolve().parent} is not inside a Git repository; "
            "`gitpipe diff` compares commits"
        )
    with repo:
        pipeline = PipelinePath.of(repo, pipeline_file)
        resolve = resolver(repo, pipeline_file, cache_file=cache_path(state_dir))
        snapshots = Snapshots(repo, pipeline)
        label_a = a or "HEAD"
        commit_a = resolve(label_a)
        commit_b = resolve(b) if b is not None else None
        side_a = commit_side(snapshots, commit_a, label=label_a)
        if commit_b is None:
            side_b = worktree_side(pipeline_file, cache=snapshots.cache)
        else:
            side_b = commit_side(snapshots, commit_b, label=b or "")
    return compare(side_a, side_b, all_steps=all_steps)


# -- rendering -----------------------------------------------------------------------

#: styles a piece of text by its role: heading, added, removed, changed, old, new, dim
Style = Callable[[str, str], str]


def plain(text: str, role: str) -> str:
    return text


def value_text(value: Any, present: bool = True) -> str:
    if not present:
        return "(none)"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def short_digest(digest: str | None) -> str:
    if digest is None:
        return "(none)"
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}"


def delta_text(delta: int | float | None, old: Any = None, new: Any = None) -> str:
    """A metric's change, to the precision of the values it is the difference of
    (``0.9715 -> 0.9731`` changes by ``+0.0016``, not ``+0.00160000000000005``)."""
    if delta is None:
        return ""
    if isinstance(delta, int):
        return f"{delta:+d}"
    places = max(_decimals(old), _decimals(new))
    if places is None or places > 15:
        return f"{delta:+.6g}"
    return f"{round(delta, places):+.{places}f}"


def _decimals(value: Any) -> int:
    """How many decimal places a number is written with (0 for an integer)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    text = repr(value)
    if "e" in text or "E" in text:
        return 16  # too far to write out: shown in 6 significant digits
    return len(text.partition(".")[2])


def _command(cmd: tuple[str, ...]) -> str:
    return " && ".join(cmd) if cmd else "(none)"


def _plus_minus(added: tuple[str, ...], removed: tuple[str, ...]) -> str:
    return ", ".join([f"+{item}" for item in added] + [f"-{item}" for item in removed])


@dataclass(frozen=True, slots=True)
class Row:
    """One change of a step as renderers show it: a pair ``before -> after``, or a
    note (``+featurize, -prepare``) when ``before`` is None."""

    what: str
    before: str | None
    after: str


def rows(step: StepDiff) -> list[Row]:
    """Each change of a step, in reading order."""
    found: list[Row] = []
    for what, added, removed in (
        ("edges", step.edges_added, step.edges_removed),
        ("deps", step.deps_added, step.deps_removed),
        ("outs", step.outs_added, step.outs_removed),
    ):
        if added or removed:
            found.append(Row(what, None, _plus_minus(added, removed)))
    if step.command:
        found.append(Row("command", _command(step.command[0]), _command(step.command[1])))
    if step.wdir:
        found.append(Row("wdir", step.wdir[0], step.wdir[1]))
    for item in step.env:
        old = value_text(item.old, item.old_present)
        found.append(Row(f"env {item.key}", old, value_text(item.new, item.new_present)))
    if step.code:
        found.append(Row("code", None, ", ".join(str(change) for change in step.code)))
    for item in step.params:
        old = value_text(item.old, item.old_present)
        found.append(Row(f"param {item.key}", old, value_text(item.new, item.new_present)))
    for kind, what in step.environment:
        found.append(Row(kind, None, what))
    for out in step.outputs:
        found.append(Row(f"output {out.path}", short_digest(out.old), short_digest(out.new)))
    for metric in step.metrics:
        found.append(Row(f"metric {metric.file}: {metric.key}", *_metric_values(metric)))
    return found


def _metric_values(metric: MetricChange) -> tuple[str, str]:
    """A metric's old value, and its new one with how far it moved."""
    after = value_text(metric.new, metric.new is not None)
    if metric.delta is not None:
        after += f" ({delta_text(metric.delta, metric.old, metric.new)})"
    return value_text(metric.old, metric.old is not None), after


_MARK = {ADDED: "+", REMOVED: "-", CHANGED: "~", UNCHANGED: " "}


def render_text(result: PipelineDiff, *, style: Style = plain) -> str:
    """Readable lines: one heading per step, then each change, ``before -> after``."""
    lines = [style(f"gitpipe diff: {result.a.title} -> {result.b.title}", "heading")]
    if not result.changed and not result.steps:
        lines.append("no step changed")
        lines.extend(_held_text(result, style))
        return "\n".join(lines)
    for step in result.steps:
        role = step.status if step.status != UNCHANGED else "dim"
        lines.append(style(f"{_MARK[step.status]} {step.step}  ({step.status})", role))
        found = rows(step)
        width = max((len(row.what) for row in found), default=0)
        for row in found:
            what = f"{row.what:<{width}}"
            if row.before is None:
                lines.append(f"    {what}  {style(row.after, 'changed')}")
            elif row.what == "command" and len(row.before) + len(row.after) > 60:
                lines.append(f"    {what}  {style(row.before, 'old')}")
                lines.append(f"    {'':<{width}}  -> {style(row.after, 'new')}")
            else:
                lines.append(f"    {what}  {style(row.before, 'old')} -> {style(row.after, 'new')}")
    if result.params:
        lines.append(style("~ params no step uses", "changed"))
        for item in result.params:
            old = value_text(item.old, item.old_present)
            new = value_text(item.new, item.new_present)
            lines.append(f"    {item.key}  {style(old, 'old')} -> {style(new, 'new')}")
    lines.extend(_held_text(result, style))
    return "\n".join(lines)


def held_note(result: PipelineDiff) -> str:
    """What the work tree's metrics files say against its lock, in one sentence ("" when
    they agree)."""
    if not result.held:
        return ""
    if result.experiment:
        name = result.experiment
        return (
            f"the working tree holds the results of experiment {name} (`gitpipe exp show`), "
            f"not gitpipe.lock's: `gitpipe exp apply {name}` keeps them, `gitpipe repro` "
            "restores the lock's"
        )
    return (
        "the working tree's metrics differ from gitpipe.lock's: an experiment's results "
        "(`gitpipe exp show`), or outputs `gitpipe repro` has not restored since a checkout"
    )


def _held_text(result: PipelineDiff, style: Style) -> list[str]:
    if not result.held:
        return []
    lines = [style(f"! {held_note(result)}", "changed")]
    for step, metric in result.held:
        old, new = _metric_values(metric)
        what = f"{step}  {metric.file}: {metric.key}"
        lines.append(f"    {what}  {style(old, 'old')} -> {style(new, 'new')}")
    return lines


def render_json(result: PipelineDiff) -> str:
    return json.dumps(result.to_json(), indent=2, ensure_ascii=False)


def _cell(text: str, *, code: bool = False) -> str:
    if not text:
        return ""
    text = text.replace("|", "\\|").replace("\n", " ")
    if code:
        ticks = "``" if "`" in text else "`"
        pad = " " if ticks == "``" else ""
        return f"{ticks}{pad}{text}{pad}{ticks}"
    return text


def render_markdown(result: PipelineDiff) -> str:
    """A Markdown table, one row per change, fit for a pull-request comment."""
    b = _cell(result.b.title, code=True) if result.b.commit else result.b.title
    title = f"**gitpipe diff** {_cell(result.a.title, code=True)} → {b}"
    note = f"\n{held_note(result)}.\n" if result.held else ""
    if not result.changed and not result.steps:
        return f"{title}\n\nNo step changed.\n{note}"
    lines = [title, "", "| step | change | before | after |", "| --- | --- | --- | --- |"]
    for step in result.steps:
        name = _cell(step.step, code=True)
        found = rows(step)
        if step.status != CHANGED or not found:
            lines.append(f"| {name} | {step.status} | | |")
        for row in found:
            literal = row.what in ("command", "wdir", "code", "edges", "deps", "outs")
            before = _cell(row.before or "", code=literal)
            lines.append(
                f"| {name} | {_cell(row.what)} | {before} | {_cell(row.after, code=literal)} |"
            )
    for item in result.params:
        old = _cell(value_text(item.old, item.old_present))
        new = _cell(value_text(item.new, item.new_present))
        lines.append(f"| | param {_cell(item.key)} (no step uses it) | {old} | {new} |")
    return "\n".join(lines) + "\n" + note
