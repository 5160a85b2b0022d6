"""A step's code is keyed by one implementation (gitpipe.identity.stepcode), over the
working tree for a repro and over Git objects for versions: the fingerprint a repro
writes into gitpipe.lock is the one versions compute for the commit holding it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Workspace

from gitpipe.core.hashing import Digest, digest_bytes
from gitpipe.history.git import Repository
from gitpipe.history.shape import PipelinePath, Snapshots, worktree_snapshot
from gitpipe.history.walk import history
from gitpipe.identity.codedeps import Discoverer, code_digest
from gitpipe.identity.stepcode import code_digests, find_code, normaliser, step_code
from gitpipe.pipeline import spec
from gitpipe.store import lockfile

PIPELINE = """
[params]
seed = 1

[steps.prepare]
cmd = "python3 src/prepare.py"
code = ["conf/*.yaml"]
outs = ["prepared.txt"]

[steps.train]
cmd = "PYTHONPATH=src python3 -m lib.train"
deps = ["prepared.txt"]
outs = ["model.txt"]
code_digest = "bytes"

[steps.fit]
fn = "pkg.mod:fit"
params = ["seed"]
outs = ["fit.txt"]
"""
FILES = {
    "src/prepare.py": "from lib import util\nopen('prepared.txt', 'w').write(util.NAME)\n",
    "src/lib/__init__.py": "",
    "src/lib/util.py": '"""Shared."""\nNAME = "x"\n',
    "src/lib/train.py": "from . import util\nopen('model.txt', 'w').write(util.NAME * 2)\n",
    "conf/model.yaml": "depth: 3\n",
    "pkg/__init__.py": "",
    "pkg/mod.py": "def fit(seed):\n    open('fit.txt', 'w').write(str(seed))\n    return {}\n",
    ".gitignore": "prepared.txt\nmodel.txt\nfit.txt\n",
}


def _fingerprints(root: Path, file: Path) -> dict[str, str]:
    """The lock's fingerprint, and the ones versions compute from Git and the work tree."""
    lock = lockfile.read(file.with_suffix(".lock"))
    with Repository.find(root) as repo:
        head = repo.head_commit()
        snap, _ = Snapshots(repo, PipelinePath.of(repo, file)).snapshot(repo.commit(head).tree)
        walked = history(repo, file).current
    assert walked is not None
    for name, entry in lock.steps.items():  # the same code files, with the same digests
        assert snap.steps[name].code == {path: str(d) for path, d in entry.code.items()}, name
    return {
        "lock": lock.fingerprint,
        "commit": snap.fingerprint,
        "history": walked.fingerprint,
        "work tree": worktree_snapshot(file).fingerprint,
    }


@pytest.mark.parametrize("folder", ["", "ml"])
def test_the_fingerprint_a_repro_writes_is_the_one_versions_compute_for_its_commit(
    workspace: Workspace, folder: str
):
    ws = workspace
    where = ("-C", folder) if folder else ()
    for path, text in FILES.items():
        ws.write(f"{folder}/{path}" if folder else path, text)
    file = ws.write(f"{folder}/gitpipe.toml" if folder else "gitpipe.toml", PIPELINE)
    ws.ok(*where, "repro")
    code = lockfile.read(file.with_suffix(".lock")).steps
    assert sorted(code["prepare"].code) == [
        "conf/model.yaml",
        "src/lib/__init__.py",
        "src/lib/util.py",
        "src/prepare.py",
    ]
    assert sorted(code["fit"].code) == ["pkg/__init__.py", "pkg/mod.py"]
    ws.commit("pipeline and lock")
    first = _fingerprints(ws.root, file)
    assert len(set(first.values())) == 1, first

    # a docstring is no change to prepare's normalised code; train keys the bytes
    ws.write(f"{folder}/src/lib/util.py" if folder else "src/lib/util.py", 'NAME = "x"\n')
    ws.ok(*where, "repro")
    ws.commit("util without its docstring")
    second = _fingerprints(ws.root, file)
    assert len(set(second.values())) == 1, second
    assert second["lock"] != first["lock"]
    now = lockfile.read(file.with_suffix(".lock")).steps
    util = "src/lib/util.py"
    assert now["prepare"].code[util] == code["prepare"].code[util]
    assert now["train"].code[util] != code["train"].code[util]

    prepare = FILES["src/prepare.py"] + "# a comment\n"
    ws.write(f"{folder}/src/prepare.py" if folder else "src/prepare.py", prepare)
    lock_text = file.with_suffix(".lock").read_text()
    states = json.loads(ws.ok(*where, "status", "--json").stdout)
    assert {s["state"] for s in states} == {"up to date"}  # a comment is no change
    ws.commit("prepare: a comment")
    assert _fingerprints(ws.root, file)["commit"] == second["lock"]
    assert file.with_suffix(".lock").read_text() == lock_text


class _Files:
    """An in-memory code source."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.reads: list[str] = []

    def is_file(self, path: str) -> bool:
        return path in self.files

    def read(self, path: str) -> bytes:
        self.reads.append(path)
        return self.files[path]

    def glob(self, pattern: str) -> list[str]:
        return sorted(p for p in self.files if Path(p).match(pattern))

    def digest(self, path: str) -> Digest:
        return digest_bytes(self.files[path])


def _step(extra: str = "") -> spec.Step:
    text = f'[steps.s]\ncmd = "python3 run.py"\ncode = ["*.cfg"]\n{extra}'
    return spec.parse(text, file=Path("gitpipe.toml")).steps["s"]


def test_code_digests_normalise_python_unless_the_step_says_bytes():
    files = {"run.py": b"import helper  # comment\n", "helper.py": b"X = 1\n", "a.cfg": b"k\n"}
    source = _Files(files)
    known: dict[Digest, Digest] = {}
    code = step_code(_step(), Discoverer(source), normaliser(source, known))
    assert code == {
        "a.cfg": digest_bytes(b"k\n"),
        "helper.py": code_digest("helper.py", b"X = 1\n")[0],
        "run.py": code_digest("run.py", b"import helper\n")[0],  # the comment is no code
    }
    found = find_code(_step('code_digest = "bytes"'), Discoverer(source)).files
    raw = code_digests(_step('code_digest = "bytes"'), found, source, normaliser(source, known))
    assert raw == {path: digest_bytes(data) for path, data in files.items()}


def test_the_same_bytes_are_normalised_once_whatever_their_path():
    source = _Files({"run.py": b"X = 1\n", "copy.py": b"X = 1\n"})
    normal = normaliser(source, {})
    step = _step()
    assert code_digests(step, ["run.py", "copy.py"], source, normal) == dict.fromkeys(
        ["run.py", "copy.py"], code_digest("run.py", b"X = 1\n")[0]
    )
    assert source.reads == ["run.py"]
