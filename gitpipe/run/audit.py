"""`gitpipe audit`: run steps again, each in a scratch copy, and compare their outputs
with the recorded ones (docs/environment.md#audit).

    lock entry ──inputs now key the same?──> scratch folder: pipeline files, code,
                                              deps (workspace, else the store)
                                    run there ──> outputs' digests == the entry's?
                                              ──> reproduced | differs | failed | skipped

Nothing of the workspace, the lock, the store's results or lineage's runs is written:
the scratch folder is a temporary folder of its own, removed when the step is done.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from gitpipe.core.errors import StoreError
from gitpipe.core.hashing import Digest
from gitpipe.identity.statcache import Hasher, StatCache
from gitpipe.pipeline import spec
from gitpipe.run.inputs import Inputs
from gitpipe.run.runner import execute
from gitpipe.run.session import invocation
from gitpipe.store.lockfile import LockEntry
from gitpipe.store.objects import Store

REPRODUCED = "reproduced"
DIFFERS = "differs"
FAILED = "failed"
SKIPPED = "skipped"
VERDICTS = (REPRODUCED, DIFFERS, FAILED, SKIPPED)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One step's audit: its verdict, the outputs that differ, and why."""

    step: str
    verdict: str
    key: str = ""
    outputs: tuple[str, ...] = ()  # the outputs whose bytes differ
    message: str = ""
    deterministic: bool = True
    duration: float = 0.0

    @property
    def fails(self) -> bool:
        """Whether it fails the audit: a deterministic step that differs or failed."""
        return self.deterministic and self.verdict in (DIFFERS, FAILED)

    def to_json(self) -> dict[str, object]:
        return {
            "step": self.step,
            "verdict": self.verdict,
            "key": self.key or None,
            "outputs": list(self.outputs),
            "message": self.message,
            "deterministic": self.deterministic,
            "duration": round(self.duration, 3),
        }


@dataclass
class Auditor:
    """Audits the steps of one pipeline against its lock entries."""

    root: Path
    pipeline: spec.Pipeline
    inputs: Inputs
    store: Store
    entries: Mapping[str, LockEntry]
    run_id: str
    pipeline_files: Iterable[str] = field(default_factory=tuple)

    def audit(self, name: str) -> Verdict:
        step = self.pipeline.steps[name]
        entry = self.entries.get(name)
        if entry is None:
            return Verdict(name, SKIPPED, message="no recorded result in the lock")
        check = self.inputs.check(
            step, entry, entries=self.entries, assume=entry.deps, assume_urls=entry.urls
        )
        if check.record is None or check.record.key != entry.key:
            reasons = [
                str(r) for r in check.reasons if r.kind not in ("out missing", "out modified")
            ]
            return Verdict(
                name,
                SKIPPED,
                key=str(entry.key),
                message="its inputs differ from the recorded run's ("
                + ("; ".join(reasons) or "key changed")
                + "); run `gitpipe repro` first",
                deterministic=step.deterministic,
            )
        with tempfile.TemporaryDirectory(prefix="gitpipe-audit-") as scratch:
            return self._run(step, entry, check.record.pythonpath, Path(scratch))

    def _run(
        self, step: spec.Step, entry: LockEntry, pythonpath: tuple[str, ...], scratch: Path
    ) -> Verdict:
        tree = scratch / "tree"
        base = Verdict(step.name, FAILED, key=str(entry.key), deterministic=step.deterministic)
        try:
            self._copy_inputs(step, entry, tree)
        except (OSError, StoreError) as exc:
            return replace(base, message=f"its inputs cannot be copied: {exc}")
        log = scratch / "log" / f"{step.name}.log"
        began = time.monotonic()
        outcome = execute(invocation(step, tree, log, self.run_id, pythonpath))
        took = time.monotonic() - began
        if not outcome.ok:
            tail = _last_line(log)
            message = outcome.message.split(" (log: ")[0] + (f": {tail}" if tail else "")
            return replace(base, message=message, duration=took)
        cache = StatCache(scratch / "stat.db")
        try:
            hasher = Hasher(tree, cache)
            differ = []
            for out in step.all_outs:
                now = hasher.state(out.path)
                if now is None or now.digest != entry.outs.get(str(out)):
                    differ.append(str(out) + ("" if now is not None else " (not made)"))
        finally:
            cache.close()
        if differ:
            return replace(base, verdict=DIFFERS, outputs=tuple(differ), duration=took)
        return replace(base, verdict=REPRODUCED, duration=took)

    def _copy_inputs(self, step: spec.Step, entry: LockEntry, tree: Path) -> None:
        """The pipeline files, the step's code and its deps into ``tree``: each dep as
        the workspace holds it when that is what the lock recorded, else from the
        store; the folders of its outputs made."""
        tree.mkdir(parents=True)
        for path in [*self.pipeline_files, *entry.code]:
            source = self.root / path
            if source.is_file():
                _copy(source, tree / path)
        for dep in step.deps:
            written = str(dep)
            if written not in entry.deps:  # code, copied above
                continue
            want = entry.deps[written]
            state = self.inputs.hasher.state(dep.path)
            if state is not None and state.digest == want:
                source = self.root / dep.path
                if source.is_dir():
                    shutil.copytree(source, tree / dep.path, symlinks=False, dirs_exist_ok=True)
                else:
                    _copy(source, tree / dep.path)
            elif self.store.has_tree(want):
                self.store.restore_tree(want, tree / dep.path)
            elif want in self.store:
                self.store.restore_file(want, tree / dep.path)
            else:
                raise StoreError(
                    f"dependency {written} as recorded ({_short(want)}) is neither in the "
                    "workspace nor in the store; `gitpipe pull` it"
                )
        (tree / step.wdir).mkdir(parents=True, exist_ok=True)
        for out in step.all_outs:
            (tree / out.path).parent.mkdir(parents=True, exist_ok=True)


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


def _short(digest: Digest) -> str:
    return str(digest)[:15]


def _last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line and not line.startswith("$ ")]
    return lines[-1][:200] if lines else ""
