"""Issue 16, points 1 and 4: no output, restore or removal ever touches `.git`,
`.gitpipe`, the store, the lock or a pipeline file, nor anything outside the
repository, whatever links a step or a user leaves on the way.

A pipeline that names such a path is refused before anything runs (exit 2, naming the
file, the step, the TOML key and the path); a step that leaves a link out of the
repository, or swaps a folder for one, fails before anything of it is stored; every
write re-checks the folders on its way at the moment it writes.  Each test compares
`.git`, the outside folder, `gitpipe.lock` and `.gitpipe` byte for byte (and mode
for mode) before and after.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import Workspace, git

from gitpipe.core.hashing import ManifestEntry, digest_bytes, digest_file, manifest_bytes
from gitpipe.store.objects import Store

#: what a pipeline may name where each protected place is, and what the error says
PROTECTED_OUTPUTS = [
    (".git/", "is .git, Git's own folder"),
    (".git", "is .git, Git's own folder"),
    (".git/hooks/pre-commit", "lies inside .git, Git's own folder"),
    (".git/config", "lies inside .git, Git's own folder"),
    ("sub/.git/", "is .git, Git's own folder"),
    (".GIT/hooks/pre-commit", "lies inside .GIT, Git's own folder"),
    (".gitpipe/", "is .gitpipe, gitpipe's own folder"),
    (".gitpipe/lineage.db", "lies inside .gitpipe, gitpipe's own folder"),
    (".gitpipe/cache/", "lies inside .gitpipe, gitpipe's own folder"),
    ("gitpipe.lock", "is gitpipe.lock, the pipeline's lock file"),
    ("gitpipe.toml", "is the pipeline file gitpipe.toml"),
]


# --- a picture of what must not change ----------------------------------------------


def tree(top: Path) -> dict[str, tuple]:
    """Every path under ``top`` (itself included), links not followed: its kind,
    mode, link count, mtime and bytes (files) or target (links)."""
    state: dict[str, tuple] = {}
    if not os.path.lexists(top):
        return state
    paths = [top] if top.is_symlink() or not top.is_dir() else [top, *top.rglob("*")]
    for path in paths:
        st = path.lstat()
        rel = path.relative_to(top).as_posix()
        if stat.S_ISLNK(st.st_mode):
            state[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            state[rel] = ("dir", st.st_mode, st.st_mtime_ns)
        else:
            state[rel] = ("file", st.st_mode, st.st_nlink, st.st_mtime_ns, path.read_bytes())
    return state


def guarded_places(workspace: Workspace, *others: Path) -> dict[str, dict[str, tuple]]:
    """`.git`, `.gitpipe`, gitpipe.lock, gitpipe.toml and each of ``others``."""
    root = workspace.root
    places = [root / ".git", root / ".gitpipe", root / "gitpipe.lock", root / "gitpipe.toml"]
    return {str(place): tree(place) for place in [*places, *others]}


def refused_before_running(
    workspace: Workspace,
    *args: str,
    says: tuple[str, ...],
    outside: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """`gitpipe ARGS` must exit 2 with one line naming the file and each of ``says``,
    run nothing, and leave every file under the repository and ``outside`` as it was
    (`.git` included)."""
    extra = [outside] if outside is not None else []
    before = tree(workspace.root), guarded_places(workspace, *extra)
    result = workspace.gitpipe(*args, env=env)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gitpipe: gitpipe.toml, at steps."), lines[0]
    for text in says:
        assert text in lines[0], (text, lines[0])
    assert (tree(workspace.root), guarded_places(workspace, *extra)) == before
    return lines[0]


def objects(workspace: Workspace) -> set[str]:
    """The digests of every object in the workspace's store."""
    store = Store(workspace.root / ".gitpipe" / "cache")
    return {str(digest) for digest in store.iter_objects()}


def first_run(workspace: Workspace, pipeline: str) -> None:
    """A committed pipeline that ran once, its lock committed."""
    workspace.write(".gitignore", "*.txt\nout/\nsub/\n")
    workspace.pipeline(pipeline)
    workspace.ok("repro")
    workspace.commit("first run")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the repository with a file of someone else's in it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "precious.txt").write_text("not gitpipe's\n")
    (folder / "out.txt").write_text("not gitpipe's either\n")
    return folder


# --- refused before anything runs: as written -----------------------------------------


