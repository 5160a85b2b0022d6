"""Remotes: the store's objects and run-cache results on a shared folder or object store.

A remote has the local store's layout (``objects/b3/XX/REST`` and, for each result
of a step key, ``results/b3/XX/REST/RESULT_ID.json``; a key may have several). Two
kinds:

- :class:`DirectoryRemote`: a local or mounted folder, built in. Every write goes to
  a temporary file and is renamed into place, as in the local store.
- :class:`ObjectStoreRemote`: S3 (and other object stores) through obstore, the
  ``gitpipe[s3]`` extra. Credentials come only from the environment (``AWS_*``
  variables, or the container, web-identity and instance-metadata providers those
  variables point at), never from a file in the repository or from the url.

:func:`push` and :func:`pull` move only what the other side lacks, many transfers at
once (a thread pool), and report progress to a listener: this module never prints.
Nothing that comes from a remote is trusted::

    pull:  results (remote: the named ones, and every one in the keys' folders
             that the local run cache lacks)
             --parse_result, id = name-->  their objects and folder manifests
             --download into the store's tmp/, re-hash, check manifests' paths-->  rename
             -->  the files the manifests list (the same way)
             -->  each result, once every object it names is in the local store
    push:  results (local, complete: every one of each key, and the named ones)
             -->  their objects and the manifests' files
             -->  which the remote lacks (exists checks, or one listing per folder)
             -->  upload (each local object re-hashed first)
             -->  each result, once every object it names is on the remote

An object whose bytes do not hash to its digest, a manifest naming a path that leaves
its folder, and a result that :func:`gitpipe.store.runcache.parse_result` refuses (among
others, one whose outputs' id is not the one its name says, one that is not gitpipe's
shape, and, when the remote's :class:`~gitpipe.store.runcache.Signer` has a secret
(``GITPIPE_RESULT_KEY``), one without that secret's signature) are rejected: counted
in :class:`TransferReport`, never written. With a secret, push signs what it uploads.
Results under the one-per-key names of older gitpipe (``results/b3/XX/REST.json``) on
a remote are ignored.
"""

from __future__ import annotations

import abc
import contextlib
import os
import posixpath
import re
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from gitpipe.core import atomic
from gitpipe.core.errors import RemoteError, StoreError, UsageError
from gitpipe.core.hashing import Digest, DigestError, digest_file, parse_manifest, safe_relpath
from gitpipe.store.lockfile import Lock, LockEntry
from gitpipe.store.objects import Store, clone_or_copy
from gitpipe.store.runcache import (
    UNSIGNED,
    OutRecord,
    Result,
    RunCache,
    Signer,
    parse_result,
    result_id,
)

ENV_VAR = "GITPIPE_REMOTE"
OBJECTS = "objects/"
RESULTS = "results/"
#: url schemes served by :class:`ObjectStoreRemote`
OBJECT_STORE_SCHEMES = frozenset({"s3", "s3a", "gs", "az", "abfs", "abfss"})
#: up to this many names are always checked one by one, not by listing their folders
EXISTS_LIMIT = 32
_CHUNK = 8 * 1024 * 1024  # download stream chunks
_READ_ONLY = 0o444


# -- what to move, and what happened ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """What to transfer: file objects, folders (by their manifest's digest), every
    run-cache result of some step keys, and exact results as (key, result id)."""

    files: frozenset[Digest] = frozenset()
    folders: frozenset[Digest] = frozenset()
    keys: frozenset[Digest] = frozenset()
    results: frozenset[tuple[Digest, Digest]] = frozenset()

    @classmethod
    def from_locks(cls, *locks: Lock) -> Selection:
        """Every output a lock file records (folders by their trailing ``/``) and,
        for each step, exactly the result its entry records: not the key's others."""
        files: set[Digest] = set()
        folders: set[Digest] = set()
        results: set[tuple[Digest, Digest]] = set()
        for lock in locks:
            for entry in lock.steps.values():
                results.add((entry.key, entry_result_id(entry)))
                for path, digest in entry.outs.items():
                    (folders if path.endswith("/") else files).add(digest)
        return cls(frozenset(files), frozenset(folders), results=frozenset(results))

    @property
    def empty(self) -> bool:
        return not (self.files or self.folders or self.keys or self.results)


