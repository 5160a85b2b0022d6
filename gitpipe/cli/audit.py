"""`gitpipe audit`: run steps again in scratch copies and compare their outputs with
the recorded ones (docs/environment.md#audit)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gitpipe.cli import FileOption, JsonOption, StepsArgument, app, handled, open_project
from gitpipe.cli.output import echo_json
from gitpipe.core.errors import StaleError


@app.command()
@handled
def audit(
    steps: StepsArgument = None,
    file: FileOption = None,
    as_json: JsonOption = False,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample", help="Audit N steps with a recorded result, chosen at random.", min=1
        ),
    ] = None,
    summary_md: Annotated[
        Path | None,
        typer.Option("--summary-md", help="Also write the verdicts as Markdown to this file."),
    ] = None,
) -> None:
    """Re-run steps with a recorded result, each in a scratch copy, and say whether
    their outputs reproduce; exit 3 when one differs or fails."""
    from gitpipe.workspace.audit import audit as run_audit

    report = run_audit(open_project(file), steps or [], sample=sample, summary_md=summary_md)
    if as_json:
        echo_json(
            {
                "audit": report.audit_id,
                "failed": report.failed,
                "steps": [v.to_json() for v in report.verdicts],
            }
        )
    else:
        width = max((len(v.step) for v in report.verdicts), default=0)
        for v in report.verdicts:
            detail = ", ".join(v.outputs)
            if v.message:
                detail = "; ".join(filter(None, [detail, v.message]))
            if not v.deterministic and v.verdict != "reproduced":
                detail = "; ".join(filter(None, [detail, "deterministic = false: not a failure"]))
            typer.echo(f"{v.step:<{width}}  {v.verdict}  {detail}".rstrip())
        counts = ", ".join(f"{n} {name}" for name, n in report.counts().items() if n)
        typer.echo(counts or "nothing to audit")
    if report.notice:
        typer.echo(report.notice, err=True)
    if report.failed:
        bad = [v.step for v in report.verdicts if v.fails]
        raise StaleError(f"{len(bad)} step(s) did not reproduce: {', '.join(bad)}")