@pytest.mark.parametrize("command", ["repro", "status"])
@pytest.mark.parametrize(("out", "says"), PROTECTED_OUTPUTS)
def test_an_output_in_a_protected_place_is_refused_before_anything_runs(
    workspace, command, out, says
):
    first_run(workspace, '[steps.ok]\ncmd = "echo ok > ok.txt"\nouts = ["ok.txt"]\n')
    workspace.pipeline(
        f"""
        [steps.ok]
        cmd = "echo ok > ok.txt"
        outs = ["ok.txt"]

        [steps.evil]
        cmd = "echo evil > {out}"
        outs = ["{out}"]
        """
    )
    workspace.commit("evil")
    refused_before_running(
        workspace, command, says=("at steps.evil.outs[0]:", f"output {out!r}", "'evil'", says)
    )


def test_a_metrics_file_in_git_is_refused_under_its_own_key(workspace):
    workspace.pipeline(
        """
        [steps.evil]
        cmd = "echo {} > .git/m.json"
        metrics = [".git/m.json"]
        """
    )
    refused_before_running(
        workspace, "repro", says=("at steps.evil.metrics[0]:", "'.git/m.json'", "inside .git")
    )


def test_a_param_given_on_the_command_line_cannot_put_an_output_into_git(workspace):
    first_run(
        workspace,
        """
        [params]
        target = "out.txt"

        [steps.make]
        cmd = "echo '#!/bin/sh' > ${params.target}"
        outs = ["${params.target}"]
        """,
    )
    refused_before_running(
        workspace,
        "repro",
        "-p",
        "target=.git/hooks/pre-commit",
        says=("at steps.make.outs[0]:", "'.git/hooks/pre-commit'", "'make'", "inside .git"),
    )
    assert not (workspace.root / ".git" / "hooks" / "pre-commit").exists()


def test_an_output_folder_holding_a_nested_pipeline_file_is_refused(workspace):
    workspace.write("inner/pipe.toml", '[steps.i]\ncmd = "true"\n')
    workspace.pipeline(
        """
        [steps.nest]
        pipeline = "inner/pipe.toml"

        [steps.wipe]
        cmd = "mkdir -p inner && echo x > inner/x"
        outs = ["inner/"]
        """
    )
    workspace.commit("pipeline")
    refused_before_running(
        workspace,
        "repro",
        says=("at steps.wipe.outs[0]:", "'inner/'", "contains the pipeline file inner/pipe.toml"),
    )


def test_a_nested_pipeline_cannot_write_the_outer_lock_or_its_own_file(workspace):
    workspace.write(
        "inner.toml", '[steps.i]\ncmd = "echo i > gitpipe.lock"\nouts = ["gitpipe.lock"]\n'
    )
    workspace.pipeline('[steps.nest]\npipeline = "inner.toml"\n')
    refused_before_running(
        workspace, "repro", says=("'gitpipe.lock'", "'nest/i'", "the pipeline's lock file")
    )
    workspace.write("inner.toml", '[steps.i]\ncmd = "echo i > inner.toml"\nouts = ["inner.toml"]\n')
    result = workspace.gitpipe("repro")
    assert result.exit_code == 2
    assert "inner.toml, at steps.i.outs[0]:" in result.stderr
    assert "is the pipeline file inner.toml" in result.stderr


def test_the_lock_of_another_pipeline_file_is_its_own_lock(workspace):
    workspace.write("other.toml", '[steps.s]\ncmd = "echo s > other.lock"\nouts = ["other.lock"]\n')
    workspace.commit("other")
    result = workspace.gitpipe("repro", "-f", "other.toml")
    assert result.exit_code == 2, result.output
    assert "other.toml, at steps.s.outs[0]:" in result.stderr
    assert "is other.lock, the pipeline's lock file" in result.stderr


# --- refused before anything runs: on disk, through links ------------------------------


@pytest.mark.parametrize("command", ["repro", "status"])
def test_an_output_through_a_link_into_git_is_refused(workspace, command):
    (workspace.root / "hooks").symlink_to(".git/hooks", target_is_directory=True)
    workspace.pipeline(
        """
        [steps.evil]
        cmd = "printf '#!/bin/sh\\necho owned\\n' > hooks/pre-commit && chmod +x hooks/pre-commit"
        outs = ["hooks/pre-commit"]
        """
    )
    workspace.commit("pipeline")
    refused_before_running(
        workspace,
        command,
        says=("at steps.evil.outs[0]:", "'hooks/pre-commit'", "'evil'", "inside .git"),
    )
    assert not (workspace.root / ".git" / "hooks" / "pre-commit").exists()


