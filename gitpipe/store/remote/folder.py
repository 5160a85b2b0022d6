"""The folder remote: a local or mounted folder with the store's layout, built in."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from gitpipe.core import atomic
from gitpipe.core.errors import RemoteError
from gitpipe.store.naming import OBJECTS
from gitpipe.store.objects import clone_or_copy
from gitpipe.store.remote.base import Remote, redact
from gitpipe.store.runcache import UNSIGNED, Signer

_READ_ONLY = 0o444


class DirectoryRemote(Remote):
    """A local or mounted folder with the store's layout; writes go through ``tmp/``
    (objects) or a hidden file beside the target (results), then a rename."""

    jobs = 8

    def __init__(self, root: Path, *, url: str | None = None, signer: Signer = UNSIGNED) -> None:
        self.root = root
        self.url = redact(url) if url else str(root)
        self.signer = signer
        self._checked = False

    def _fail(self, doing: str, exc: OSError) -> RemoteError:
        return RemoteError(f"cannot {doing} the remote folder {self.root} ({exc.strerror or exc})")

    def check(self) -> None:
        if self._checked:
            return
        if not self.root.is_dir():
            raise RemoteError(
                f"the remote folder {self.root} does not exist; create it "
                f"(mkdir -p {self.root}) or point the remote at the right place"
            )
        self._checked = True

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()

    def empty(self) -> bool:
        try:
            with os.scandir(self.root / OBJECTS) as entries:
                return next(entries, None) is None
        except FileNotFoundError:
            return True
        except OSError as exc:
            raise self._fail("list", exc) from exc

    def listing(self, prefix: str) -> set[str]:
        base = self.root / prefix
        found: set[str] = set()
        try:
            for folder, _dirs, files in os.walk(base):
                rel = Path(folder).relative_to(self.root).as_posix()
                found.update(f"{rel}/{name}" for name in files if not name.startswith("."))
        except OSError as exc:
            raise self._fail("list", exc) from exc
        return found

    def upload(self, source: Path, name: str) -> None:
        target = self.root / name
        try:
            staging = self.root / "tmp"
            staging.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=staging, prefix="in-")
            os.close(fd)
            try:
                clone_or_copy(source, tmp)
                os.chmod(tmp, _READ_ONLY)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise self._fail(f"write {name} to", exc) from exc

    def download(self, name: str, target: Path) -> bool:
        try:
            clone_or_copy(self.root / name, target)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self._fail(f"read {name} from", exc) from exc
        return True

    def read(self, name: str, *, limit: int | None = None) -> bytes | None:
        try:
            if limit is None:
                return (self.root / name).read_bytes()
            with open(self.root / name, "rb") as handle:
                return handle.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._fail(f"read {name} from", exc) from exc

    def write(self, name: str, data: bytes) -> None:
        try:
            atomic.write_bytes(self.root / name, data, mode=_READ_ONLY)
        except OSError as exc:
            raise self._fail(f"write {name} to", exc) from exc
