"""A memo keyed by relative paths that forgets a path and everything under it cheaply.

Forgetting ``a/b`` must drop ``a/b`` itself and every key ``a/b/...``. A scan of all
the keys per forget made a full `repro` quadratic in the number of steps (every step
forgets its outputs before it runs: issue 24), so each key is also filed under every
folder above it when it is set, and a forget visits only the keys filed under the
path it names. A key forgotten through one folder may linger, stale, in the lists of
the others; dropping it again is a no-op, so this costs memory proportional to the
keys ever set times their depth, and time proportional to what is forgotten.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

V = TypeVar("V")


class PathMemo(Generic[V]):
    """A dict from ``/``-separated paths to values, with :meth:`forget` of a subtree."""

    __slots__ = ("_under", "_values")

    def __init__(self) -> None:
        self._values: dict[str, V] = {}
        #: a folder -> the keys ever set below it (some possibly forgotten since)
        self._under: dict[str, list[str]] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __getitem__(self, key: str) -> V:
        return self._values[key]

    def __setitem__(self, key: str, value: V) -> None:
        if key not in self._values:
            cut = key.find("/")
            while cut != -1:
                self._under.setdefault(key[:cut], []).append(key)
                cut = key.find("/", cut + 1)
        self._values[key] = value

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, key: str, default: V | None = None) -> V | None:
        return self._values.get(key, default)

    def forget(self, path: str) -> list[str]:
        """Drop ``path`` and every key under it; return the keys that were there."""
        dropped = []
        if self._values.pop(path, _MISSING) is not _MISSING:
            dropped.append(path)
        for key in self._under.pop(path, ()):
            if self._values.pop(key, _MISSING) is not _MISSING:
                dropped.append(key)
        return dropped


_MISSING = object()