@pytest.mark.parametrize("out", ["gitdir", "gitdir/"])
def test_an_output_that_is_a_link_to_git_is_refused(workspace, out):
    (workspace.root / "gitdir").symlink_to(".git", target_is_directory=True)
    workspace.pipeline(
        f"""
        [steps.evil]
        cmd = "echo x > gitdir/config"
        outs = ["{out}"]
        """
    )
    workspace.commit("pipeline")
    refused_before_running(
        workspace,
        "repro",
        says=("at steps.evil.outs[0]:", f"'{out}'", "is a link to", "which is .git"),
    )


def test_an_output_that_is_a_link_to_the_lock_is_refused(workspace):
    first_run(workspace, '[steps.ok]\ncmd = "echo ok > ok.txt"\nouts = ["ok.txt"]\n')
    (workspace.root / "alias").symlink_to("gitpipe.lock")
    workspace.pipeline(
        """
        [steps.ok]
        cmd = "echo ok > ok.txt"
        outs = ["ok.txt"]

        [steps.evil]
        cmd = "echo evil > alias"
        outs = ["alias"]
        """
    )
    workspace.commit("evil")
    refused_before_running(
        workspace, "repro", says=("'alias'", "is a link to", "which is gitpipe.lock")
    )


def test_an_output_folder_holding_the_store_is_refused(workspace):
    store = workspace.root / "data" / "store"
    env = {"GITPIPE_CACHE_DIR": str(store)}
    workspace.write(".gitignore", "data/\n")
    workspace.pipeline('[steps.ok]\ncmd = "echo ok > ok.txt"\nouts = ["ok.txt"]\n')
    workspace.ok("repro", env=env)
    workspace.commit("first run")
    assert any((store / "objects").rglob("*"))
    workspace.pipeline(
        """
        [steps.ok]
        cmd = "echo ok > ok.txt"
        outs = ["ok.txt"]

        [steps.wipe]
        cmd = "mkdir -p data && echo x > data/x"
        outs = ["data/"]
        """
    )
    workspace.commit("wipe")
    refused_before_running(
        workspace,
        "repro",
        env=env,
        outside=store,
        says=("at steps.wipe.outs[0]:", "'data/'", "'wipe'", f"contains the store ({store})"),
    )
    workspace.pipeline('[steps.inside]\ncmd = "echo x > data/store/x"\nouts = ["data/store/x"]\n')
    workspace.commit("inside")
    refused_before_running(
        workspace, "repro", env=env, outside=store, says=("lies inside the store",)
    )


def test_the_git_file_of_a_linked_work_tree_is_protected(workspace, tmp_path):
    workspace.write("README", "main\n")
    workspace.commit("main")
    linked = tmp_path / "linked"
    git(workspace.root, "worktree", "add", "-q", str(linked))
    other = Workspace(linked, workspace.runner)
    other.pipeline('[steps.evil]\ncmd = "echo gitdir: /tmp > .git"\nouts = [".git"]\n')
    before = tree(linked / ".git"), tree(workspace.root / ".git")
    result = other.gitpipe("repro")
    assert result.exit_code == 2, result.output
    assert "at steps.evil.outs[0]:" in result.stderr
    assert "is .git, Git's own folder" in result.stderr
    assert (tree(linked / ".git"), tree(workspace.root / ".git")) == before


# --- after a step ran: what it left is checked before anything is stored -----------------


@pytest.mark.parametrize("link", ["copy", "hardlink", "symlink"])
def test_a_folder_output_swapped_for_a_link_out_of_the_repository_is_never_stored(
    workspace, outside, link
):
    workspace.write(".gitignore", "out/\n")
    workspace.pipeline(
        f"""
        [pipeline]
        link = "{link}"

        [steps.swap]
        cmd = "rm -rf out && ln -s {outside} out"
        outs = ["out/"]
        """
    )
    workspace.commit("pipeline")
    before = guarded_places(workspace, outside)
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1, result.output
    assert f"refusing to store out: it is a link leading outside the repository (to {outside})" in (
        result.output
    )
    assert workspace.states() == {"swap": "failed"}
    after = guarded_places(workspace, outside)
    assert after[str(outside)] == before[str(outside)]  # no file linked, chmodded or replaced
    assert after[str(workspace.root / ".git")] == before[str(workspace.root / ".git")]
    assert not (workspace.root / "gitpipe.lock").exists()
    assert objects(workspace) == set()


