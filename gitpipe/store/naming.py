"""Names in a store: where an object and a run-cache result live, relative to the
store's root. A local store, its run cache and a remote share this one layout::

    objects/b3/<2 hex>/<62 hex>                                  an object
    results/b3/<2 hex>/<62 hex of the key>/<64 hex of its id>.json  a result of a key
    results/b3/<2 hex>/<62 hex of the key>.json                  older gitpipe's one result
    packs/b3/<64 hex of the pack>.pack                           small objects, one after another
    packs/b3/<64 hex of the pack>.idx                            which object is where in it

Packs are a remote's only (:mod:`gitpipe.store.remote.packs`); a local store holds
every object under its own name.

Names are POSIX paths (a local store joins them to its root). They are built only
from digests that :meth:`~gitpipe.core.hashing.Digest.parse` accepts, and parsed back
only when they are exactly such a name: a parser returns None for anything else, so
nothing listed in a folder or on a remote becomes a digest unvalidated.
"""

from __future__ import annotations

from gitpipe.core.hashing import Digest, DigestError

#: the folder of objects, under a store's (or remote's) root
OBJECTS = "objects"
#: the folder of run-cache results, under a store's (or remote's) root
RESULTS = "results"
#: how a result's file name ends
SUFFIX = ".json"
#: the folder of packs of small objects, under a remote's root
PACKS = "packs"
#: how a pack's and its index's file names end
PACK_SUFFIX = ".pack"
INDEX_SUFFIX = ".idx"


def _spread(digest: Digest) -> str:
    """``b3/XX/REST``: a digest as the folders it is spread over."""
    Digest.parse(str(digest))  # never build a name from unvalidated text
    return f"{digest.algorithm}/{digest.hex[:2]}/{digest.hex[2:]}"


def _joined(algorithm: str, head: str, rest: str) -> Digest | None:
    """The digest that :func:`_spread` spread over these folders; None for any other."""
    if len(head) != 2:
        return None
    try:
        return Digest.parse(f"{algorithm}:{head}{rest}")
    except DigestError:
        return None


def object_name(digest: Digest) -> str:
    """Where an object lives: ``objects/b3/XX/REST``."""
    return f"{OBJECTS}/{_spread(digest)}"


def parse_object_name(name: str) -> Digest | None:
    """The digest of the object :func:`object_name` names; None for any other name."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != OBJECTS:
        return None
    return _joined(*parts[1:])


def results_prefix(key: Digest) -> str:
    """The folder of every result of a step key: ``results/b3/XX/REST/``."""
    return f"{RESULTS}/{_spread(key)}/"


def result_name(key: Digest, result_id: Digest) -> str:
    """Where one result of a step key lives: ``results/b3/XX/REST/RESULT_ID.json``."""
    Digest.parse(str(result_id))
    return f"{results_prefix(key)}{result_id.hex}{SUFFIX}"


def parse_result_name(name: str) -> tuple[Digest, Digest] | None:
    """(key, result id) from a name :func:`result_name` builds; None for any other
    name (an older gitpipe's :func:`legacy_result_name` among them)."""
    parts = name.split("/")
    if len(parts) != 5 or parts[0] != RESULTS or not parts[4].endswith(SUFFIX):
        return None
    key = _joined(*parts[1:4])
    try:
        rid = Digest.parse(f"{parts[1]}:{parts[4].removesuffix(SUFFIX)}")
    except DigestError:
        return None
    return None if key is None else (key, rid)


def legacy_result_name(key: Digest) -> str:
    """Where an older gitpipe kept the one result of a step key (read, never written):
    ``results/b3/XX/REST.json``."""
    return f"{RESULTS}/{_spread(key)}{SUFFIX}"


def parse_legacy_result_name(name: str) -> Digest | None:
    """The key of a name :func:`legacy_result_name` builds; None for any other name."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != RESULTS or not parts[3].endswith(SUFFIX):
        return None
    return _joined(parts[1], parts[2], parts[3].removesuffix(SUFFIX))


def pack_name(pack: Digest) -> str:
    """Where a pack lives on a remote: ``packs/b3/HEX.pack`` (its bytes' digest)."""
    Digest.parse(str(pack))
    return f"{PACKS}/{pack.algorithm}/{pack.hex}{PACK_SUFFIX}"


def pack_index_name(pack: Digest) -> str:
    """Where the index of a pack lives: ``packs/b3/HEX.idx``."""
    Digest.parse(str(pack))
    return f"{PACKS}/{pack.algorithm}/{pack.hex}{INDEX_SUFFIX}"


def parse_pack_index_name(name: str) -> Digest | None:
    """The pack whose index :func:`pack_index_name` names; None for any other name."""
    return _pack_of(name, INDEX_SUFFIX)


def parse_pack_name(name: str) -> Digest | None:
    """The pack :func:`pack_name` names; None for any other name."""
    return _pack_of(name, PACK_SUFFIX)


def _pack_of(name: str, suffix: str) -> Digest | None:
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != PACKS or not parts[2].endswith(suffix):
        return None
    try:
        return Digest.parse(f"{parts[1]}:{parts[2].removesuffix(suffix)}")
    except DigestError:
        return None
