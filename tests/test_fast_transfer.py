"""The console script's fast path for `push`, `pull` and `checkout` (gitpipe/__main__.py):
done before typer is imported, on a plain console, with the same output, exit code
and effect as the command line; every other form handed to the command line
untouched.

Each case runs twice from the same starting point (the clone and the remote made
afresh at the same paths): once through the console script's way in, once through
the command line alone, and compares stdout, stderr (progress lines' clock times and
the report's duration masked), the exit code, and what is left in the workspace,
the store and the remote.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Workspace, git, make_repo, snapshot
from test_remote_packs import MAKE, PIPELINE

from gitpipe.__main__ import answer
from gitpipe.core.hashing import digest_bytes
from gitpipe.store import lockfile
from gitpipe.store.naming import pack_index_name, pack_name
from gitpipe.store.objects import Store
from gitpipe.store.remote import DirectoryRemote, packs

ROOT = str(Path(__file__).resolve().parents[1])


def run(module: str, args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env={**os.environ, "CI": "true", "PYTHONPATH": ROOT, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, mask(done.stdout), mask(done.stderr)


def mask(text: str) -> str:
    """Clock times and durations, which differ from run to run."""
    text = re.sub(r"^\d\d:\d\d:\d\d ", "HH:MM:SS ", text, flags=re.MULTILINE)
    return re.sub(r" in \d+\.\d\d s", " in N s", text)


def state(root: Path) -> dict[str, object]:
    """What a command leaves: every file's bytes and mode in the workspace, and the
    store's objects and results (not gitpipe's caches, logs and lineage)."""
    kept = {}
    for path, (mode, data, _mtime) in snapshot(root).items():
        if path.startswith(".git/"):
            continue
        if path.startswith(".gitpipe/") and not path.startswith(
            (".gitpipe/cache/objects/", ".gitpipe/cache/results/")
        ):
            continue
        kept[path] = (mode, data)
    return kept


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A repository whose two steps have run: out/ of 40 files, and count.txt."""
    root = make_repo(tmp_path / "source")
    one = Workspace(root, None)  # type: ignore[arg-type]
    one.write("make.py", MAKE)
    one.write(".gitignore", "out/\ncount.txt\n")
    one.pipeline(PIPELINE)
    one.commit("pipeline")
    done = run("gitpipe.cli", ["repro", "-q"], root, {})
    assert done[0] == 0, done
    one.commit("lock")
    return root


Setup = Callable[[Path, Path, Path], None]


def pushed(source: Path, clone: Path, remote: Path) -> None:
    """The remote holds what the lock names (pushed from the source)."""
    assert run("gitpipe.cli", ["push", "-r", str(remote)], source, {})[0] == 0


def a_clone(source: Path, clone: Path, remote: Path) -> None:
    """The clone is a fresh Git clone: no store, no outputs."""
    del remote


def producer(source: Path, clone: Path, remote: Path) -> None:
    """The clone is a copy of the source, store and outputs included."""
    shutil.rmtree(clone)
    shutil.copytree(source, clone, symlinks=True)


def forged(source: Path, clone: Path, remote: Path) -> None:
    """The remote holds what the lock names, a byte of count.txt's object in its pack
    changed."""
    pushed(source, clone, remote)
    count = lockfile.read(source / "gitpipe.lock").steps["count"].outs["count.txt"]
    folder = DirectoryRemote(remote)
    [pack] = packs.listed(folder)
    member = packs.read_index(folder, pack)[count]
    target = remote / pack_name(pack)
    data = bytearray(target.read_bytes())
    data[member.offset] ^= 0xFF
    target.chmod(0o644)
    target.write_bytes(bytes(data))


def garbled(source: Path, clone: Path, remote: Path) -> None:
    """The remote holds what the lock names, and one more pack whose index is not
    JSON: a warning line, not an error."""
    pushed(source, clone, remote)
    junk = b"another pack\n"
    folder = DirectoryRemote(remote)
    folder.write(pack_name(digest_bytes(junk)), junk)
    folder.write(pack_index_name(digest_bytes(junk)), b"{ not json")


def emptied(source: Path, clone: Path, remote: Path) -> None:
    shutil.rmtree(remote)