def test_a_folder_output_that_is_a_link_to_another_folder_of_the_repository_fails(workspace):
    workspace.write("data/keep.txt", "an input\n")
    workspace.write(".gitignore", "out\n")
    workspace.pipeline(
        """
        [pipeline]
        link = "hardlink"

        [steps.alias]
        cmd = "ln -s data out"
        outs = ["out/"]
        """
    )
    workspace.commit("pipeline")
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1, result.output
    assert "refusing to store out: it is a link to a folder" in result.output
    keep = workspace.root / "data" / "keep.txt"
    assert stat.S_IMODE(keep.stat().st_mode) == 0o644 and keep.stat().st_nlink == 1
    assert objects(workspace) == set()


@pytest.mark.parametrize("secret", ["etc-passwd", "outside-file"])
def test_an_output_that_is_a_link_out_of_the_repository_is_never_stored(workspace, outside, secret):
    target = Path("/etc/passwd") if secret == "etc-passwd" else outside / "precious.txt"
    if not target.is_file():
        pytest.skip(f"{target} does not exist here")
    workspace.write(".gitignore", "out.txt\n")
    workspace.pipeline(
        f"""
        [steps.leak]
        cmd = "ln -s {target} out.txt"
        outs = ["out.txt"]
        """
    )
    workspace.commit("pipeline")
    before = tree(target)
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1, result.output
    assert (
        f"refusing to store out.txt: it is a link leading outside the repository (to {target})"
        in (result.output)
    )
    assert tree(target) == before
    assert str(digest_file(target)) not in objects(workspace)
    assert objects(workspace) == set()
    assert not list((workspace.root / ".gitpipe" / "cache").glob("results/**/*.*"))


@pytest.mark.parametrize("link", ["copy", "hardlink"])
def test_a_folder_output_holding_a_link_out_of_the_repository_is_never_stored(
    workspace, outside, link
):
    workspace.write(".gitignore", "out/\n")
    workspace.pipeline(
        f"""
        [pipeline]
        link = "{link}"

        [steps.make]
        cmd = ["mkdir -p out/deep", "echo mine > out/own.txt",
               "ln -s {outside / "precious.txt"} out/deep/link.txt"]
        outs = ["out/"]
        """
    )
    workspace.commit("pipeline")
    before = tree(outside)
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1, result.output
    assert (
        "refusing to store out: out/deep/link.txt is a link leading outside the repository"
        in result.output
    )
    assert tree(outside) == before
    assert objects(workspace) == set()


@pytest.mark.parametrize("inside", [".git/config", ".gitpipe/lineage.db"])
def test_a_link_into_a_protected_place_is_never_stored(workspace, inside):
    workspace.write(".gitignore", "out.txt\n")
    workspace.pipeline(
        f"""
        [steps.leak]
        cmd = "ln -s {workspace.root / inside} out.txt"
        outs = ["out.txt"]
        """
    )
    workspace.commit("pipeline")
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1, result.output
    part = inside.split("/")[0]
    target = workspace.root / inside
    says = f"refusing to store out.txt: it is a link to {target}, which lies inside {part}"
    assert says in result.output
    assert str(digest_file(workspace.root / ".git" / "config")) not in objects(workspace)


def test_a_folder_output_holding_a_git_folder_is_never_stored(workspace):
    workspace.write(".gitignore", "out/\n")
    workspace.pipeline(
        """
        [steps.clone]
        cmd = ["mkdir -p out/repo/.git/hooks", "echo hook > out/repo/.git/hooks/pre-commit"]
        outs = ["out/"]
        """
    )
    workspace.commit("pipeline")
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1, result.output
    assert "refusing to store out: out/repo/.git is .git, Git's own folder" in result.output
    assert objects(workspace) == set()


# --- the folders on the way, checked again at the moment gitpipe writes ------------------