def entry_result_id(entry: LockEntry) -> Digest:
    """The id of the result a lock entry records (see :func:`gitpipe.store.runcache.result_id`):
    its outputs keyed by path without a folder's trailing ``/``."""
    return result_id(
        {
            path.removesuffix("/"): OutRecord(
                digest, is_dir=path.endswith("/"), executable=path in entry.executable
            )
            for path, digest in entry.outs.items()
        }
    )


@dataclass(frozen=True, slots=True)
class Progress:
    """How far one phase of a transfer is: ``done`` of ``total`` items, ``bytes`` moved.

    Phases: ``checking`` (what the remote has), ``results``, ``objects`` and
    ``folder files`` (the files that folders' manifests list)."""

    phase: str
    done: int
    total: int
    bytes: int = 0


ProgressListener = Callable[[Progress], None]


def ignore_progress(progress: Progress) -> None:
    """The listener that listens to nothing."""
    return None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Something refused: ``what`` (``object b3:…`` or ``result b3:…``) and why."""

    what: str
    reason: str

    def __str__(self) -> str:
        return f"{self.what} ({self.reason})"


@dataclass(slots=True)
class TransferReport:
    """What a push or pull did. ``objects``/``results`` were transferred; ``*_present``
    were on the receiving side already; ``unavailable`` were wanted but the sending
    side lacks them; ``rejected`` failed verification and were not written."""

    direction: str  # push | pull
    url: str
    objects: int = 0
    bytes: int = 0
    objects_present: int = 0
    results: int = 0
    results_present: int = 0
    unavailable: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    duration: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "remote": self.url,
            "objects": self.objects,
            "bytes": self.bytes,
            "objects_present": self.objects_present,
            "results": self.results,
            "results_present": self.results_present,
            "unavailable": list(self.unavailable),
            "rejected": [{"what": r.what, "reason": r.reason} for r in self.rejected],
            "duration": round(self.duration, 3),
        }


def object_name(digest: Digest) -> str:
    """Where an object lives in a remote (and in a store): ``objects/b3/XX/REST``."""
    Digest.parse(str(digest))  # never build a name from unvalidated text
    return f"{OBJECTS}{digest.algorithm}/{digest.hex[:2]}/{digest.hex[2:]}"


def results_prefix(key: Digest) -> str:
    """The folder of every result of a step key: ``results/b3/XX/REST/``."""
    Digest.parse(str(key))
    return f"{RESULTS}{key.algorithm}/{key.hex[:2]}/{key.hex[2:]}/"


def result_name(key: Digest, result_id: Digest) -> str:
    """Where one result of a step key lives: ``results/b3/XX/REST/RESULT_ID.json``."""
    Digest.parse(str(result_id))
    return f"{results_prefix(key)}{result_id.hex}.json"


def parse_result_name(name: str) -> tuple[Digest, Digest] | None:
    """(key, result id) from a name :func:`result_name` builds; None for any other
    name (an older gitpipe's ``results/b3/XX/REST.json`` among them)."""
    parts = name.split("/")
    if len(parts) != 5 or parts[0] != RESULTS.rstrip("/") or len(parts[2]) != 2:
        return None
    if not parts[4].endswith(".json"):
        return None
    try:
        key = Digest.parse(f"{parts[1]}:{parts[2]}{parts[3]}")
        rid = Digest.parse(f"{parts[1]}:{parts[4].removesuffix('.json')}")
    except DigestError:
        return None
    return key, rid


def _digest_named(name: str) -> Digest | None:
    """The digest in an object's name; None for anything else."""
    parts = name.split("/")
    if len(parts) != 4 or len(parts[2]) != 2:
        return None
    try:
        return Digest.parse(f"{parts[1]}:{parts[2]}{parts[3]}")
    except DigestError:
        return None


# -- the two kinds of remote ------------------------------------------------------------


class Remote(abc.ABC):
    """A place holding objects and results under the store's names.

    Names are built only by :func:`object_name` and :func:`result_name`. Methods raise
    :class:`RemoteError` for anything but a missing object, which they report by
    their return value."""

    url: str
    #: transfers at once, unless the caller says otherwise
    jobs: int = 8
    #: signs the results pushed there and checks those pulled from there
    #: (``GITPIPE_RESULT_KEY``; :func:`open_remote` takes it from the environment)
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
    def read(self, name: str) -> bytes | None:
        """The bytes under ``name``; None when there are none."""

    @abc.abstractmethod
    def write(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name``; readers never see half of it."""


class DirectoryRemote(Remote):
    """A local or mounted folder with the store's layout; writes go through ``tmp/``
    (objects) or a hidden file beside the target (results), then a rename."""

    jobs = 8

    def __init__(self, root: Path, *, url: str | None = None, signer: Signer = UNSIGNED) -> None:
        self.root = root
        self.url = url or str(root)
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

    def read(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._fail(f"read {name} from", exc) from exc

    def write(self, name: str, data: bytes) -> None:
        try:
            atomic.write_bytes(self.root / name, data, mode=_READ_ONLY)
        except OSError as exc:
            raise self._fail(f"write {name} to", exc) from exc


def describe(exc: BaseException) -> str:
    """One line from an object-store error: the server's code and message when it
    sent one, else the first line (obstore appends a multi-line debug dump)."""
    text = str(exc).split("\n\nDebug source:")[0].strip()
    code = re.search(r"<Code>([^<]*)</Code>", text)
    if code:
        message = re.search(r"<Message>([^<]*)</Message>", text)
        return f"{code.group(1)}: {message.group(1)}" if message else code.group(1)
    line = text.splitlines()[0] if text else type(exc).__name__
    line = line.removeprefix("Generic S3 error: ")
    return line if len(line) <= 300 else line[:297] + "..."


class ObjectStoreRemote(Remote):
    """An object store (``s3://BUCKET/PREFIX``; also ``gs://`` and ``az://``) through
    obstore. Its sync calls release the GIL, so a thread pool moves many objects at
    once; large uploads go in parts; requests are retried with backoff."""

    jobs = 16
    #: retries with exponential backoff and jitter, bounded so that an unreachable
    #: remote fails in seconds, not minutes
    RETRY: ClassVar[dict[str, Any]] = {"max_retries": 4, "retry_timeout": timedelta(seconds=60)}

    def __init__(self, url: str, *, environ: Mapping[str, str]) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            import obstore
            from obstore.exceptions import BaseError, NotFoundError
            from obstore.store import S3Store, from_url
        except ImportError as exc:
            raise UsageError(
                f"{scheme}:// remotes need gitpipe's s3 extra: pip install 'gitpipe[s3]'"
            ) from exc
        if parts.username or parts.password:
            raise UsageError(
                f"the remote url {redact(url)!r} holds credentials; remove them and set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment instead"
            )
        if parts.query or parts.fragment or not parts.netloc:
            raise UsageError(
                f"the remote url {redact(url)!r} is not of the form {scheme}://BUCKET/PREFIX"
            )
        self.url = url
        self.signer = Signer.from_environ(environ)
        self._obs = obstore
        self._errors: tuple[type[BaseException], ...] = (BaseError, OSError)
        self._missing: tuple[type[BaseException], ...] = (FileNotFoundError, NotFoundError)
        self._checked = False
        try:
            if scheme in ("s3", "s3a"):
                endpoint = next(
                    (
                        environ[name]
                        for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
                        if environ.get(name)
                    ),
                    "",
                )
                # an S3-compatible server the user named with http:// is meant to be used
                options = {"allow_http": True} if endpoint.startswith("http://") else {}
                self.store: Any = S3Store(
                    parts.netloc,
                    prefix=parts.path.strip("/") or None,
                    client_options=options,  # type: ignore[arg-type]
                    retry_config=self.RETRY,  # type: ignore[arg-type]
                )
            else:
                self.store = from_url(url, retry_config=self.RETRY)  # type: ignore[arg-type]
        except self._errors as exc:
            raise RemoteError(f"cannot use the remote {url}: {describe(exc)}") from exc

    def _fail(self, doing: str, exc: BaseException) -> RemoteError:
        return RemoteError(
            f"cannot {doing} the remote {self.url} ({describe(exc)}); check the url, "
            "AWS_ENDPOINT_URL if you use one, and the AWS_* credentials in the environment"
        )

    def check(self) -> None:
        if not self._checked:
            self._first_object("reach")
            self._checked = True

    def empty(self) -> bool:
        return not self._first_object("list")

    def _first_object(self, doing: str) -> bool:
        try:
            for chunk in self._obs.list(self.store, OBJECTS, chunk_size=1):
                return bool(chunk)
        except self._errors as exc:
            raise self._fail(doing, exc) from exc
        return False

    def exists(self, name: str) -> bool:
        try:
            self._obs.head(self.store, name)
        except self._missing:
            return False
        except self._errors as exc:
            raise self._fail(f"look for {name} on", exc) from exc
        return True

    def listing(self, prefix: str) -> set[str]:
        found: set[str] = set()
        try:
            for chunk in self._obs.list(self.store, prefix, chunk_size=1000):
                found.update(meta["path"] for meta in chunk)
        except self._errors as exc:
            raise self._fail("list", exc) from exc
        return found

    def upload(self, source: Path, name: str) -> None:
        try:
            self._obs.put(self.store, name, source)
        except self._errors as exc:
            raise self._fail(f"write {name} to", exc) from exc

    def download(self, name: str, target: Path) -> bool:
        try:
            result = self._obs.get(self.store, name)
            with open(target, "wb") as handle:
                for chunk in result.stream(min_chunk_size=_CHUNK):
                    handle.write(chunk)
        except self._missing:
            return False
        except self._errors as exc:
            raise self._fail(f"read {name} from", exc) from exc
        return True

    def read(self, name: str) -> bytes | None:
        try:
            return bytes(self._obs.get(self.store, name).bytes())
        except self._missing:
            return None
        except self._errors as exc:
            raise self._fail(f"read {name} from", exc) from exc

    def write(self, name: str, data: bytes) -> None:
        try:
            self._obs.put(self.store, name, data)
        except self._errors as exc:
            raise self._fail(f"write {name} to", exc) from exc


# -- which remote -----------------------------------------------------------------------


def redact(url: str) -> str:
    """``url`` fit to show: a user name, password or query value in it (which may be
    a secret) is replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.scheme or not (parts.username or parts.password or parts.query):
        return url
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username or parts.password:
        netloc = "***@" + netloc
    query = "&".join(
        f"{item.partition('=')[0]}=***" if "=" in item else "***"
        for item in parts.query.split("&")
        if item
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def open_remote(
    url: str, *, base: Path, environ: Mapping[str, str] | None = None
) -> DirectoryRemote | ObjectStoreRemote:
    """The remote at ``url``: a folder path (relative to ``base``), ``file://PATH``, or
    an object store url such as ``s3://BUCKET/PREFIX``. Its credentials and its
    results' :class:`~gitpipe.store.runcache.Signer` come from ``environ`` (default: this
    process's environment)."""
    text = url.strip()
    if not text:
        raise UsageError("the remote's url is empty")
    environ = os.environ if environ is None else environ
    scheme, sep, _ = text.partition("://")
    if not sep:
        path = Path(os.path.normpath(base / Path(text).expanduser()))
        return DirectoryRemote(path, url=text, signer=Signer.from_environ(environ))
    scheme = scheme.lower()
    if scheme == "file":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"a file:// remote must be on this machine, not {redact(text)!r}")
        return DirectoryRemote(
            Path(unquote(parts.path)), url=text, signer=Signer.from_environ(environ)
        )
    if scheme in OBJECT_STORE_SCHEMES:
        return ObjectStoreRemote(text, environ=environ)
    raise UsageError(
        f"unknown remote scheme {scheme}:// in {redact(text)!r}; use a folder, file://PATH "
        "or s3://BUCKET/PREFIX"
    )


class Configured(Protocol):
    """What :func:`for_project` reads of a project (a :class:`gitpipe.workspace.Project`)."""

    @property
    def root(self) -> Path: ...

    @property
    def environ(self) -> Mapping[str, str]: ...

    @property
    def pipeline(self) -> Any: ...


def for_project(
    project: Configured, url: str | None = None, *, cwd: Path
) -> DirectoryRemote | ObjectStoreRemote:
    """The remote a command uses: ``url`` (``--remote``), else ``$GITPIPE_REMOTE``, else
    the pipeline file's ``[remote] url``. A relative folder is taken from ``cwd`` for
    the first two and from the pipeline file's folder for the last."""
    environ = project.environ
    if url and url.strip():
        return open_remote(url, base=cwd, environ=environ)
    if environ.get(ENV_VAR, "").strip():
        return open_remote(environ[ENV_VAR], base=cwd, environ=environ)
    configured = project.pipeline.remote
    if configured:
        return open_remote(configured, base=project.root, environ=environ)
    raise UsageError(
        f"no remote is configured; pass --remote URL, set {ENV_VAR}, or add "
        '[remote] with url = "..." to the pipeline file'
    )


# -- moving things ----------------------------------------------------------------------


class _Rejected(Exception):
    """Something from the other side failed verification."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Missing(Exception):
    """The sending side does not have it."""


@contextlib.contextmanager
def _pool(jobs: int) -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="gitpipe-remote")
    try:
        yield pool
    except BaseException:
        # an error or Ctrl-C: start nothing more; what runs finishes and tidies itself
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _each(
    pool: ThreadPoolExecutor,
    items: Collection[Any],
    work: Callable[[Any], tuple[Any, int]],
    phase: str,
    progress: ProgressListener,
) -> Iterator[tuple[Any, Any]]:
    """Run ``work`` on every item in the pool; yield (item, value or _Rejected or
    _Missing) as each finishes, reporting progress from this thread. Any other
    error stops the phase: what has not started is cancelled."""
    if not items:
        return
    futures = {pool.submit(work, item): item for item in items}
    total, done, moved = len(futures), 0, 0
    progress(Progress(phase, 0, total, 0))
    try:
        for future in as_completed(futures):
            try:
                value, size = future.result()
            except (_Rejected, _Missing) as exc:
                value, size = exc, 0
            done += 1
            moved += size
            progress(Progress(phase, done, total, moved))
            yield futures[future], value
    finally:
        for future in futures:
            future.cancel()


def _present(
    remote: Remote,
    names: Collection[str],
    pool: ThreadPoolExecutor,
    progress: ProgressListener,
    *,
    levels: int = 1,
) -> set[str]:
    """Which of ``names`` the remote has, in as few requests as it takes: one listing
    per folder the names are in (``levels`` up: 2 for results, whose ``results/b3/XX/``
    holds one folder per key) when that is at most half as many requests as one check
    per name (1,000 objects spread over at most 256 folders), else a check each."""
    folders = {name.rsplit("/", levels)[0] + "/" for name in names}
    if len(names) <= EXISTS_LIMIT or 2 * len(folders) > len(names):
        return {
            name
            for name, there in _each(
                pool, names, lambda n: (remote.exists(n), 0), "checking", progress
            )
            if there is True
        }
    seen: set[str] = set()
    for _folder, listed in _each(
        pool, sorted(folders), lambda f: (remote.listing(f), 0), "checking", progress
    ):
        seen |= listed
    return seen & set(names)


#: one result: (step key, result id)
Pair = tuple[Digest, Digest]


def _what(key: Digest, rid: Digest | None = None) -> str:
    """How a report names a result: ``result KEY`` (all of a key's) or ``result KEY ID``."""
    return f"result {key}" if rid is None else f"result {key} {rid}"


def _local_results(
    runcache: RunCache, selection: Selection | None, report: TransferReport
) -> dict[Pair, Result]:
    """The complete local results a push sends: every one of each selected key (all
    keys for None) and the exact ones; what is wanted but not here is noted."""
    keys = runcache.stored_keys() if selection is None else sorted(selection.keys)
    results: dict[Pair, Result] = {}
    for key in keys:
        found = runcache.results(key)  # without those whose objects are missing here
        if not found:
            report.unavailable.append(_what(key))
        results.update(((key, result.id), result) for result in found)
    for key, rid in sorted(selection.results) if selection is not None else ():
        if (key, rid) in results:
            continue
        result = runcache.get_exact(key, rid)
        if result is None:
            report.unavailable.append(_what(key, rid))
        else:
            results[(key, rid)] = result
    return results


def _remote_results(
    remote: Remote,
    keys: Collection[Digest],
    pool: ThreadPoolExecutor,
    progress: ProgressListener,
) -> dict[Digest, set[Digest]]:
    """The ids of every result each key has on the remote, in as few listings as it
    takes: one per key's folder, or one per ``results/b3/XX/`` folder the keys are in
    when that is at most half as many."""
    prefixes = {key: results_prefix(key) for key in keys}
    folders = {posixpath.dirname(prefix.rstrip("/")) + "/" for prefix in prefixes.values()}
    listed = prefixes.values()
    if len(keys) > EXISTS_LIMIT and 2 * len(folders) <= len(keys):
        listed = folders
    found: dict[Digest, set[Digest]] = {key: set() for key in keys}
    for _prefix, names in _each(
        pool, sorted(listed), lambda p: (remote.listing(p), 0), "checking", progress
    ):
        for pair in map(parse_result_name, names):
            if pair is not None and pair[0] in found:
                found[pair[0]].add(pair[1])
    return found


def _adopt(store: Store, tmp: str, digest: Digest) -> None:
    """Rename a verified file in the store's tmp/ into place as an object."""
    # Store has no public way yet to take in a verified file that is already in its
    # tmp/ (add_file would copy it and hash it a second time): a `Store.adopt` would be.
    store.adopt(tmp, digest)


def _objects_of(result: Result, entries: Mapping[Digest, list[Digest]]) -> set[Digest]:
    """Every object a result needs: its outputs, and each folder's listed files."""
    needed: set[Digest] = set()
    for out in result.outs.values():
        needed.add(out.digest)
        if out.is_dir:
            needed.update(entries.get(out.digest, ()))
    return needed


def push(
    store: Store,
    remote: Remote,
    selection: Selection | None = None,
    *,
    run_cache: bool = True,
    jobs: int | None = None,
    progress: ProgressListener = ignore_progress,
) -> TransferReport:
    """Upload what the remote lacks of ``selection`` (None: the whole store), results
    last and only once every object they name is on the remote."""
    started = time.monotonic()
    report = TransferReport("push", remote.url)
    remote.check()
    runcache = RunCache(store)
    if selection is None:
        files = set(store.iter_objects())
        folders: set[Digest] = set()
    else:
        files, folders = set(selection.files), set(selection.folders)
    results = _local_results(runcache, selection, report) if run_cache else {}
    for result in results.values():
        for out in result.outs.values():
            (folders if out.is_dir else files).add(out.digest)
    entries: dict[Digest, list[Digest]] = {}
    for folder in sorted(folders):
        files.add(folder)
        if folder in store:
            with contextlib.suppress(StoreError):
                entries[folder] = [entry.digest for entry in store.manifest(folder)]
                files.update(entries[folder])
    report.unavailable += [f"object {d}" for d in sorted(files) if d not in store]
    names = {object_name(d): d for d in sorted(files) if d in store}

    def send(digest: Digest) -> tuple[int, int]:
        path = store.object_path(digest)
        try:
            actual = digest_file(path)
        except OSError as exc:
            raise _Missing from exc
        if actual != digest:
            raise _Rejected(
                f"the local copy is damaged (its bytes hash to {actual}); "
                "`gitpipe cache verify --repair` removes it"
            )
        remote.upload(path, object_name(digest))
        size = path.stat().st_size
        return size, size

    with _pool(jobs or remote.jobs) as pool:
        # a first push into an empty remote checks nothing
        fresh = remote.empty()
        there = set() if fresh else _present(remote, names, pool, progress)
        report.objects_present = len(there)
        on_remote = {names[name] for name in there}
        todo = [digest for name, digest in names.items() if name not in there]
        for digest, outcome in _each(pool, todo, send, "objects", progress):
            if isinstance(outcome, _Rejected):
                report.rejected.append(Rejection(f"object {digest}", outcome.reason))
            elif isinstance(outcome, _Missing):
                report.unavailable.append(f"object {digest}")
            else:
                report.objects += 1
                report.bytes += outcome
                on_remote.add(digest)
        if results:
            # every result by its own name: one the remote has of the same key is
            # another run's, not this one
            named = {result_name(*pair): pair for pair in sorted(results)}
            stored = set() if fresh else _present(remote, named, pool, progress, levels=2)
            report.results_present = len(stored)
            ready = []
            for name, pair in named.items():
                if name in stored:
                    continue
                if _objects_of(results[pair], entries) <= on_remote:
                    ready.append(pair)
                else:
                    report.unavailable.append(f"{_what(*pair)} (not all of its objects are there)")

            def send_result(pair: Pair) -> tuple[None, int]:
                data = results[pair].to_json(pair[0], signer=remote.signer)
                remote.write(result_name(*pair), data)
                return None, len(data)

            for _pair, _outcome in _each(pool, ready, send_result, "results", progress):
                report.results += 1
    report.duration = time.monotonic() - started
    return report


def _check_manifest(path: str) -> None:
    """A folder's manifest from a remote must parse and name only paths that stay
    inside the folder, or restoring it could write anywhere."""
    try:
        entries = parse_manifest(Path(path).read_bytes())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _Rejected("it is not a folder manifest") from exc
    for entry in entries:
        if not isinstance(entry.path, str) or not safe_relpath(entry.path):
            raise _Rejected(f"its manifest names the unsafe path {entry.path!r}")


def _fetch_object(store: Store, remote: Remote, digest: Digest, *, folder: bool) -> int:
    """Download an object into the store's tmp/, re-hash it and, only when it matches
    its digest (and, for a folder, its manifest is safe), rename it into place."""
    try:
        fd, tmp = tempfile.mkstemp(dir=store.tmp, prefix="pull-")
        os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot write to the store at {store.root} ({exc.strerror})") from exc
    try:
        if not remote.download(object_name(digest), Path(tmp)):
            raise _Missing
        actual = digest_file(tmp)
        if actual != digest:
            raise _Rejected(f"its bytes hash to {actual}")
        if folder:
            _check_manifest(tmp)
        size = os.path.getsize(tmp)
        _adopt(store, tmp, digest)
        return size
    except OSError as exc:
        raise StoreError(f"cannot write to the store at {store.root} ({exc.strerror})") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _fetch_result(remote: Remote, pair: Pair) -> tuple[Result, int]:
    """One result from the remote, refused unless it is a valid result of its key
    whose outputs have the id its name says (and, when the remote's signer has a
    secret, signed with it)."""
    key, rid = pair
    data = remote.read(result_name(key, rid))
    if data is None:
        raise _Missing
    try:
        return parse_result(data, key, result_id=rid, signer=remote.signer), len(data)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise _Rejected(f"not a trustworthy result: {exc}") from None


def pull(
    store: Store,
    remote: Remote,
    selection: Selection | None = None,
    *,
    run_cache: bool = True,
    jobs: int | None = None,
    progress: ProgressListener = ignore_progress,
) -> TransferReport:
    """Download what the local store lacks of ``selection`` (None: all the remote
    has), verifying everything, and write each result once its objects are here."""
    started = time.monotonic()
    report = TransferReport("pull", remote.url)
    remote.check()
    runcache = RunCache(store, signer=remote.signer)
    try:
        store.tmp.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot write to the store at {store.root} ({exc.strerror})") from exc
    with _pool(jobs or remote.jobs) as pool:
        pairs: set[Pair] = set()
        if selection is None:
            names = remote.listing(OBJECTS)
            files = {d for d in map(_digest_named, names) if d is not None}
            folders: set[Digest] = set()
            if run_cache:
                pairs = {p for p in map(parse_result_name, remote.listing(RESULTS)) if p}
        else:
            files, folders = set(selection.files), set(selection.folders)
            if run_cache:
                pairs = set(selection.results)
                listed = _remote_results(remote, selection.keys, pool, progress)
                for key, ids in sorted(listed.items()):
                    if not ids:
                        report.unavailable.append(_what(key))
                    pairs.update((key, rid) for rid in ids)

        # 1. results the local run cache lacks: validated before anything they name
        wanted = [pair for pair in sorted(pairs) if runcache.get_exact(*pair) is None]
        report.results_present = len(pairs) - len(wanted)
        results: dict[Pair, Result] = {}

        def fetch_result(pair: Pair) -> tuple[Result, int]:
            return _fetch_result(remote, pair)

        for pair, outcome in _each(pool, wanted, fetch_result, "results", progress):
            if isinstance(outcome, _Rejected):
                report.rejected.append(Rejection(_what(*pair), outcome.reason))
            elif isinstance(outcome, _Missing):
                report.unavailable.append(_what(*pair))
            else:
                results[pair] = outcome
                for out in outcome.outs.values():
                    (folders if out.is_dir else files).add(out.digest)
        files -= folders

        # 2. files and folders' manifests, then 3. the files the manifests list
        def fetch(digest: Digest) -> tuple[int, int]:
            size = _fetch_object(store, remote, digest, folder=digest in folders)
            return size, size

        wanted_objects = sorted(d for d in files | folders if d not in store)
        report.objects_present += len(files | folders) - len(wanted_objects)
        rejected: set[Digest] = set()
        for phase in ("objects", "folder files"):
            for digest, outcome in _each(pool, wanted_objects, fetch, phase, progress):
                if isinstance(outcome, _Rejected):
                    rejected.add(digest)
                    report.rejected.append(Rejection(f"object {digest}", outcome.reason))
                elif isinstance(outcome, _Missing):
                    report.unavailable.append(f"object {digest}")
                else:
                    report.objects += 1
                    report.bytes += outcome
            listed: set[Digest] = set()
            for folder in sorted(folders - rejected):
                if folder in store:
                    with contextlib.suppress(StoreError):
                        listed.update(entry.digest for entry in store.manifest(folder))
            wanted_objects = sorted(d for d in listed if d not in store)
            report.objects_present += len(listed) - len(wanted_objects)
            folders = set()  # the files manifests list are files, not folders

    # 4. results, last, and only when every object they name is here; a result's time
    # is a claim too: none is taken to be newer than the moment it arrived (a time
    # changed voids the signature it came with; with a secret, put signs it again)
    arrived = time.time()
    for (key, rid), result in results.items():
        if runcache.complete(result):
            if result.created > arrived:
                result = replace(result, created=arrived, signature="")
            runcache.put(key, result)
            report.results += 1
        else:
            report.unavailable.append(f"{_what(key, rid)} (not all of its objects are there)")
    report.duration = time.monotonic() - started
    return report


def fetch_for_keys(
    store: Store,
    remote: Remote,
    keys: Iterable[Digest],
    *,
    jobs: int | None = None,
    progress: ProgressListener = ignore_progress,
) -> TransferReport:
    """Pull every result of these step keys the local run cache lacks, and every
    object they name, so that a stale step whose result is on the remote is restored
    instead of run (``repro --pull``). One listing of the remote per key (or per
    ``results/b3/XX/`` folder, for many keys); results already here are not fetched."""
    selection = Selection(keys=frozenset(keys))
    return pull(store, remote, selection, run_cache=True, jobs=jobs, progress=progress)