#: (setup, args with REMOTE for the remote's path, where: repo or parent, env)
CASES: list[tuple[list[Setup], list[str], str, dict[str, str]]] = [
    ([producer], ["push", "-r", "REMOTE"], "repo", {}),
    ([producer, pushed], ["push", "--remote", "REMOTE"], "repo", {}),
    ([producer], ["-C", "clone", "push", "--remote=REMOTE"], "parent", {}),
    ([producer], ["push", "-f", "gitpipe.toml", "-C", "."], "repo", {"GITPIPE_REMOTE": "REMOTE"}),
    ([producer, emptied], ["push", "-r", "REMOTE"], "repo", {}),
    ([a_clone], ["push", "-r", "REMOTE"], "repo", {}),
    ([a_clone, pushed], ["pull", "-r", "REMOTE"], "repo", {}),
    ([a_clone, pushed], ["-f", "gitpipe.toml", "pull"], "repo", {"GITPIPE_REMOTE": "REMOTE"}),
    ([a_clone, forged], ["pull", "-r", "REMOTE"], "repo", {}),
    ([a_clone], ["pull", "-r", "REMOTE"], "repo", {}),
    ([a_clone], ["pull"], "repo", {}),
    ([a_clone, pushed], ["checkout", "--pull", "-r", "REMOTE"], "repo", {}),
    (
        [a_clone, pushed],
        ["-C", "clone", "checkout", "--pull"],
        "parent",
        {"GITPIPE_REMOTE": "REMOTE"},
    ),
    ([a_clone, forged], ["checkout", "--pull", "--remote", "REMOTE"], "repo", {}),
    ([a_clone, garbled], ["pull", "-r", "REMOTE"], "repo", {}),
    ([a_clone, garbled], ["checkout", "--pull", "-r", "REMOTE"], "repo", {}),
    ([a_clone], ["checkout", "--pull", "-r", "REMOTE"], "repo", {}),
    ([a_clone], ["checkout"], "repo", {}),
    ([producer], ["checkout"], "repo", {}),
    ([producer], ["push", "-r", "REMOTE", "-f", "other.toml"], "repo", {}),
    ([producer], ["push", "-r", "REMOTE", "-C", "nowhere"], "repo", {}),
]


@pytest.mark.parametrize(("setups", "args", "where", "env"), CASES)
def test_the_fast_path_does_what_the_command_line_does_byte_for_byte(
    source: Path,
    tmp_path: Path,
    setups: list[Setup],
    args: list[str],
    where: str,
    env: dict[str, str],
) -> None:
    clone = tmp_path / "clone"
    remote = tmp_path / "remote"
    outcomes = []
    for module in ("gitpipe", "gitpipe.cli"):  # the console script's way in, then the CLI
        shutil.rmtree(clone, ignore_errors=True)
        shutil.rmtree(remote, ignore_errors=True)
        remote.mkdir()
        git(tmp_path, "clone", "-q", str(source), str(clone))
        for setup in setups:
            setup(source, clone, remote)
        given = [str(remote) if a == "REMOTE" else a.replace("REMOTE", str(remote)) for a in args]
        named = {k: str(remote) if v == "REMOTE" else v for k, v in env.items()}
        cwd = clone if where == "repo" else tmp_path
        done = run(module, given, cwd, named)
        outcomes.append((done, state(clone), state(remote) if remote.exists() else None))
    (fast, fast_clone, fast_remote), (full, full_clone, full_remote) = outcomes
    assert fast == full
    assert fast_clone == full_clone
    assert fast_remote == full_remote


def test_the_transfers_are_done_without_typer(source: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(source), str(clone))
    code = "import sys; from gitpipe.__main__ import main; main()"
    for cwd, args in (
        (source, ["push", "-r", str(remote)]),
        (clone, ["pull", "-r", str(remote)]),
        (clone, ["checkout"]),
    ):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code, *args],
            cwd=cwd,
            env={**os.environ, "CI": "true", "PYTHONPATH": ROOT},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        loaded = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
        assert not {"typer", "click", "gitpipe.cli", "gitpipe.run.events"} & loaded, args
        assert "dulwich" not in loaded, args  # nor Git: the clone is found without it
        if args[0] == "push":  # it reads the lock and the store, and hashes nothing here
            hashing = {
                "gitpipe.workspace.data",
                "gitpipe.identity.statcache",
                "gitpipe.run.outputs",
            }
            assert not hashing & loaded, hashing & loaded
    assert (clone / "out" / "000.txt").read_text() == "file 0\n"
    assert Store(clone / ".gitpipe" / "cache").has_tree(
        lockfile.read(clone / "gitpipe.lock").steps["make"].outs["out/"]
    )


@pytest.mark.parametrize(
    "args",
    [
        ["push", "--all"],
        ["push", "--json"],
        ["push", "-j", "2"],
        ["push", "--no-run-cache"],
        ["pull", "--run-cache"],
        ["push", "-r"],
        ["push", "-r", ""],
        ["push", "-r", "--json"],
        ["push", "-r", "a", "-r", "b"],
        ["push", "-rREMOTE"],
        ["--debug", "push"],
        ["-r", "x", "push"],
        ["pull", "--pull"],
        ["checkout", "out"],
        ["checkout", "--force"],
        ["checkout", "--json"],
        ["checkout", "--pull", "--pull"],
        ["push", "pull"],
        ["status", "-r", "x"],
    ],
)
def test_other_transfer_forms_are_handed_to_the_command_line_untouched(
    source: Path,
    args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(source)
    monkeypatch.setenv("CI", "true")
    before = snapshot(source)
    assert answer(args) is None
    assert capsys.readouterr() == ("", "")
    assert Path.cwd() == source
    assert snapshot(source) == before


def test_on_a_terminal_or_with_gitpipe_debug_the_command_line_draws_it(
    source: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(source)
    before = snapshot(source)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("GITPIPE_DEBUG", "1")
    assert answer(["push", "-r", str(source)]) is None
    monkeypatch.delenv("GITPIPE_DEBUG")
    monkeypatch.delenv("CI")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("TERM", "xterm")
    assert answer(["push", "-r", str(source)]) is None
    assert capsys.readouterr() == ("", "")
    assert snapshot(source) == before
