"""Rows of the stat cache taken within the racy window, read again once it has passed.

A step's outputs are hashed as soon as it ends, within the racy window of their
mtime, so the stat cache does not trust those rows.  At the end of a command that
writes the cache (`repro` above all) each such file whose stamp is still the one it
was hashed with, and whose window has passed, is read again and its row taken anew
(`Hasher.settle`): the first `status` after a `repro` then reads none of them.  The
racy rule itself stays as it was: a row is trusted only when it was taken (before a
read) at least one tick after the file's mtime.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import GITPIPE_SCRIPT, snapshot

import gitpipe.identity.statcache
from gitpipe.core.stamps import FINE_RACY_NS, RACY_NS, racy
from gitpipe.identity.statcache import Hasher, StatCache

#: two steps: `first` writes first.txt, `slow` waits long enough after it that the
#: racy window of first.txt has passed when the run ends
SLOW_AFTER = """
[steps.first]
cmd = "cp in.txt first.txt"
deps = ["in.txt"]
outs = ["first.txt"]

[steps.slow]
cmd = "sleep 0.3 && cp first.txt slow.txt"
deps = ["first.txt"]
outs = ["slow.txt"]
"""


def rows(root: Path) -> dict[str, tuple[int, int, str]]:
    """path -> (mtime_ns, hashed_ns, digest) of the stat cache on disk."""
    with closing(sqlite3.connect(root / ".gitpipe" / "stat.db")) as db:
        return {
            path: (mtime, hashed, digest)
            for path, mtime, hashed, digest in db.execute(
                "SELECT path, mtime_ns, hashed_ns, digest FROM files"
            )
        }


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file the stat cache's hasher reads, by full path."""
    seen: list[str] = []
    real = gitpipe.identity.statcache.digest_file

    def counted(path: str | os.PathLike[str], **kw: int) -> gitpipe.identity.statcache.Digest:
        seen.append(os.fspath(path))
        return real(path, **kw)

    monkeypatch.setattr(gitpipe.identity.statcache, "digest_file", counted)
    return seen


def test_an_output_written_early_in_a_repro_is_trusted_by_the_status_after_it(workspace, reads):
    workspace.write("in.txt", "data\n")
    workspace.pipeline(SLOW_AFTER)
    workspace.commit()
    workspace.ok("repro")
    mtime, hashed, _ = rows(workspace.root)["first.txt"]
    assert not racy(mtime, hashed)
    assert hashed - mtime >= FINE_RACY_NS

    reads.clear()
    out = workspace.ok("status")
    assert "stale" not in out.stdout
    assert str(workspace.root / "first.txt") not in reads


