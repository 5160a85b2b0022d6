"""Issue 24: a full `repro` whose cost per step does not grow with the pipeline.

Forgetting what was learnt of a path a step is about to write visits only what was
learnt at or under that path (gitpipe/core/pathmemo.py), and still forgets all of it.
"""

from __future__ import annotations

import json
import marshal
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import blake3

from gitpipe.core import tomlcache
from gitpipe.core.pathmemo import PathMemo
from gitpipe.identity.statcache import Hasher, StatCache
from tests.conftest import Workspace


def test_forgetting_a_folder_drops_it_and_everything_under_it_but_not_its_neighbours() -> None:
    memo: PathMemo[int] = PathMemo()
    for n, key in enumerate(["out", "out/a", "out/a/b", "out/ab", "other/a", "/abs/out/a"]):
        memo[key] = n
    assert sorted(memo.forget("out/a")) == ["out/a", "out/a/b"]
    assert sorted(memo) == ["/abs/out/a", "other/a", "out", "out/ab"]
    assert sorted(memo.forget("out")) == ["out", "out/ab"]
    assert sorted(memo) == ["/abs/out/a", "other/a"]
    assert memo.forget("out") == []
    assert memo.forget("missing/path") == []


def test_a_key_set_again_after_being_forgotten_is_forgotten_again_once() -> None:
    memo: PathMemo[str] = PathMemo()
    memo["d/e/f"] = "first"
    assert memo.forget("d") == ["d/e/f"]
    memo["d/e/f"] = "second"
    memo["d/e/f"] = "third"  # set twice: still one key
    assert memo.get("d/e/f") == "third" and len(memo) == 1
    assert memo.forget("d/e") == ["d/e/f"]
    assert "d/e/f" not in memo and memo.forget("d") == []


def test_forgetting_one_file_among_many_takes_no_longer_than_among_few() -> None:
    def forget_time(known: int) -> float:
        memo: PathMemo[int] = PathMemo()
        for i in range(known):
            memo[f"out/s{i}.txt"] = i
        start = time.perf_counter()
        for i in range(1000):
            memo.forget(f"out/s{i}.txt")
        return time.perf_counter() - start

    few = min(forget_time(1000) for _ in range(3))
    many = min(forget_time(200_000) for _ in range(3))
    assert many < 5 * few + 0.01, (few, many)  # a scan of every key would be 200 times


