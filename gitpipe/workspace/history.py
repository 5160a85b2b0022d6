"""What Git history says of a workspace: its versions, and what changed between two
commits (or a commit and the working tree).

    Project ──> versions(step) ──> gitpipe.history.versions.report ──> Report
            ──> diff(a, b)     ──> gitpipe.history.diff.diff       ──> PipelineDiff
                                   (naming the experiment whose results the work
                                   tree holds, when its metrics are not the lock's)

The history layer reads Git; these hand it the project's pipeline file and state
folder, so that the CLI and the Python API ask the same question the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gitpipe.history.diff import PipelineDiff
    from gitpipe.history.versions import Report
    from gitpipe.workspace import Project


def versions(project: Project, *, step: str | None = None) -> Report:
    """The pipeline's versions (or one step's) from HEAD's first-parent history, and
    the current one (``+dirty`` when the working tree differs from HEAD).  Raises
    :class:`GitError` outside a Git repository, :class:`UsageError` for a step the
    history never held."""
    from gitpipe.history.versions import report

    return report(project.file, state_dir=project.state_dir, step=step)


def diff(
    project: Project, a: str | None = None, b: str | None = None, *, all_steps: bool = False
) -> PipelineDiff:
    """What changed from revision ``a`` (default: HEAD) to ``b`` (default: the working
    tree), step by step; a revision is a SHA, branch, tag, ``HEAD~N`` or a version.
    Unchanged steps only with ``all_steps``."""
    from gitpipe.history.diff import diff as compare

    result = compare(project.file, a, b, state_dir=project.state_dir, all_steps=all_steps)
    if result.held and result.b.held:  # the work tree holds an experiment's results
        import dataclasses

        from gitpipe.workspace.experiments import holding

        held = {step: result.b.held[step] for step, _ in result.held}
        result = dataclasses.replace(result, experiment=holding(project, held))
    return result
