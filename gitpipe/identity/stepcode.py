"""A step's code as keys see it: which files it is, and each file's code digest.

    step ──find_code(discoverer)──> files ──code_digests(source, normal)──> {path: digest}
          code globs, the Python its      .py: normalised syntax tree, unless
          commands (or fn module) run     code_digest = "bytes"; other files: bytes
          and import

One implementation for every place a step's code is keyed: a repro's key records and
the fingerprint it writes into ``gitpipe.lock`` (the working tree, digests from the
stat cache), and the fingerprint versions compute for a commit (a Git tree, digests
of blobs).  The lock's fingerprint and the one its commit has agree because both
come from here.  Each caller brings its own :class:`~gitpipe.identity.codedeps.Source`
and its own memory of normalised digests (the stat cache's code table; one dict
shared by the commits of a walk).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gitpipe.core.hashing import Digest
from gitpipe.identity.codedeps import Discoverer, Discovery, Source, code_digest, commands_of
from gitpipe.pipeline.spec import Step

#: a Python file's normalised digest, given its path and the digest of its bytes
Normaliser = Callable[[str, Digest], Digest]


def find_code(step: Step, discoverer: Discoverer) -> Discovery:
    """A step's code files: those its ``code`` globs name, and the Python its commands
    (or its ``fn`` module) run and import; with the folders Python needs on
    PYTHONPATH to import them as discovery did (``Discovery.pythonpath``)."""
    return discoverer.discover(commands_of(step), step.wdir, step.code, step.pythonpath)


def code_digests(
    step: Step, files: Iterable[str], source: Source, normal: Normaliser
) -> dict[str, Digest]:
    """Each code file of a step with its code digest: a ``.py`` file's normalised
    digest (``normal``) unless the step says ``code_digest = "bytes"``, any other
    file's the digest of its bytes."""
    code = {}
    for path in files:
        raw = source.digest(path)
        code[path] = (
            normal(path, raw) if step.code_digest == "ast" and path.endswith(".py") else raw
        )
    return code


def normaliser(source: Source, known: dict[Digest, Digest]) -> Normaliser:
    """Normalised digests read from ``source``, remembered in ``known`` by the digest
    of the bytes (so that content met again, under any path or commit, is parsed once)."""

    def normal(path: str, raw: Digest) -> Digest:
        found = known.get(raw)
        if found is None:
            found = known[raw] = code_digest(path, source.read(path))[0]
        return found

    return normal


def step_code(step: Step, discoverer: Discoverer, normal: Normaliser) -> dict[str, Digest]:
    """A step's code files, each with its code digest."""
    return code_digests(step, find_code(step, discoverer).files, discoverer.source, normal)
