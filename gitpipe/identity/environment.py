"""A step's environment as its key sees it (docs/environment.md).

    step ──environment mode──> "imports":  Python major.minor, and each installed
                                           distribution its code imports, with its version
                               "lockfile": the digest of the environment's lock file(s)
                               "none":     nothing
                               [commands]: "imports", and each command's `--version`

Only Python steps (code discovery found Python, or a ``fn`` step) get the Python
version and the distributions; a command step gets only the versions of the commands
its ``environment`` lists.  An empty record enters no key, so a step without an
environment keeps the key it always had.

The map from a top-level module to the distributions that install it
(``importlib.metadata.packages_distributions()``) scans every installed distribution's
metadata; it is kept in ``.gitpipe/environment.json`` under the stamps (name, mtime)
of the ``*.dist-info`` folders on ``sys.path``, so a command in an unchanged
environment lists a few folders and reads one small file.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from gitpipe.core.atomic import write_bytes
from gitpipe.core.errors import PipelineError
from gitpipe.core.hashing import digest_bytes, digest_record

#: the environment modes a pipeline may choose (a list of commands is the fifth)
MODES = ("imports", "lockfile", "none")
#: the lock files ``environment = "lockfile"`` looks for, besides requirements*.txt
LOCKFILES = ("uv.lock", "poetry.lock", "pixi.lock", "conda-lock.yml")
CACHE_SCHEMA = "gitpipe.environment/1"
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | {"__future__", "__main__"}


def python_version() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def is_third_party(module: str) -> bool:
    """Whether a top-level module name may come from an installed distribution."""
    return bool(module) and module not in _STDLIB and module not in sys.builtin_module_names


def _stamps() -> list[list[Any]]:
    """The ``*.dist-info`` (and ``*.egg-info``) folders on ``sys.path``, each with its
    mtime: installing, removing or upgrading a distribution changes them."""
    found: list[list[Any]] = []
    for entry in dict.fromkeys(sys.path):
        try:
            with os.scandir(entry or ".") as listing:
                for item in listing:
                    if item.name.endswith((".dist-info", ".egg-info")):
                        found.append([entry, item.name, item.stat().st_mtime_ns])
        except OSError:
            continue
    found.sort()
    return found


class Environment:
    """What one command learns of the environment: the module map (cached on disk in
    ``cache_file``), the lock files' digests and the commands' versions, each once."""

    def __init__(self, root: Path, cache_file: Path | None) -> None:
        self.root = root
        self.cache_file = cache_file
        self._modules: dict[str, list[list[str]]] | None = None
        self._lockfiles: dict[str, str] | None = None
        self._top = root
        self._tools: dict[str, str] = {}

    # the module map --------------------------------------------------------------

    def modules(self) -> dict[str, list[list[str]]]:
        """Top-level module -> [[distribution, version], ...]."""
        if self._modules is None:
            stamp = str(digest_record({"python": sys.version, "dist": _stamps()}))
            cached = self._read_cache()
            if cached is not None and cached.get("stamp") == stamp:
                self._modules = cached["modules"]
            else:
                self._modules = _scan()
                self._write_cache(
                    {"schema": CACHE_SCHEMA, "stamp": stamp, "modules": self._modules}
                )
        return self._modules

    def _read_cache(self) -> dict[str, Any] | None:
        if self.cache_file is None:
            return None
        try:
            data = json.loads(self.cache_file.read_bytes())
        except (OSError, ValueError):
            return None  # a cache: missing or damaged, it is made again
        if not isinstance(data, dict) or data.get("schema") != CACHE_SCHEMA:
            return None
        return data if isinstance(data.get("modules"), dict) else None

    def _write_cache(self, data: Mapping[str, Any]) -> None:
        if self.cache_file is None or not self.cache_file.parent.is_dir():
            return
        try:
            text = json.dumps(data, sort_keys=True).encode()
            write_bytes(self.cache_file, text, sync=False)
        except OSError:
            return  # a cache that cannot be kept is made again next time

    def packages(self, modules: Iterable[str]) -> dict[str, str]:
        """The installed distributions that provide ``modules``, with their versions;
        a module no distribution provides (not installed) is left out."""
        known = self.modules() if modules else {}
        found: dict[str, str] = {}
        for module in modules:
            for name, version in known.get(module, []):
                found[name] = version
        return dict(sorted(found.items()))

    # lock files and commands -----------------------------------------------------

    def lockfiles(self) -> dict[str, str]:
        """The lock files at the repository's root (the pipeline's folder, else the
        nearest folder above it with ``.git``), each with its digest."""
        if self._lockfiles is None:
            top = self.root
            for folder in (self.root, *self.root.parents):
                if (folder / ".git").exists():
                    top = folder
                    break
            self._top = top
            names = [n for n in LOCKFILES if (top / n).is_file()]
            names += sorted(p.name for p in top.glob("requirements*.txt") if p.is_file())
            self._lockfiles = {n: str(digest_bytes((top / n).read_bytes())) for n in names}
        return self._lockfiles

    def tool(self, command: str) -> str:
        """The first line of ``command --version`` (stdout, else stderr), trimmed."""
        if command not in self._tools:
            import subprocess  # here: a step's key asks for a command's version rarely

            try:
                done = subprocess.run(
                    [command, "--version"],
                    capture_output=True,
                    text=True,
                    errors="replace",
                    timeout=60,
                    stdin=subprocess.DEVNULL,
                    check=False,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise PipelineError(
                    f"environment command {command!r} cannot start ({exc.__class__.__name__}); "
                    "install it or remove it from `environment`"
                ) from exc
            lines = [line.strip() for line in (done.stdout + "\n" + done.stderr).splitlines()]
            self._tools[command] = next((line for line in lines if line), "")
        return self._tools[command]

    # a step's record -------------------------------------------------------------

    def record(
        self,
        mode: str | tuple[str, ...],
        *,
        python: bool,
        modules: Iterable[str],
        step: str,
        seen: Any = None,
    ) -> dict[str, Any]:
        """The ``environment`` of a step's key record; empty when nothing applies.
        ``seen`` (a status's :class:`gitpipe.core.snapshot.Recorder`) is told what the
        answer rests on: the folders distributions are installed in, the lock files."""
        record: dict[str, Any] = {}
        if mode == "none":
            return record
        if mode == "lockfile":
            found = self.lockfiles()
            if seen is not None:
                seen.look(str(self._top))
                for name in found:
                    seen.look(str(self._top / name))
            if not found:
                raise PipelineError(
                    f'step {step!r} has environment = "lockfile" but no '
                    f"{', '.join(LOCKFILES)} or requirements*.txt is at the repository's root"
                )
            return {"lockfile": found}
        if python:
            record["python"] = python_version()
            if seen is not None:  # installing or removing a distribution changes them
                for entry in dict.fromkeys(sys.path):
                    seen.look(os.path.abspath(entry or "."))
            packages = self.packages(sorted(set(modules)))
            if packages:
                record["packages"] = packages
        if isinstance(mode, tuple) and mode:
            if seen is not None:
                seen.broken = True  # a command's version has no stamp: no kept answer
            record["tools"] = {command: self.tool(command) for command in mode}
        return record


def check(steps: Iterable[Any], root: Path) -> None:
    """What would stop keying ``steps`` (a "lockfile" step without a lock file, a
    listed command that is not on PATH), raised before a run writes anything."""
    environment = Environment(root, None)
    for step in steps:
        if step.environment == "lockfile" and not environment.lockfiles():
            environment.record("lockfile", python=False, modules=(), step=step.name)
        if isinstance(step.environment, tuple):
            for command in step.environment:
                if shutil.which(command) is None:
                    raise PipelineError(
                        f"environment command {command!r} of step {step.name!r} cannot "
                        "start (not found on PATH); install it or remove it from `environment`"
                    )


def _scan() -> dict[str, list[list[str]]]:
    from importlib import metadata

    versions: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name and name not in versions:
            versions[name] = dist.version
    mapping: dict[str, list[list[str]]] = {}
    for module, names in metadata.packages_distributions().items():
        if not is_third_party(module):
            continue
        mapping[module] = sorted(
            [name, versions[name]] for name in dict.fromkeys(names) if name in versions
        )
    return mapping


def describe(now: Mapping[str, Any], then: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What differs between two environment records, as (kind, detail) pairs:
    ``("package changed", "scikit-learn 1.5.2 → 1.6.0")``."""
    reasons: list[tuple[str, str]] = []
    if not then:  # a lock written before the environment was keyed
        shown = [f"python {now['python']}"] if "python" in now else []
        shown += [
            f"{n} {v}" for n, v in {**now.get("packages", {}), **now.get("tools", {})}.items()
        ]
        shown += list(now.get("lockfile", {}))
        return [("environment recorded", ", ".join(shown))]
    if now.get("python") != then.get("python"):
        reasons.append(
            ("python changed", f"{then.get('python', 'none')} → {now.get('python', 'none')}")
        )
    for kind, label in (("packages", "package"), ("tools", "tool")):
        new, old = now.get(kind, {}), then.get(kind, {})
        for name in sorted(set(new) | set(old)):
            if name not in old:
                reasons.append((f"{label} added", f"{name} {new[name]}"))
            elif name not in new:
                reasons.append((f"{label} removed", f"{name} {old[name]}"))
            elif new[name] != old[name]:
                reasons.append((f"{label} changed", f"{name} {old[name]} → {new[name]}"))
    new, old = now.get("lockfile", {}), then.get("lockfile", {})
    for name in sorted(set(new) | set(old)):
        if new.get(name) != old.get(name):
            reasons.append(("lockfile changed", name))
    if not reasons and dict(now) != dict(then):
        reasons.append(("environment changed", ""))
    return reasons