@pytest.mark.parametrize("link", ["copy", "hardlink", "symlink"])
def test_a_step_that_swaps_its_output_folder_for_a_link_out_fails_and_a_later_restore_stays_in(
    workspace, outside, link
):
    good = 'cmd = "mkdir -p sub && echo good > sub/out.txt"'
    swap = f'cmd = "rm -rf sub && ln -s {outside} sub && echo evil > sub/out.txt"'
    pipeline = f"""
        [pipeline]
        link = "{link}"

        [steps.make]
        {{cmd}}
        outs = ["sub/out.txt"]
        """
    first_run(workspace, pipeline.format(cmd=good))
    stored = objects(workspace)
    workspace.pipeline(pipeline.format(cmd=swap))
    workspace.commit("swap")
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1, result.output
    assert (
        f"refusing to write sub/out.txt: sub is a link leading outside the repository "
        f"(to {outside})" in result.output
    )
    assert workspace.states() == {"make": "failed"}
    written = outside / "out.txt"  # what the command itself wrote: gitpipe took nothing of it
    assert written.read_text() == "evil\n"
    assert stat.S_IMODE(written.stat().st_mode) == 0o644 and written.stat().st_nlink == 1
    assert not written.is_symlink()
    assert objects(workspace) == stored
    # the old command again: its result is in the store, but `sub` leads out now
    after_the_step = guarded_places(workspace, outside)
    workspace.pipeline(pipeline.format(cmd=good))
    workspace.commit("good again")
    result = workspace.gitpipe("repro")
    assert result.exit_code == 2, result.output
    assert "at steps.make.outs[0]: output 'sub/out.txt' of step 'make' leads outside" in (
        result.stderr
    )
    after = guarded_places(workspace, outside)
    assert after[str(outside)] == after_the_step[str(outside)]
    assert (
        after[str(workspace.root / "gitpipe.lock")]
        == after_the_step[str(workspace.root / "gitpipe.lock")]
    )


SIBLINGS = """
[pipeline]
link = "{link}"

[steps.first]
cmd = "{first}"
outs = ["first.txt"]

[steps.second]
cmd = "{second}"
outs = ["sub/out.txt"]
after = ["first"]
"""


@pytest.mark.parametrize("link", ["copy", "hardlink", "symlink"])
@pytest.mark.parametrize("then", ["restored", "run"])
def test_a_folder_swapped_by_an_earlier_step_stops_the_next_write_through_it(
    workspace, outside, link, then
):
    """`first` swaps `sub` for a link out of the repository after the checks passed;
    `second`, restored from the lock or run again, must not remove, replace or link
    anything through it."""
    plain = "echo 1 > first.txt"
    make = "mkdir -p sub && echo good > sub/out.txt"
    first_run(workspace, SIBLINGS.format(link=link, first=plain, second=make))
    (workspace.root / "sub" / "out.txt").unlink()  # second: restored from the lock
    assert (outside / "out.txt").read_text() != "good\n"  # what a restore would replace
    second = make if then == "restored" else make.replace("good", "better")
    swap = f"rm -rf sub && ln -s {outside} sub && echo 2 > first.txt"
    workspace.pipeline(SIBLINGS.format(link=link, first=swap, second=second))
    workspace.commit("swap")
    lock = tree(workspace.root / "gitpipe.lock")
    before = tree(outside), tree(workspace.root / ".git")
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1, result.output
    assert (
        f"second: failed: refusing to write sub/out.txt: sub is a link leading outside the "
        f"repository (to {outside})" in result.output
    )
    assert workspace.states() == {"first": "ran", "second": "failed"}
    assert (tree(outside), tree(workspace.root / ".git")) == before
    assert tree(workspace.root / "gitpipe.lock") != lock  # first's new entry, only
    assert "sub/out.txt" in (workspace.root / "gitpipe.lock").read_text()


def test_a_removed_steps_output_behind_a_swapped_folder_is_left_alone(workspace, outside):
    first_run(
        workspace,
        """
        [steps.keep]
        cmd = "echo keep > keep.txt"
        outs = ["keep.txt"]

        [steps.old]
        cmd = "mkdir -p sub && echo 'not gitpipe' > sub/precious.txt"
        outs = ["sub/precious.txt"]
        """,
    )
    (outside / "precious.txt").write_text("not gitpipe\n")  # what the lock names, byte for byte
    os.rename(workspace.root / "sub", workspace.root.parent / "moved")
    (workspace.root / "sub").symlink_to(outside, target_is_directory=True)
    workspace.pipeline('[steps.keep]\ncmd = "echo keep > keep.txt"\nouts = ["keep.txt"]\n')
    workspace.commit("old step gone")
    before = tree(outside)
    workspace.ok("repro")
    assert tree(outside) == before
    assert "old" not in (workspace.root / "gitpipe.lock").read_text()


