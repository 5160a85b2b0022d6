"""The Git layer: everything gitpipe reads from Git, through dulwich (no `git` binary).

Imported lazily by the project so that commands that need no Git answer fast.

Besides the state of the work tree, this package reads history for versions and
diffs: revisions (SHAs, branches, tags, ``HEAD~n``, ``A^``), first-parent walks that
stop where a shallow clone cuts history, files at a commit, and :class:`TreeSource`,
a read-only view of a commit's tree for code discovery that records what it looked
at (a :class:`Trace`), so that a later commit can be checked cheaply for the same
answers.  It never writes to the repository, its index or its work tree::

    repository   Repository: the handle (work tree state, config, refs, revisions,
                 linked work trees), a GitObjects; shared_state_dir
    objects      GitObjects: commits, first-parent walks, trees and files by id,
                 memoised; CommitInfo
    treesource   TreeSource, Trace: a folder of a tree as code discovery reads it,
                 and whether a later tree gives the same answers
"""

from __future__ import annotations

from gitpipe.history.git.objects import CommitInfo, Entry, GitObjects
from gitpipe.history.git.repository import Checkout, Repository, shared_state_dir
from gitpipe.history.git.treesource import Trace, TreeSource, trace_holds

__all__ = [
    "Checkout",
    "CommitInfo",
    "Entry",
    "GitObjects",
    "Repository",
    "Trace",
    "TreeSource",
    "shared_state_dir",
    "trace_holds",
]
