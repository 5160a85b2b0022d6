"""Params files as a run with ``-p`` shows them to its steps, and put back after.

    repro -p train.lr=0.2 (holding the workspace lock)
      ├─ save:    each params file holding an overridden key, its bytes copied to
      │           .gitpipe/params-saved/ with a manifest (written before any file is)
      ├─ show:    the file written again (atomically) with the override put in
      ├─ ... every step of the run reads it ...
      └─ restore: the saved bytes written back, the saved copies removed
    a killed run (SIGKILL): the next gitpipe command that opens the project finds the
      manifest, and, when no repro holds the workspace, restores the files.

A script that reads ``params.yaml`` itself (``--config params.yaml``) then sees the
same values as the step's key and ``GITPIPE_PARAMS``.  The file is written once per
run, not per step, so steps running side by side read one file.  Its comments and
layout are lost while the run lasts (the values are written anew); its bytes after
the run are the bytes before it.  A file edited by hand after a killed run's rewrite
is left alone: restoring would lose the edit (:class:`~gitpipe.core.errors.PathError`
names the saved copy).  See docs/pipeline-file.md#params-files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from gitpipe.core import atomic
from gitpipe.core.errors import PathError, UsageError, describe
from gitpipe.core.hashing import digest_bytes
from gitpipe.pipeline import paramfiles
from gitpipe.pipeline.spec import ParamsFile

#: the folder, in gitpipe's state folder, that holds the saved params files
SAVED = "params-saved"
_MANIFEST = "manifest.json"


def shown_values(values: Any, overrides: Mapping[str, Any]) -> Any:
    """A params file's values with the overrides of keys it defines put in (None
    when it defines none of them)."""
    changed = False
    for dotted, value in overrides.items():
        if not paramfiles.defines(values, dotted):
            continue
        *parents, last = dotted.split(".")
        node = values
        for part in parents:
            node = node[part]
        node[last] = value
        changed = True
    return values if changed else None


@contextlib.contextmanager
def shown(
    root: Path, state_dir: Path, files: Sequence[ParamsFile], overrides: Mapping[str, Any]
) -> Iterator[list[str]]:
    """While inside: each params file of ``files`` holding a key of ``overrides``
    shows the override; the files rewritten are yielded.  The caller holds the
    workspace lock.  Put back on the way out, whatever ends the run."""
    planned: list[tuple[str, bytes, bytes, int]] = []  # path, original, shown, mode
    for file in files if overrides else ():
        target = root / file.path
        try:
            original = target.read_bytes()
            mode = target.stat().st_mode & 0o7777
            values = paramfiles.decode(file.path, original)
        except (OSError, ValueError) as exc:
            raise PathError(f"cannot read params file {file.path} ({exc})") from exc
        values = shown_values(values, overrides)
        if values is None:
            continue
        if target.is_symlink():  # writing it would replace the link with a file
            raise UsageError(
                f"params file {file.path} is a link, and -p would have to replace it to show "
                "the override; point params_files at the file itself, or edit it instead of -p"
            )
        try:
            planned.append((file.path, original, paramfiles.encode(file.path, values), mode))
        except ValueError as exc:
            raise UsageError(f"-p cannot be shown in params file {file.path}: {exc}") from exc
    if not planned:
        yield []
        return
    folder = state_dir / SAVED
    try:
        folder.mkdir(parents=True, exist_ok=True)
        entries = []
        for i, (path, original, shown_bytes, mode) in enumerate(planned):
            saved = f"{i}.saved"
            atomic.write_bytes(folder / saved, original)
            entries.append(
                {
                    "path": path,
                    "saved": saved,
                    "original": str(digest_bytes(original)),
                    "shown": str(digest_bytes(shown_bytes)),
                    "mode": mode,
                }
            )
        atomic.write_bytes(folder / _MANIFEST, json.dumps({"files": entries}).encode())
    except OSError as exc:
        raise PathError(f"cannot save the params files before a run {describe(exc)}") from exc
    try:
        for path, _, shown_bytes, mode in planned:
            atomic.write_bytes(root / path, shown_bytes, mode=mode)
        yield [path for path, *_ in planned]
    finally:
        put_back(root, state_dir)


def put_back(root: Path, state_dir: Path) -> list[str]:
    """Write back the params files a run rewrote (its manifest says which), and
    remove the saved copies; the files put back are returned.  Only while no other
    repro holds the workspace (the caller's business).  A file that holds neither
    what the run wrote nor the original was edited since: it is left as it is and
    :class:`PathError` names the saved copy."""
    folder = state_dir / SAVED
    try:
        manifest = json.loads((folder / _MANIFEST).read_bytes())
        entries = list(manifest["files"])
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PathError(
            f"cannot read {folder / _MANIFEST} ({exc}); the params files a run rewrote are "
            f"saved in {folder}: put them back by hand and remove that folder"
        ) from exc
    restored = []
    edited = []
    for entry in entries:
        target = root / entry["path"]
        saved = folder / entry["saved"]
        try:
            now = target.read_bytes()
        except FileNotFoundError:
            now = None
        except OSError as exc:
            raise PathError(f"cannot put back params file {describe(exc)}") from exc
        digest = str(digest_bytes(now)) if now is not None else ""
        if digest == entry["original"]:
            continue
        if digest != entry["shown"] and now is not None:
            edited.append((entry["path"], saved))
            continue
        try:
            atomic.write_bytes(target, saved.read_bytes(), mode=int(entry["mode"]))
        except OSError as exc:
            raise PathError(f"cannot put back params file {describe(exc)}") from exc
        restored.append(entry["path"])
    if edited:
        path, saved = edited[0]
        raise PathError(
            f"params file {path} was edited while a run with -p showed its override in it, "
            f"so gitpipe leaves it as it is; its bytes from before that run are in {saved}: "
            f"put them back or keep the edit, then remove {folder}"
        )
    with contextlib.suppress(OSError):
        (folder / _MANIFEST).unlink()  # first: a manifest never names a missing copy
        shutil.rmtree(folder)
    return restored


def committed_bytes(root: Path, state_dir: Path, path: Path) -> bytes:
    """A params file's bytes as the pipeline has them: while a `repro -p` shows it
    rewritten (or a killed one left it so), the saved original; else the file's own.
    Every other command reads the params the pipeline holds, not a run's overrides."""
    now = path.read_bytes()
    folder = state_dir / SAVED
    try:
        entries = json.loads((folder / _MANIFEST).read_bytes())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return now  # no run shows one (a damaged manifest: put_back says so)
    try:
        relpath = path.relative_to(root).as_posix()
    except ValueError:
        return now
    for entry in entries:
        if entry.get("path") == relpath and entry.get("shown") == str(digest_bytes(now)):
            with contextlib.suppress(OSError):
                return (folder / entry["saved"]).read_bytes()
    return now  # not one a run rewrote, or edited by hand since: as it is


def left_behind(state_dir: Path) -> bool:
    """Whether a run left params files rewritten (one stat)."""
    return os.path.exists(manifest_path(state_dir))


def manifest_path(state_dir: Path) -> Path:
    """The file whose presence says a run left params files rewritten."""
    return state_dir / SAVED / _MANIFEST
