"""Remotes: the store's objects and run-cache results on a shared folder or object store.

A remote has the local store's layout (:mod:`gitpipe.store.naming`:
``objects/b3/XX/REST`` and, for each result of a step key,
``results/b3/XX/REST/RESULT_ID.json``; a key may have several). One module per kind,
the transfer apart::

    base         Remote: what every kind offers (exists, listing, upload, download,
                 read, write); redact, redact_argv: a url, or a command line, fit to show
    folder       DirectoryRemote: a local or mounted folder, built in; every write
                 goes to a temporary file and is renamed into place, as in the store
    objectstore  ObjectStoreRemote: S3 (and other object stores) through obstore, the
                 gitpipe-ml[s3] extra; credentials from the environment only
    url          open_remote(url), for_project(project): which remote a command uses
    transfer     push, pull, fetch_for_keys: what the other side lacks, verified;
                 Selection (what to move); Indexes (the packs' indexes, read once
                 for the pulls of one command)
    moving       what every transfer shares: a phase's work on a thread pool,
                 Progress, TransferReport (what happened), Rejection
    fetching     a pull's objects: where each is (its own name, which packs), each
                 fetched from its copies in turn until one is its digest
    packs        many small objects in one file on a remote, found through an index

The object-store module (and obstore with it) is imported only when an object-store
remote is opened, or :class:`ObjectStoreRemote` is named here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gitpipe.store.naming import object_name, parse_result_name, result_name, results_prefix
from gitpipe.store.remote.base import Remote, redact, redact_argv
from gitpipe.store.remote.fetching import Indexes
from gitpipe.store.remote.folder import DirectoryRemote
from gitpipe.store.remote.moving import (
    Progress,
    ProgressListener,
    Rejection,
    TransferReport,
    ignore_progress,
)
from gitpipe.store.remote.transfer import (
    Pair,
    Selection,
    entry_result_id,
    fetch_for_keys,
    pull,
    push,
)
from gitpipe.store.remote.url import (
    ENV_VAR,
    OBJECT_STORE_SCHEMES,
    Configured,
    for_project,
    open_remote,
)

if TYPE_CHECKING:
    from gitpipe.store.remote.objectstore import ObjectStoreRemote, describe

__all__ = [
    "ENV_VAR",
    "OBJECT_STORE_SCHEMES",
    "Configured",
    "DirectoryRemote",
    "Indexes",
    "ObjectStoreRemote",
    "Pair",
    "Progress",
    "ProgressListener",
    "Rejection",
    "Remote",
    "Selection",
    "TransferReport",
    "describe",
    "entry_result_id",
    "fetch_for_keys",
    "for_project",
    "ignore_progress",
    "object_name",
    "open_remote",
    "parse_result_name",
    "pull",
    "push",
    "redact",
    "redact_argv",
    "result_name",
    "results_prefix",
]

_OBJECT_STORE = frozenset({"ObjectStoreRemote", "describe"})


def __getattr__(name: str) -> Any:
    """The object-store remote's names, imported on first use."""
    if name in _OBJECT_STORE:
        from gitpipe.store.remote import objectstore

        return getattr(objectstore, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