def test_a_settled_output_edited_with_its_size_and_mtime_kept_is_seen_as_modified(workspace, reads):
    workspace.write("in.txt", "data\n")
    workspace.pipeline(SLOW_AFTER)
    workspace.commit()
    workspace.ok("repro")
    first = workspace.root / "first.txt"
    before = first.stat()
    assert not racy(*rows(workspace.root)["first.txt"][:2])

    first.write_text("DATA\n")  # same size, other bytes, within the same second
    os.utime(first, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert first.stat().st_mtime_ns == before.st_mtime_ns
    assert first.stat().st_size == before.st_size

    reads.clear()
    out = workspace.gitpipe("status")
    assert str(first) in reads  # the ctime told it: read again, not trusted
    assert "first  stale  out modified: first.txt" in out.stdout


def test_a_file_still_within_the_racy_window_is_left_for_its_next_look_up(tmp_path, reads):
    (tmp_path / "fresh.txt").write_text("just written")
    cache = StatCache(tmp_path / "stat.db")
    hasher = Hasher(tmp_path, cache)
    hasher.state("fresh.txt")
    assert hasher.settle() == 0  # written a moment ago: not yet
    cache.close()

    reads.clear()
    Hasher(tmp_path, StatCache(tmp_path / "stat.db")).state("fresh.txt")
    assert reads == [str(tmp_path / "fresh.txt")]


def test_a_whole_second_mtime_waits_for_the_two_second_window(tmp_path, reads):
    path = tmp_path / "coarse.txt"
    path.write_text("coarse")
    now = time.time_ns()
    whole = now - now % 1_000_000_000  # at most a second ago: within 2 s
    os.utime(path, ns=(whole, whole))
    cache = StatCache(tmp_path / "stat.db")
    hasher = Hasher(tmp_path, cache)
    hasher.state("coarse.txt")
    time.sleep(FINE_RACY_NS / 1e9 * 2)  # past the fine window, not the coarse one
    assert time.time_ns() - whole < RACY_NS
    assert hasher.settle() == 0
    cache.close()

    reads.clear()
    Hasher(tmp_path, StatCache(tmp_path / "stat.db")).state("coarse.txt")
    assert len(reads) == 1


def test_a_file_hashed_in_the_window_and_read_again_after_it_is_not_read_a_third_time(
    tmp_path, reads
):
    (tmp_path / "out.txt").write_text("output")
    cache = StatCache(tmp_path / "stat.db")
    hasher = Hasher(tmp_path, cache)
    first = hasher.state("out.txt")
    time.sleep(FINE_RACY_NS / 1e9 * 2)
    assert hasher.settle() == 1
    cache.close()
    assert len(reads) == 2  # hashed, then read again once past the window

    reads.clear()
    assert Hasher(tmp_path, StatCache(tmp_path / "stat.db")).state("out.txt") == first
    assert reads == []


def test_a_file_changed_after_it_was_hashed_is_not_settled_with_its_old_digest(tmp_path, reads):
    path = tmp_path / "out.txt"
    path.write_text("before")
    cache = StatCache(tmp_path / "stat.db")
    hasher = Hasher(tmp_path, cache)
    was = hasher.state("out.txt")
    st = path.stat()
    path.write_text("AFTER!")  # same size; its mtime put back: only the ctime differs
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    time.sleep(FINE_RACY_NS / 1e9 * 2)
    assert hasher.settle() == 0
    cache.close()

    now = Hasher(tmp_path, StatCache(tmp_path / "stat.db")).state("out.txt")
    assert was is not None and now is not None
    assert now.digest != was.digest


def test_settling_reads_files_and_writes_nothing_but_the_stat_cache(tmp_path):
    for name in ("a.txt", "sub/b.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(name)
    cache = StatCache(tmp_path / "state" / "stat.db")
    hasher = Hasher(tmp_path, cache)
    hasher.state("a.txt")
    hasher.state("sub")
    time.sleep(FINE_RACY_NS / 1e9 * 2)
    before = snapshot(tmp_path)
    assert hasher.settle() == 2
    assert snapshot(tmp_path) == before  # read only; the cache is written on close
    cache.close()
    assert (tmp_path / "state" / "stat.db").is_file()


def test_a_read_only_command_settles_nothing_and_status_settles_what_is_left(workspace):
    workspace.write("in.txt", "data\n")
    workspace.pipeline(SLOW_AFTER.replace("sleep 0.3 && ", ""))
    workspace.commit()
    workspace.ok("repro")
    stat_db = workspace.root / ".gitpipe" / "stat.db"
    time.sleep(FINE_RACY_NS / 1e9 * 2)
    before = stat_db.read_bytes()
    workspace.ok("check")  # read only: writes no cache
    assert stat_db.read_bytes() == before

    workspace.ok("status")
    assert not [path for path, (m, h, _) in rows(workspace.root).items() if racy(m, h)]


def test_a_repro_killed_while_settling_leaves_rows_a_status_reads_again(workspace, reads):
    workspace.write("in.txt", "data\n")
    workspace.pipeline(SLOW_AFTER)
    workspace.commit()
    killed = subprocess.run(
        [str(GITPIPE_SCRIPT), "repro"],
        cwd=workspace.root,
        env={**os.environ, "CI": "true", "GITPIPE_FAULT": "settling"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    lock = (workspace.root / "gitpipe.lock").read_bytes()  # written before the settling
    assert not (workspace.root / ".gitpipe" / "stat.db").exists()  # nothing of it written

    first = workspace.root / "first.txt"
    reads.clear()
    out = workspace.ok("status")
    assert "stale" not in out.stdout
    assert str(first) in reads  # no trusted row: read again, as before settling existed
    assert (workspace.root / "gitpipe.lock").read_bytes() == lock

    before = first.stat()
    first.write_text("DATA\n")  # same size and mtime: the ctime tells
    os.utime(first, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert "first  stale  out modified: first.txt" in workspace.gitpipe("status").stdout
