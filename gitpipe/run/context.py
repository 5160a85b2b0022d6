"""What the run layer reads of the workspace it runs in.

The facade (:class:`gitpipe.workspace.Project`) is one; the run layer is handed it
and never imports it, so that imports flow one way: the facade above, the run
below.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from gitpipe.pipeline import graph as graphs
from gitpipe.pipeline import spec


class Workspace(Protocol):
    """A pipeline file in a Git work tree, with gitpipe's state beside it."""

    @property
    def root(self) -> Path: ...  # the pipeline file's folder

    @property
    def file(self) -> Path: ...  # the pipeline file

    @property
    def state_dir(self) -> Path: ...  # .gitpipe/

    @property
    def store_dir(self) -> Path: ...

    @property
    def lock_path(self) -> Path: ...

    @property
    def environ(self) -> Mapping[str, str]: ...

    @property
    def pipeline(self) -> spec.Pipeline: ...

    @property
    def graph(self) -> graphs.Graph: ...

    def user(self) -> str:
        """Who approves a step: see :meth:`gitpipe.workspace.Project.user`."""
        ...
