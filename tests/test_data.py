"""Added data (`gitpipe add`, `remove`, `checkout`, and what `status` says of it), on
real Git repositories through the real command line."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import subprocess
import time
from pathlib import Path

import pytest
from conftest import GITPIPE_SCRIPT, Workspace, git, refused

from gitpipe.core import tomlcache

PIPELINE = """
[steps.count]
cmd = "cat data/raw.csv data/images/*.txt | wc -c > count.txt"
deps = ["data/raw.csv", "data/images/"]
outs = ["count.txt"]
"""


def old(path: Path) -> Path:
    """Date a file (and its folder's files) an hour back: data a user adds is
    older than the stat cache's racy window."""
    then = time.time() - 3600
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(item, (then, then))
    return path


def dataset(ws: Workspace) -> None:
    ws.write(".gitignore", "count.txt\n")
    ws.pipeline(PIPELINE)
    ws.write("data/raw.csv", "a,b\n1,2\n")
    ws.write("data/images/one.txt", "one\n")
    ws.write("data/images/deep/two.txt", "two\n")
    old(ws.root / "data")


def records(ws: Workspace) -> dict:
    return tomlcache.loads((ws.root / "gitpipe.data").read_text())["data"]


def test_add_records_path_digest_size_and_ignores_the_path(workspace):
    dataset(workspace)
    out = workspace.ok("add", "data/raw.csv", "data/images").stdout
    assert "added data/raw.csv" in out and "added data/images/ (2 file(s)" in out
    data = records(workspace)
    assert set(data) == {"data/raw.csv", "data/images/"}
    assert data["data/raw.csv"]["size"] == 8
    assert data["data/images/"]["files"] == 2
    assert data["data/raw.csv"]["digest"].startswith("b3:")
    ignore = (workspace.root / ".gitignore").read_text().splitlines()
    assert ignore == ["count.txt", "/data/raw.csv", "/data/images"]
    # Git sees the records and the ignore file, not the data
    untracked = git(workspace.root, "status", "--porcelain", "--untracked-files=all")
    assert "data/" not in untracked and "gitpipe.data" in untracked
    # adding again is idempotent: one line per path, the same records
    before = (workspace.root / "gitpipe.data").read_bytes()
    assert "unchanged data/raw.csv" in workspace.ok("add", "data/raw.csv").stdout
    assert (workspace.root / "gitpipe.data").read_bytes() == before
    assert (workspace.root / ".gitignore").read_text().count("/data/raw.csv") == 1


def test_status_says_data_changed_and_missing_and_check_exits_3(workspace):
    dataset(workspace)
    workspace.ok("add", "data/raw.csv", "data/images")
    workspace.ok("repro")
    workspace.commit("data")
    assert "data " not in workspace.ok("status").stdout
    workspace.ok("status", "--check")
    (workspace.root / "data/raw.csv").write_text("a,b\n3,4\n")
    (workspace.root / "data/images/one.txt").unlink()
    (workspace.root / "data/images/deep/two.txt").unlink()
    (workspace.root / "data/images/deep").rmdir()
    (workspace.root / "data/images").rmdir()
    out = workspace.ok("status").stdout
    assert "data changed: data/raw.csv" in out
    assert "data missing: data/images/" in out
    checked = workspace.gitpipe("status", "--check")
    assert checked.exit_code == 3
    assert "data changed: data/raw.csv" in checked.stderr
    assert "`gitpipe checkout` puts it back" in checked.stderr


def test_readding_records_the_new_version_and_the_step_reruns(workspace):
    dataset(workspace)
    workspace.ok("add", "data/raw.csv", "data/images")
    workspace.ok("repro")
    first = records(workspace)["data/raw.csv"]["digest"]
    (workspace.root / "data/raw.csv").write_text("a,b\n1,2\n3,4\n")
    assert "updated data/raw.csv" in workspace.ok("add", "data/raw.csv").stdout
    assert records(workspace)["data/raw.csv"]["digest"] != first
    workspace.ok("repro")
    assert workspace.ran() == ["count"]
    assert "data " not in workspace.ok("status").stdout


def test_no_op_status_after_add_opens_no_data_file(workspace):
    """The stat cache: a `status` after no change reads no added file (watched with
    inotify: not one open of it, by a real `gitpipe status` process)."""
    dataset(workspace)
    workspace.ok("add", "data/raw.csv", "data/images")
    workspace.ok("repro")
    watched = [workspace.root / "data/raw.csv", workspace.root / "data/images/one.txt"]
    for _ in range(2):  # the whole status, then the one its snapshot answers
        with Opens(watched) as opens:
            done = subprocess.run(
                [str(GITPIPE_SCRIPT), "status"], cwd=workspace.root, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            assert "count  up to date" in done.stdout
            assert opens.count() == 0
    with Opens(watched) as opens:  # the watch does see a read
        (workspace.root / "data/raw.csv").read_bytes()
        assert opens.count() == 1


class Opens:
    """Counts opens of some files through inotify (IN_OPEN), as root or not."""

    IN_OPEN, IN_NONBLOCK = 0x20, 0o4000

    def __init__(self, paths: list[Path]) -> None:
        self.libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.paths = paths
        self.fd = -1

    def __enter__(self) -> Opens:
        self.fd = self.libc.inotify_init1(self.IN_NONBLOCK)
        assert self.fd >= 0
        for path in self.paths:
            assert self.libc.inotify_add_watch(self.fd, str(path).encode(), self.IN_OPEN) >= 0
        return self

    def count(self) -> int:
        found = 0
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return found
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                found += bool(mask & self.IN_OPEN)
                offset += 16 + length

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def test_a_step_reading_added_data_is_restored_after_git_checkout_of_an_old_commit(workspace):
    dataset(workspace)
    workspace.ok("add", "data/raw.csv", "data/images")
    workspace.ok("repro")
    workspace.commit("v1")
    git(workspace.root, "tag", "v1")
    v1_count = (workspace.root / "count.txt").read_text()
    (workspace.root / "data/raw.csv").write_text("a,b\n" + "9,9\n" * 100)
    workspace.write("data/images/three.txt", "three\n")
    workspace.ok("add", "data/raw.csv", "data/images")
    workspace.ok("repro")
    workspace.commit("v2")
    v2 = {p: (workspace.root / p).read_bytes() for p in ("data/raw.csv", "count.txt")}
    git(workspace.root, "checkout", "-q", "v1")
    assert "data changed: data/raw.csv" in workspace.ok("status").stdout
    out = workspace.ok("checkout").stdout
    assert "restored data/raw.csv" in out and "restored count.txt" in out
    assert (workspace.root / "data/raw.csv").read_text() == "a,b\n1,2\n"
    assert not (workspace.root / "data/images/three.txt").exists()
    assert (workspace.root / "count.txt").read_text() == v1_count
    workspace.ok("status", "--check")
    git(workspace.root, "checkout", "-q", "main")
    workspace.ok("checkout")
    assert {p: (workspace.root / p).read_bytes() for p in v2} == v2
    assert workspace.ran() == ["count"]  # the last repro's: checkout runs nothing


def test_checkout_refuses_bytes_gitpipe_never_recorded_unless_forced(workspace):
    dataset(workspace)
    workspace.ok("add", "data/raw.csv")
    (workspace.root / "data/raw.csv").write_text("edited by hand\n")
    stderr = refused(
        workspace,
        "checkout",
        says=("not overwriting data/raw.csv", "gitpipe never recorded", "--force"),
        code=3,
    )
    assert "Traceback" not in stderr
    workspace.ok("checkout", "--force")
    assert (workspace.root / "data/raw.csv").read_text() == "a,b\n1,2\n"


def test_checkout_of_bytes_the_store_lacks_exits_3_naming_each_path(workspace):
    dataset(workspace)
    workspace.ok("add", "data/raw.csv", "data/images")
    workspace.ok("repro")
    (workspace.root / "data/raw.csv").unlink()
    (workspace.root / "count.txt").unlink()
    import shutil

    shutil.rmtree(workspace.root / ".gitpipe" / "cache")
    refused(
        workspace,
        "checkout",
        says=("data/raw.csv (added data)", "count.txt (output of step count)", "--pull"),
        code=3,
    )


def test_checkout_of_one_path_leaves_the_others(workspace):
    dataset(workspace)
    workspace.ok("add", "data/raw.csv", "data/images")
    (workspace.root / "data/raw.csv").unlink()
    (workspace.root / "data/images/one.txt").unlink()
    assert "1 path(s) restored" in workspace.ok("checkout", "data/raw.csv").stdout
    assert not (workspace.root / "data/images/one.txt").exists()
    refused(workspace, "checkout", "nope.txt", says=("cannot check out nope.txt", "records it"))


@pytest.mark.parametrize("link", ["hardlink", "symlink"])
def test_add_with_a_link_leaves_the_store_object_in_place_and_checkout_links_it(workspace, link):
    dataset(workspace)
    workspace.ok("add", "--link", link, "data/raw.csv", "data/images")
    assert records(workspace)["data/raw.csv"]["link"] == link
    raw = workspace.root / "data/raw.csv"
    objects = workspace.root / ".gitpipe/cache/objects"
    if link == "hardlink":
        assert raw.stat().st_nlink == 2 and not raw.is_symlink()
    else:
        assert raw.is_symlink() and str(objects) in os.readlink(raw)
    assert raw.stat().st_mode & 0o777 == 0o444
    raw.unlink()
    workspace.ok("checkout")
    assert raw.read_text() == "a,b\n1,2\n"
    assert raw.is_symlink() == (link == "symlink")
    assert "data " not in workspace.ok("status").stdout
    # remove: the file stays, a file of its own (a symlink would dangle after gc)
    out = workspace.ok("remove", "data/raw.csv").stdout
    assert "stays in the workspace" in out
    assert not raw.is_symlink() and raw.stat().st_nlink == 1
    assert raw.read_text() == "a,b\n1,2\n"


def test_pipeline_link_is_the_default_for_added_data(workspace):
    dataset(workspace)
    workspace.pipeline('[pipeline]\nlink = "hardlink"\n' + PIPELINE)
    workspace.ok("add", "data/raw.csv")
    assert records(workspace)["data/raw.csv"]["link"] == "hardlink"
    assert (workspace.root / "data/raw.csv").stat().st_nlink == 2


def test_remove_drops_the_record_and_the_ignore_line_and_keeps_the_file(workspace):
    dataset(workspace)
    workspace.ok("add", "data/raw.csv", "data/images")
    workspace.ok("remove", "data/images")
    assert set(records(workspace)) == {"data/raw.csv"}
    assert "/data/images" not in (workspace.root / ".gitignore").read_text()
    assert (workspace.root / "data/images/one.txt").read_text() == "one\n"
    workspace.ok("remove", "data/raw.csv")
    assert not (workspace.root / "gitpipe.data").exists()
    assert (workspace.root / ".gitignore").read_text() == "count.txt\n"
    refused(
        workspace, "remove", "data/raw.csv", says=("cannot remove data/raw.csv", "does not track")
    )


def test_a_fresh_clone_repro_puts_back_missing_added_data_from_the_store(workspace, tmp_path):
    """A second work tree sharing the store: `repro` restores the data its step reads."""
    dataset(workspace)
    workspace.ok("add", "data/raw.csv", "data/images")
    workspace.ok("repro")
    workspace.commit("v1")
    other = tmp_path / "other"
    git(workspace.root, "worktree", "add", "-q", str(other))
    clone = Workspace(other, workspace.runner)
    result = clone.ok("repro")
    assert "put back added data" in result.output
    assert (other / "data/raw.csv").read_text() == "a,b\n1,2\n"
    assert clone.ran() == []
    clone.ok("status", "--check")


# -- bad input: one line, exit 2, nothing changed ------------------------------------------


def test_adding_bad_paths_is_refused_with_one_line_and_nothing_changed(workspace, tmp_path):
    dataset(workspace)
    workspace.ok("repro")
    outside = tmp_path / "outside.csv"
    outside.write_text("x\n")
    os.symlink(outside, workspace.root / "data/link.csv")
    workspace.write("tracked.csv", "t\n")
    git(workspace.root, "add", "tracked.csv")
    cases = [
        (str(outside), "outside the repository"),
        (".git/config", ".git is Git's own folder"),
        (".gitpipe", ".gitpipe is gitpipe's own folder"),
        ("data/link.csv", "leading outside the repository"),
        ("count.txt", "an output of step 'count'"),
        ("data/nope.csv", "does not exist"),
        ("tracked.csv", "git rm --cached tracked.csv"),
        ("gitpipe.toml", "the pipeline file"),
        ("gitpipe.lock", "the pipeline's lock file"),
        (".gitignore", "edits .gitignore"),
        ("data/a\nb.csv", "line break"),  # its .gitignore line would be two
        ("data/c\\d.csv", "backslash"),  # gitpipe.data could not be read back
    ]
    workspace.write("data/a\nb.csv", "x\n")
    workspace.write("data/c\\d.csv", "x\n")
    for path, says in cases:
        stderr = refused(workspace, "add", path, says=(says,))
        assert stderr.count("\n") == 1, stderr
    # one bad path among good ones: none is added
    refused(workspace, "add", "data/raw.csv", "data/nope.csv", says=("does not exist",))


def test_adding_a_folder_holding_a_link_out_or_overlapping_added_data_is_refused(
    workspace, tmp_path
):
    dataset(workspace)
    workspace.ok("add", "data/images")
    refused(workspace, "add", "data/images/one.txt", says=("lies inside data/images/",))
    refused(workspace, "add", "data", says=("holds added data (data/images/)",))
    (tmp_path / "secret").write_text("s\n")
    workspace.write("more/a.txt", "a\n")
    os.symlink(tmp_path / "secret", workspace.root / "more/secret")
    refused(workspace, "add", "more", says=("more/secret is a link leading outside",))


def test_a_step_output_over_added_data_is_a_pipeline_error(workspace):
    dataset(workspace)
    workspace.ok("add", "data/raw.csv")
    workspace.pipeline(
        PIPELINE
        + """
[steps.make]
cmd = "echo x > data/raw.csv"
outs = ["data/raw.csv"]
"""
    )
    refused(workspace, "repro", says=("which `gitpipe add` tracks", "steps.make.outs[0]"))


def test_a_missing_added_dependency_points_at_checkout(workspace):
    dataset(workspace)
    workspace.ok("add", "data/raw.csv", "data/images")
    import shutil

    shutil.rmtree(workspace.root / ".gitpipe" / "cache")
    (workspace.root / "data/raw.csv").unlink()
    result = workspace.gitpipe("repro")
    assert result.exit_code == 2
    assert "it is added data (data/raw.csv): `gitpipe checkout` puts it back" in result.stderr


def test_a_path_with_pattern_characters_is_ignored_by_its_own_line_only(workspace):
    dataset(workspace)
    workspace.write("data/my file [1].csv", "x\n")
    workspace.write("data/my file 1.csv", "y\n")  # what an unescaped [1] would match
    workspace.ok("add", "data/my file [1].csv")
    assert "/data/my file \\[1].csv" in (workspace.root / ".gitignore").read_text()
    untracked = git(workspace.root, "status", "--porcelain", "--untracked-files=all")
    assert "my file [1].csv" not in untracked
    assert "data/my file 1.csv" in untracked


def test_adds_at_once_keep_every_record_and_every_gitignore_line(workspace):
    dataset(workspace)
    names = [f"data/part{i}.csv" for i in range(6)]
    for name in names:
        workspace.write(name, f"{name}\n")
    env = {**os.environ, "CI": "true"}
    started = [
        subprocess.Popen(
            [str(GITPIPE_SCRIPT), "add", name],
            cwd=workspace.root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    for process in started:
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    assert sorted(records(workspace)) == names  # each add waited for the one before
    ignored = (workspace.root / ".gitignore").read_text().splitlines()
    assert all(f"/{name}" in ignored for name in names)
