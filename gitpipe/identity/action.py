"""Step keys: the digest of a canonical action record built from an allow-list.

Only the fields named in :func:`key_record` enter a key.  A new step field changes
no key until it is added here on purpose (with ``KEY_SCHEMA`` bumped), and the
golden-digest test in ``tests/test_keys.py`` fails until that change is deliberate.
Never put commit ids, times, version numbers, absolute paths or host names here.

A field that is absent unless a step uses it (``fn``, ``urls``: its remote deps'
fingerprints) enters only the records of steps that use it: the keys of every
other step stay as they were, so such a field needs no new ``KEY_SCHEMA``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gitpipe.core.hashing import (
    Digest,
    canonical_as_is,
    digest_bytes,
    digest_record_with_table,
)
from gitpipe.pipeline.spec import Pipeline, Step

KEY_SCHEMA = "gitpipe.key/1"
FINGERPRINT_SCHEMA = "gitpipe.fingerprint/1"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """The components of a step's key, each kept for `status` and `why` to compare."""

    cmd: tuple[str, ...]
    wdir: str
    code: Mapping[str, Digest]
    deps: Mapping[str, Digest]
    params: Mapping[str, Any]
    env: Mapping[str, str]
    outs: tuple[str, ...]
    metrics: tuple[str, ...]
    fn: str = ""
    #: folders (relative to the pipeline's folder) put first on PYTHONPATH for its
    #: commands: ``[pipeline] pythonpath``, or those its code discovery needs
    pythonpath: tuple[str, ...] = ()
    #: each remote dep (a url) with its fingerprint (gitpipe.identity.external)
    urls: Mapping[str, Mapping[str, str | int]] = field(default_factory=dict)
    plots: tuple[str, ...] = ()  # keyed only when declared: no other step's key moves
    #: what of its environment the step's results depend on (gitpipe.identity.environment):
    #: Python's version and the distributions its code imports, a lock file's digest,
    #: commands' versions; keyed only when there is some, so a command step keeps its key
    environment: Mapping[str, Any] = field(default_factory=dict)
    # the key, computed once: status, repro and the run cache all ask for it
    _key: Digest | None = field(default=None, init=False, repr=False, compare=False)

    def as_record(self) -> dict[str, Any]:
        record = {
            "schema": KEY_SCHEMA,
            "cmd": list(self.cmd),
            "wdir": self.wdir,
            "code": {path: str(digest) for path, digest in self.code.items()},
            "deps": {path: str(digest) for path, digest in self.deps.items()},
            "params": dict(self.params),
            "env": dict(self.env),
            "outs": sorted(self.outs),
            "metrics": sorted(self.metrics),
        }
        if self.plots:  # output paths, like outs and metrics
            record["plots"] = sorted(self.plots)
        if self.fn:  # a function step (its cmd is the same reference, for people)
            record["fn"] = self.fn
        if self.pythonpath:  # none: the key of a step Python finds its code for unaided
            record["pythonpath"] = list(self.pythonpath)
        if self.urls:  # only then: the keys of steps without remote deps stay as they were
            record["urls"] = {url: dict(found) for url, found in self.urls.items()}
        if self.environment:
            record["environment"] = {
                part: dict(value) if isinstance(value, Mapping) else value
                for part, value in self.environment.items()
            }
        return record

    @property
    def key(self) -> Digest:
        if self._key is None:
            # built here, with string keys throughout: encoded as it is
            object.__setattr__(self, "_key", digest_bytes(canonical_as_is(self.as_record())))
        assert self._key is not None
        return self._key


def key_record(
    step: Step,
    *,
    deps: Mapping[str, Digest],
    code: Mapping[str, Digest],
    pythonpath: Sequence[str] = (),
    urls: Mapping[str, Mapping[str, str | int]] | None = None,
    environment: Mapping[str, Any] | None = None,
) -> KeyRecord:
    """The record a step's key is the digest of.

    ``deps`` maps each dependency as written (folders with a trailing ``/``) to its
    digest; ``code`` maps each code file to its digest; ``pythonpath`` lists the
    folders its commands get first on PYTHONPATH (it enters the record only when
    there are some, so that a step that needs none keeps the key it always had);
    ``urls`` maps each remote dep to its fingerprint; ``environment`` is the step's
    environment record (gitpipe.identity.environment.Environment.record).
    """
    return KeyRecord(
        cmd=step.cmd,
        wdir=step.wdir,
        code=dict(sorted(code.items())) if code else {},
        deps=dict(sorted(deps.items())),
        params=dict(sorted(step.params.items())) if step.params else {},
        env=dict(sorted(step.env.items())) if step.env else {},
        outs=tuple(sorted(map(str, step.outs))),
        metrics=tuple(sorted(map(str, step.metrics))),
        fn=step.fn,
        pythonpath=tuple(pythonpath),
        urls={url: dict(sorted(found.items())) for url, found in sorted(urls.items())}
        if urls
        else {},
        plots=tuple(sorted(map(str, step.plots))),
        environment=dict(sorted(environment.items())) if environment else {},
    )


def fingerprint(pipeline: Pipeline, code: Mapping[str, Mapping[str, Digest]]) -> Digest:
    """The pipeline's identity without its data: structure, commands, code and params.
    Each step's part is made and hashed in turn (`digest_record_with_table`): the
    record whole is a few hundred MB at 100,000 steps."""

    def part(name: str) -> dict[str, Any]:
        step = pipeline.steps[name]
        found = code.get(name)
        record: dict[str, Any] = {
            "cmd": [step.fn] if step.fn else list(step.cmd),
            "wdir": step.wdir,
            "deps": sorted(map(str, step.deps)),
            "outs": sorted(map(str, step.outs)),
            "metrics": sorted(map(str, step.metrics)),
            "after": sorted(step.after),
            "params": dict(step.params),
            "env": dict(step.env),
            "code": {path: str(found[path]) for path in sorted(found)} if found else {},
        }
        if step.urls:  # only then: the fingerprints of pipelines without them stay
            record["urls"] = sorted(str(dep) for dep in step.urls)
        if step.plots:
            record["plots"] = sorted(str(spec) for spec in step.plots)
        return record

    return digest_record_with_table(
        {"schema": FINGERPRINT_SCHEMA, "params": dict(pipeline.params)},
        "steps",
        pipeline.steps,
        part,
        encode=canonical_as_is,  # each part is built here, with string keys throughout
    )