def test_an_old_output_folder_holding_a_repository_is_never_removed(workspace):
    first_run(
        workspace,
        '[steps.make]\ncmd = "mkdir -p out && echo x > out/x.txt"\nouts = ["out/"]\n',
    )
    git(workspace.root / "out", "init", "-q")  # a repository made in it by hand
    nested = tree(workspace.root / "out" / ".git")
    result = workspace.gitpipe("repro")  # the output changed: restored from the lock
    assert result.exit_code == 1, result.output
    assert "refusing to replace out/: it holds out/.git, which gitpipe never removes" in (
        result.output
    )
    assert tree(workspace.root / "out" / ".git") == nested
    workspace.pipeline(
        '[steps.make]\ncmd = "mkdir -p out && echo y > out/x.txt"\nouts = ["out/"]\n'
    )
    result = workspace.gitpipe("repro")  # run again: its old outputs are not removed
    assert result.exit_code == 1, result.output
    assert "refusing to replace out/: it holds out/.git" in result.output
    assert tree(workspace.root / "out" / ".git") == nested
    assert (workspace.root / "out" / "x.txt").read_text() == "x\n"


def test_a_stored_folder_naming_git_is_never_restored(workspace):
    first_run(
        workspace,
        '[steps.make]\ncmd = "mkdir -p out && echo x > out/x.txt"\nouts = ["out/"]\n',
    )
    store = Store(workspace.root / ".gitpipe" / "cache")
    hook = b"#!/bin/sh\necho owned\n"
    store.add_bytes(hook)
    forged = store.add_bytes(
        manifest_bytes(
            [ManifestEntry(".git/hooks/pre-commit", digest_bytes(hook), len(hook), True)]
        )
    )
    lock = workspace.root / "gitpipe.lock"
    real = str(digest_file_of_folder(workspace))
    lock.write_text(lock.read_text().replace(real, str(forged)))
    workspace.commit("a forged lock")
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1, result.output
    assert (
        "refusing to restore out/: the stored folder holds .git/hooks/pre-commit, which "
        "gitpipe never writes" in result.output
    )
    assert not (workspace.root / "out" / ".git").exists()
    assert (workspace.root / "out" / "x.txt").read_text() == "x\n"


def digest_file_of_folder(workspace: Workspace) -> str:
    """The digest gitpipe.lock records for the folder output ``out/``."""
    for line in (workspace.root / "gitpipe.lock").read_text().splitlines():
        if line.startswith('"out/" = '):
            return line.split(" = ")[1].strip('"')
    raise AssertionError("no out/ in gitpipe.lock")


# --- what still works ------------------------------------------------------------------


def test_an_output_folder_through_a_link_inside_the_repository_still_runs_and_restores(
    workspace,
):
    (workspace.root / "real").mkdir()
    (workspace.root / "via").symlink_to("real", target_is_directory=True)
    workspace.write(".gitignore", "real/\n")
    workspace.pipeline(
        """
        [pipeline]
        link = "hardlink"

        [steps.make]
        cmd = "echo made > via/out.txt"
        outs = ["via/out.txt"]
        """
    )
    workspace.commit("pipeline")
    workspace.ok("repro")
    (workspace.root / "real" / "out.txt").unlink()
    workspace.ok("repro")
    assert workspace.states() == {"make": "cached"}
    assert (workspace.root / "real" / "out.txt").read_text() == "made\n"


def test_links_into_the_store_that_gitpipe_made_pass_the_checks(workspace):
    workspace.write(".gitignore", "out/\nout.txt\n")
    workspace.pipeline(
        """
        [pipeline]
        link = "symlink"

        [steps.file]
        cmd = "echo one > out.txt"
        outs = ["out.txt"]

        [steps.folder]
        cmd = "mkdir -p out && echo two > out/two.txt"
        outs = ["out/"]
        """
    )
    workspace.commit("pipeline")
    workspace.ok("repro")
    assert (workspace.root / "out.txt").is_symlink()
    workspace.ok("status")
    (workspace.root / "out.txt").unlink()
    workspace.ok("repro")
    assert workspace.states() == {"file": "cached", "folder": "up to date"}
    workspace.ok("repro", "--force")
    assert sorted(workspace.ran()) == ["file", "folder"]
