"""Commands that read Git history: `versions` and `diff`.

The facade (`gitpipe.workspace.history`) builds the answer and the history layer
(`gitpipe.history.diff`) renders a diff as text, JSON or Markdown; these commands
choose the form and whether the text is coloured."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gitpipe.cli import FileOption, JsonOption, app, handled, open_project
from gitpipe.cli.output import colour, echo_json
from gitpipe.core.errors import UsageError


@app.command("versions")
@handled
def versions_command(
    step: Annotated[
        str | None, typer.Option("--step", help="One step's versions instead of the pipeline's.")
    ] = None,
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """The pipeline's versions from Git history: version, commit, date, what changed."""
    from gitpipe.history.versions import DIRTY, shown
    from gitpipe.workspace.history import versions

    project = open_project(file)
    result = versions(project, step=step)
    if as_json:
        echo_json(result.to_json())
        return
    name = project.file.name
    if result.head is None:
        typer.echo(f"no commits yet: commit {name} and that commit is version 1.0.0")
        return
    if not result.releases:
        if result.invalid:  # HEAD holds it, but it cannot be read there
            typer.echo(
                f"{name} is not valid at HEAD ({result.invalid}); the first commit holding "
                f"a valid {name} is version 1.0.0"
            )
            return
        typer.echo(
            f"no commit on HEAD's first-parent history holds {name} yet; "
            "commit it and that commit is version 1.0.0"
        )
        return
    what = f"step {step}" if step else name
    if result.current:
        now = shown(result.current)
        if result.current.endswith(DIRTY):
            now += " (the working tree differs from HEAD)"
        typer.echo(f"{what}: {now}")
    width = max(len(shown(release.version)) for release in result.releases)
    for release in result.releases:
        changes = "; ".join(release.changes)
        day = release.date[:10]
        line = f"{shown(release.version):<{width}}  {release.commit[:7]}  {day}  {changes}"
        typer.echo(line.rstrip())


#: how `diff` colours each role of its text on a terminal
_DIFF_STYLES: dict[str, dict[str, Any]] = {
    "heading": {"bold": True},
    "added": {"fg": "green"},
    "removed": {"fg": "red"},
    "changed": {"fg": "yellow"},
    "old": {"fg": "red"},
    "new": {"fg": "green"},
    "dim": {"dim": True},
}


def _style(text: str, role: str) -> str:
    return typer.style(text, **_DIFF_STYLES.get(role, {}))


@app.command("diff")
@handled
def diff_command(
    a: Annotated[
        str | None,
        typer.Argument(
            help="A revision: SHA, branch, tag, HEAD~N or a version (default: HEAD).",
            show_default=False,
        ),
    ] = None,
    b: Annotated[
        str | None,
        typer.Argument(help="Another revision (default: the working tree).", show_default=False),
    ] = None,
    all_steps: Annotated[bool, typer.Option("--all", help="Show unchanged steps too.")] = False,
    file: FileOption = None,
    as_json: JsonOption = False,
    markdown: Annotated[
        bool, typer.Option("--md", help="A Markdown table, for pull-request comments.")
    ] = False,
) -> None:
    """What changed between two commits, or a commit and the working tree, step by step."""
    from gitpipe.history import diff as diffs
    from gitpipe.workspace.history import diff

    if as_json and markdown:
        raise UsageError("choose one of --json and --md")
    result = diff(open_project(file), a, b, all_steps=all_steps)
    if as_json:
        typer.echo(diffs.render_json(result))
    elif markdown:
        typer.echo(diffs.render_markdown(result), nl=False)
    else:
        typer.echo(diffs.render_text(result, style=_style if colour() else diffs.plain))
