"""What every remote is: :class:`Remote`, the interface each kind implements (one
module per kind: :mod:`~gitpipe.store.remote.folder`,
:mod:`~gitpipe.store.remote.objectstore`), and :func:`redact`, how a remote's url is
shown (:mod:`gitpipe.core.redaction`; :func:`redact_argv`: a command line holding one)."""

from __future__ import annotations

import abc
from pathlib import Path

from gitpipe.core.redaction import redact, redact_argv  # noqa: F401 (offered here too)
from gitpipe.store.runcache import UNSIGNED, Signer


class Remote(abc.ABC):
    """A place holding objects and results under the store's names.

    Names are built only by :mod:`gitpipe.store.naming`. Methods raise
    :class:`~gitpipe.core.errors.RemoteError` for anything but a missing object, which
    they report by their return value."""

    #: the url fit to show (:func:`redact`): every message, report and progress line
    #: names the remote by it, so a secret in the url the user gave is never echoed
    url: str
    #: transfers at once, unless the caller says otherwise
    jobs: int = 8
    #: signs the results pushed there and checks those pulled from there (``GITPIPE_RESULT_KEY``;
    #: :func:`~gitpipe.store.remote.url.open_remote` takes it from the environment)
    signer: Signer = UNSIGNED

    @abc.abstractmethod
    def check(self) -> None:
        """Raise :class:`RemoteError` unless the remote is there and can be read."""

    @abc.abstractmethod
    def exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def empty(self) -> bool:
        """True when the remote holds no object yet (one cheap request)."""

    @abc.abstractmethod
    def listing(self, prefix: str) -> set[str]:
        """Every name under ``prefix`` (which ends with ``/``), at any depth."""

    @abc.abstractmethod
    def upload(self, source: Path, name: str) -> None:
        """Store a local file's bytes under ``name``; readers never see half of it."""

    @abc.abstractmethod
    def download(self, name: str, target: Path) -> bool:
        """Write the bytes under ``name`` to ``target``; False when there are none."""

    @abc.abstractmethod
    def read(self, name: str, *, limit: int | None = None) -> bytes | None:
        """The bytes under ``name``; None when there are none.  With ``limit``, at
        most ``limit + 1`` of them: more than ``limit`` says that there are more,
        without holding them all in memory."""

    @abc.abstractmethod
    def write(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name``; readers never see half of it."""
