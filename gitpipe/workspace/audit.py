"""`gitpipe audit`: do the recorded results reproduce? (docs/environment.md#audit)

Each selected step with a lock entry is run again in a scratch copy of its inputs
(:mod:`gitpipe.run.audit`); the verdicts are recorded in lineage's ``audits`` table,
apart from the real runs, and optionally written as a Markdown summary for CI.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gitpipe.core.atomic import write_bytes
from gitpipe.core.errors import UsageError
from gitpipe.run.audit import DIFFERS, FAILED, REPRODUCED, SKIPPED, Auditor, Verdict

if TYPE_CHECKING:
    from gitpipe.workspace import Project


@dataclass
class AuditReport:
    audit_id: str
    verdicts: list[Verdict] = field(default_factory=list)
    #: lineage could not record the audit (why, in one sentence); the audit stands
    notice: str = ""

    @property
    def failed(self) -> bool:
        """Whether the audit fails: a deterministic step differs or failed."""
        return any(v.fails for v in self.verdicts)

    def counts(self) -> dict[str, int]:
        return {
            name: sum(v.verdict == name for v in self.verdicts)
            for name in (REPRODUCED, DIFFERS, FAILED, SKIPPED)
        }


def audit(
    project: Project,
    targets: Sequence[str] = (),
    *,
    sample: int | None = None,
    summary_md: Path | None = None,
) -> AuditReport:
    """Audit the named steps (none: every step), or ``sample`` of them at random."""
    if sample is not None and sample < 1:
        raise UsageError(f"--sample must be at least 1, not {sample}")
    names = project.select(targets, single=True)
    lock = project.read_lock()
    with_result = [name for name in names if name in lock.steps]
    if targets and not with_result:
        raise UsageError(
            "no recorded result to audit for " + ", ".join(targets) + "; run `gitpipe repro` first"
        )
    if sample is not None and sample < len(with_result):
        chosen = set(random.sample(with_result, sample))
        names = [name for name in with_result if name in chosen]
    report = AuditReport(audit_id=uuid.uuid4().hex[:12])
    files = [
        project.file.name,
        *project.pipeline.includes,
        *project.pipeline.read_files,
        *project.pipeline.params_files,
    ]
    from gitpipe.store.objects import Store

    with project.inputs(readonly=True) as inputs:
        auditor = Auditor(
            project.root,
            project.pipeline,
            inputs,
            Store(project.store_dir),
            lock.steps,
            run_id=f"audit-{report.audit_id}",
            pipeline_files=tuple(dict.fromkeys(str(f) for f in files)),
        )
        for name in names:
            if name in lock.steps or targets:
                report.verdicts.append(auditor.audit(name))
    _record(project, report)
    if summary_md is not None:
        write_bytes(summary_md, summary(report).encode())
    return report


def _record(project: Project, report: AuditReport) -> None:
    if not report.verdicts or not project.state_dir.is_dir():
        return
    from gitpipe.run.lineage import LineageError, record_audit

    with project.repository() as repo:
        commit = repo.head_commit() if repo is not None else None
    try:
        record_audit(
            project.state_dir / "lineage.db",
            report.audit_id,
            commit,
            [v.to_json() for v in report.verdicts],
        )
    except LineageError as exc:
        report.notice = f"{exc}; this audit is not recorded in lineage"


def summary(report: AuditReport) -> str:
    """The audit as Markdown, for a CI job's summary."""
    counts = report.counts()
    head = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    lines = [
        f"## gitpipe audit: {'FAILED' if report.failed else 'passed'}",
        "",
        head or "nothing to audit",
        "",
        "| step | verdict | outputs | note |",
        "| --- | --- | --- | --- |",
    ]
    for v in report.verdicts:
        note = v.message if v.deterministic else f"not deterministic; {v.message}".rstrip("; ")
        lines.append(
            f"| `{v.step}` | {v.verdict} | {', '.join(f'`{o}`' for o in v.outputs)} "
            f"| {note.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"