def test_the_hasher_sees_a_rewritten_file_after_its_folder_is_forgotten(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("one")
    (tmp_path / "d" / "g").write_text("one")
    hasher = Hasher(tmp_path, StatCache(tmp_path / "cache.db", readonly=True))
    before_f, before_g, before_d = hasher.state("d/f"), hasher.state("d/g"), hasher.state("d")
    (tmp_path / "d" / "f").write_text("two, longer")
    hasher.forget("d/g")  # a neighbour: d/f is still remembered as it was
    assert hasher.state("d/f") == before_f
    hasher.forget("d")
    after_f, after_d = hasher.state("d/f"), hasher.state("d")
    assert after_f is not None and before_f is not None and after_f.digest != before_f.digest
    assert after_d is not None and before_d is not None and after_d.digest != before_d.digest
    assert hasher.state("d/g") == before_g


def tree(n: int) -> str:
    parts = []
    for i in range(1, n + 1):
        dep = "seed.txt" if i == 1 else f"out/s{i // 2}.txt"
        parts.append(
            f'[steps.s{i}]\ncmd = "cat {dep} {dep} > out/s{i}.txt"\n'
            f'deps = ["{dep}"]\nouts = ["out/s{i}.txt"]\n'
        )
    return "\n".join(parts)


def test_a_tree_of_steps_writing_into_one_folder_reruns_whole_after_its_seed_changes(
    workspace: Workspace,
) -> None:
    workspace.pipeline(tree(15))
    workspace.write("seed.txt", "a")
    workspace.write(".gitignore", "/out/\n")
    (workspace.root / "out").mkdir()
    workspace.commit()
    workspace.ok("repro", "-q")
    assert (workspace.root / "out" / "s15.txt").read_text() == "a" * 16
    workspace.write("seed.txt", "b")
    workspace.ok("repro", "-q")
    assert len(workspace.ran()) == 15
    assert (workspace.root / "out" / "s15.txt").read_text() == "b" * 16
    assert workspace.gitpipe("status").exit_code == 0


PARAMS_PIPELINE = """
[params]
lr = 0.5
flag = true
sizes = [1, 2.5, "three"]
[params.model]
depth = 3
[params.model.inner]
name = "x"
[params.after]
k = -1

[steps.train]
cmd = "echo trained > model.txt"
params = ["model", "lr", "flag", "sizes", "after"]
outs = ["model.txt"]
"""


def _primed(workspace: Workspace) -> tuple[str, dict]:
    held = marshal.loads((workspace.root / ".gitpipe/parsed/gitpipe.lock.marshal").read_bytes())
    _stamp, _taken, digest, data = held
    return digest, data


def test_repro_leaves_the_lock_s_tables_as_the_parser_reads_them_keyed_by_its_bytes(
    workspace: Workspace,
) -> None:
    workspace.pipeline(PARAMS_PIPELINE)
    workspace.commit()
    workspace.ok("repro", "-q")
    raw = (workspace.root / "gitpipe.lock").read_bytes()
    digest, data = _primed(workspace)
    assert digest == blake3.blake3(raw).hexdigest()
    parsed = tomlcache.loads(raw.decode())
    # the same tables in the same order: what a parse of the file would have given
    assert json.dumps(data) == json.dumps(parsed)


def test_a_lock_edited_right_after_repro_with_its_size_kept_is_read_as_edited(
    workspace: Workspace,
) -> None:
    workspace.pipeline(PARAMS_PIPELINE)
    workspace.commit()
    workspace.ok("repro", "-q")
    lock = workspace.root / "gitpipe.lock"
    text = lock.read_text()
    key = tomlcache.loads(text)["steps"]["train"]["key"]
    prefix, hexdigest = key.split(":")
    forged = f"{prefix}:{('f' if hexdigest[0] != 'f' else 'e') * len(hexdigest)}"
    before = lock.stat()
    lock.write_text(text.replace(key, forged))  # same size, within the racy window
    os.utime(lock, ns=(before.st_atime_ns, before.st_mtime_ns))
    status = workspace.gitpipe("status")
    assert "train" in status.stdout and "up to date" not in status.stdout, status.output
    assert tomlcache.loads(lock.read_text())["steps"]["train"]["key"] == forged


def test_a_kill_before_the_lock_s_tables_are_kept_leaves_a_status_that_reads_the_new_lock(
    workspace: Workspace,
) -> None:
    """SIGKILL at the rename of the parsed-lock entry, after gitpipe.lock was written:
    the entry left is the previous lock's, whose digest does not match; `status`
    parses the lock on disk and says what it holds."""
    workspace.pipeline(PARAMS_PIPELINE)
    workspace.commit()
    workspace.ok("repro", "-q")
    old_digest, _ = _primed(workspace)
    workspace.pipeline(PARAMS_PIPELINE.replace("lr = 0.5", "lr = 0.25"))
    killed = subprocess.run(
        [str(Path(sys.executable).parent / "gitpipe"), "repro", "-q"],
        cwd=workspace.root,
        env={**os.environ, "CI": "true", "GITPIPE_FAULT": "rename:gitpipe.lock.marshal"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    raw = (workspace.root / "gitpipe.lock").read_bytes()
    assert "lr = 0.25" in raw.decode()  # the new lock is in place
    digest, _ = _primed(workspace)
    assert digest == old_digest != blake3.blake3(raw).hexdigest()  # the old entry stayed
    status = workspace.ok("status")
    assert "train" in status.stdout and "up to date" in status.stdout, status.output
    digest, data = _primed(workspace)  # kept anew, from the lock on disk
    assert digest == blake3.blake3(raw).hexdigest()
    assert data["steps"]["train"]["params"]["lr"] == 0.25
