"""No one with write access to a remote can rewrite a result.

A remote is untrusted storage. Whoever can write to it (a folder remote, or moto's
S3 server on 127.0.0.1 spoken to over HTTP by the real client library) plants
results here, well-formed or not, and the tests pin what a clone that pulls them
does: gitpipe.lock's digests win over any result; a result serves a step only when
it covers exactly the step's declared outputs, each a file or folder as declared;
malformed results are rejected at `pull`, one line each, never a traceback; with
``GITPIPE_RESULT_KEY`` set, results must carry its HMAC, and the secret itself
appears nowhere.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from conftest import AWS_SETTINGS, Workspace, git

from gitpipe.core.hashing import Digest, canonical, digest_bytes
from gitpipe.store import lockfile
from gitpipe.store.objects import Store
from gitpipe.store.remote import (
    DirectoryRemote,
    entry_result_id,
    object_name,
    open_remote,
    result_name,
)
from gitpipe.store.runcache import (
    KEY_VAR,
    MAX_DEPTH,
    OutRecord,
    Result,
    RunCache,
    Signer,
    parse_result,
)

SECRET = "gitpipe-test-secret-" + uuid.uuid4().hex
WITH_KEY = {KEY_VAR: SECRET}

PIPELINE = """
[steps.split]
cmd = [
  "mkdir -p parts",
  "cut -c1-5 data/raw.txt > parts/a.txt",
  "cut -c6- data/raw.txt > parts/b.txt",
]
deps = ["data/raw.txt"]
outs = ["parts/"]

[steps.count]
cmd = [
  "cat parts/a.txt parts/b.txt | wc -c > count.txt",
  "printf '{\\"chars\\": %d}' $(cat count.txt) > score.json",
]
deps = ["parts/"]
outs = ["count.txt"]
metrics = ["score.json"]
"""


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests choose the remote, the AWS settings and the secret themselves."""
    for name in ("GITPIPE_REMOTE", "GITPIPE_DEBUG", KEY_VAR, *AWS_SETTINGS):
        monkeypatch.delenv(name, raising=False)


# -- a folder remote and a real S3-compatible server (s3_server: tests/conftest.py) -----


@pytest.fixture(params=["folder", "s3"])
def remote_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "folder":
        folder = tmp_path / "remote"
        folder.mkdir()
        return str(folder)
    endpoint = request.getfixturevalue("s3_server")
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    bucket = f"gitpipe-{uuid.uuid4().hex[:12]}"
    with urllib.request.urlopen(
        urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"), timeout=10
    ):
        pass
    return f"s3://{bucket}/team/store"


# -- clones and a forger ------------------------------------------------------------------


def first_clone(
    make_workspace: Callable[[str], Workspace], env: dict[str, str] | None = None
) -> Workspace:
    one = make_workspace("one")
    one.write("data/raw.txt", "hello world\n")
    one.write(".gitignore", "parts/\ncount.txt\nscore.json\n")
    one.pipeline(PIPELINE)
    one.commit("pipeline")
    one.ok("repro", env=env)
    one.commit("lock")
    return one


def clone(one: Workspace, name: str) -> Workspace:
    target = one.root.parent / name
    git(one.root.parent, "clone", "-q", str(one.root), str(target))
    return Workspace(target, one.runner)


def store_of(workspace: Workspace) -> Store:
    return Store(workspace.root / ".gitpipe" / "cache")


def lock_entry(workspace: Workspace, step: str) -> lockfile.LockEntry:
    return lockfile.read(workspace.root / "gitpipe.lock").steps[step]


def lock_text(workspace: Workspace) -> str:
    return (workspace.root / "gitpipe.lock").read_text()


def edit_count(workspace: Workspace) -> None:
    """An edit to count's command (same output bytes): count gets a new key."""
    workspace.pipeline(PIPELINE.replace("wc -c > count.txt", "wc -c > count.txt && true"))
    workspace.commit("edit count")


def rejected(outcome) -> str:
    """The one-line error a pull that rejected something ends with: exit 5, no
    traceback (the lines before it are progress, and what the remote lacks)."""
    assert outcome.exit_code == 5, outcome.output
    assert "Traceback" not in outcome.output
    lines = outcome.stderr.strip().splitlines()
    assert [line for line in lines if "failed verification" in line] == lines[-1:]
    assert lines[-1].startswith("gitpipe: ")
    return lines[-1]


class Forger:
    """Someone who can write to the remote, and nothing else: plants objects under
    their true digests and results of any key, under the names gitpipe uses."""

    def __init__(self, remote_url: str, base: Path) -> None:
        environ = {name: value for name, value in os.environ.items() if name != KEY_VAR}
        self.remote = open_remote(remote_url, base=base, environ=environ)

    def plant(self, data: bytes) -> Digest:
        digest = digest_bytes(data)
        self.remote.write(object_name(digest), data)
        return digest

    def result(
        self,
        key: Digest,
        outs: dict[str, OutRecord],
        *,
        metrics: dict | None = None,
        record: dict | None = None,
        signer: Signer | None = None,
    ) -> Digest:
        """A well-formed result claiming to be the newest; its id."""
        result = Result(
            outs=outs,
            metrics=metrics or {},
            step="count",
            record=record or {},
            created=time.time() + 3600,
        )
        self.remote.write(
            result_name(key, result.id), result.to_json(key, signer=signer or Signer())
        )
        return result.id

    def raw(self, key: Digest, rid: Digest, data: bytes) -> None:
        self.remote.write(result_name(key, rid), data)

    def read(self, key: Digest, rid: Digest) -> bytes:
        data = self.remote.read(result_name(key, rid))
        assert data is not None
        return data

    def spoil(self, digest: Digest) -> None:
        """Other bytes under an object's name: every pull rejects it, as if it were gone."""
        self.remote.write(object_name(digest), b"not these bytes\n")


def forged_count(forger: Forger, key: Digest, **kwargs) -> Digest:
    """A result of count's ``key`` whose outputs are the forger's bytes."""
    outs = {
        "count.txt": OutRecord(forger.plant(b"666\n"), size=4),
        "score.json": OutRecord(forger.plant(b'{"chars": 666}'), size=14),
    }
    return forger.result(key, outs, metrics={"score.json": {"chars": 666}}, **kwargs)


def new_key_of_count(one: Workspace, remote_url: str) -> tuple[Digest, dict]:
    """count's key after `edit_count`, and its honest key record: what anyone who can
    read the repository computes (here by running the edited pipeline elsewhere)."""
    scout = clone(one, "scout")
    edit_count(scout)
    scout.ok("pull", "--remote", remote_url)
    scout.ok("repro")
    key = lock_entry(scout, "count").key
    honest = RunCache(store_of(scout)).get(key)
    assert honest is not None
    return key, dict(honest.record)


# -- the lock wins ----------------------------------------------------------------------


def test_a_forged_newer_result_for_the_locks_key_never_replaces_the_locks_bytes(
    make_workspace, remote_url, tmp_path
):
    one = first_clone(make_workspace)
    one.ok("push", "--remote", remote_url)
    entry = lock_entry(one, "count")
    forger = Forger(remote_url, tmp_path)
    forged = forged_count(forger, entry.key)

    two = clone(one, "two")
    pulled = json.loads(two.ok("pull", "--remote", remote_url, "--all", "--json").stdout)
    assert pulled["rejected"] == []  # well-formed and unsigned: taken in, as a claim
    assert RunCache(store_of(two)).get(entry.key).id == forged  # and the newest one
    two.ok("repro")
    assert two.states() == {"split": "cached", "count": "cached"}
    assert (two.root / "count.txt").read_bytes() == (one.root / "count.txt").read_bytes()
    assert lock_text(two) == lock_text(one)
    two.ok("status", "--check")
    two.ok("repro", "--frozen")

    three = clone(one, "three")  # the same through `repro --pull`
    three.ok("repro", "--pull", "--remote", remote_url)
    assert (three.root / "count.txt").read_bytes() == (one.root / "count.txt").read_bytes()
    assert lock_text(three) == lock_text(one)


def test_forged_metrics_under_the_locks_own_result_name_do_not_reach_the_lock(
    make_workspace, remote_url, tmp_path
):
    """A result's id covers its outputs, not its metrics: the lock's metrics win."""
    one = first_clone(make_workspace)
    one.ok("push", "--remote", remote_url)
    entry = lock_entry(one, "count")
    rid = entry_result_id(entry)
    forger = Forger(remote_url, tmp_path)
    record = json.loads(forger.read(entry.key, rid))
    record["metrics"] = {"score.json": {"chars": 666}}
    forger.raw(entry.key, rid, canonical(record))

    two = clone(one, "two")
    two.ok("pull", "--remote", remote_url)
    two.ok("repro")
    assert lock_text(two) == lock_text(one)
    assert lock_entry(two, "count").metrics == {"score.json": {"chars": 13}}


def test_where_the_locks_objects_are_gone_an_unsigned_forgery_for_its_key_serves(
    make_workspace, remote_url, tmp_path
):
    """Pinned, and written down in docs/remote.md: without GITPIPE_RESULT_KEY the run
    cache serves a key whose lock objects are nowhere to be had; `--frozen` refuses."""
    one = first_clone(make_workspace)
    one.ok("push", "--remote", remote_url)
    entry = lock_entry(one, "count")
    forger = Forger(remote_url, tmp_path)
    forger.spoil(entry.outs["count.txt"])
    forged_count(forger, entry.key)

    two = clone(one, "two")
    assert two.gitpipe("pull", "--remote", remote_url, "--all").exit_code == 5
    frozen = two.gitpipe("repro", "--frozen")
    assert frozen.exit_code == 3, frozen.output
    assert "would restore outputs gitpipe.lock does not name" in frozen.stderr
    two.ok("repro")
    assert two.states()["count"] == "cached"
    assert (two.root / "count.txt").read_bytes() == b"666\n"


def test_where_the_locks_objects_are_gone_the_key_refuses_the_forgery_and_the_step_runs(
    make_workspace, remote_url, tmp_path
):
    one = first_clone(make_workspace, env=WITH_KEY)
    one.ok("push", "--remote", remote_url, env=WITH_KEY)
    entry = lock_entry(one, "count")
    forger = Forger(remote_url, tmp_path)
    forger.spoil(entry.outs["count.txt"])
    forged = forged_count(forger, entry.key)

    two = clone(one, "two")
    line = rejected(two.gitpipe("pull", "--remote", remote_url, "--all", env=WITH_KEY))
    assert f"result {entry.key} {forged} (not a trustworthy result: it is not signed" in line
    assert RunCache(store_of(two)).get_exact(entry.key, forged) is None
    two.ok("repro", env=WITH_KEY)
    assert two.states() == {"split": "cached", "count": "ran"}
    assert (two.root / "count.txt").read_bytes() == (one.root / "count.txt").read_bytes()


# -- a key the lock does not name yet ------------------------------------------------------


def test_with_the_key_a_forged_result_for_a_new_key_is_rejected_at_pull_and_the_step_runs(
    make_workspace, remote_url, tmp_path
):
    one = first_clone(make_workspace, env=WITH_KEY)
    one.ok("push", "--remote", remote_url, env=WITH_KEY)
    key, honest_record = new_key_of_count(one, remote_url)
    forger = Forger(remote_url, tmp_path)
    forged = forged_count(forger, key, record=honest_record)

    edit_count(one)
    two = clone(one, "two")
    pulled = two.gitpipe("pull", "--remote", remote_url, "--all", "--json", env=WITH_KEY)
    assert pulled.exit_code == 5
    reasons = {r["what"]: r["reason"] for r in json.loads(pulled.stdout)["rejected"]}
    assert reasons[f"result {key} {forged}"] == (
        f"not a trustworthy result: it is not signed, and {KEY_VAR} is set"
    )
    two.ok("repro", env=WITH_KEY)
    assert two.states() == {"split": "cached", "count": "ran"}
    assert (two.root / "count.txt").read_bytes() == (one.root / "count.txt").read_bytes()

    three = clone(one, "three")  # `repro --pull` asks the remote for the new key too
    done = three.ok("repro", "--pull", "--remote", remote_url, env=WITH_KEY)
    assert three.states() == {"split": "cached", "count": "ran"}
    # and says what it refused, never silently
    assert (
        f"refused 1 item(s) from {remote_url} that failed verification (result {key} {forged}"
    ) in done.output
    assert "the steps they would serve run instead" in done.output
    assert RunCache(store_of(three)).get_exact(key, forged) is None


def test_without_the_key_a_forged_result_for_a_new_key_is_restored(
    make_workspace, remote_url, tmp_path
):
    """Pinned, and written down in docs/remote.md as what GITPIPE_RESULT_KEY is for."""
    one = first_clone(make_workspace)
    one.ok("push", "--remote", remote_url)
    key, honest_record = new_key_of_count(one, remote_url)
    forged_count(Forger(remote_url, tmp_path), key, record=honest_record)

    edit_count(one)
    two = clone(one, "two")
    two.ok("repro", "--pull", "--remote", remote_url)
    assert two.states() == {"split": "cached", "count": "cached"}
    assert (two.root / "count.txt").read_bytes() == b"666\n"


def test_a_result_signed_with_another_secret_is_rejected(make_workspace, remote_url, tmp_path):
    one = first_clone(make_workspace, env=WITH_KEY)
    one.ok("push", "--remote", remote_url, env=WITH_KEY)
    key, honest_record = new_key_of_count(one, remote_url)
    forger = Forger(remote_url, tmp_path)
    forged = forged_count(forger, key, record=honest_record, signer=Signer(b"a guess"))

    edit_count(one)
    two = clone(one, "two")
    line = rejected(two.gitpipe("pull", "--remote", remote_url, "--all", env=WITH_KEY))
    assert (
        f"result {key} {forged} (not a trustworthy result: its signature does not match "
        f"{KEY_VAR})" in line
    )
    two.ok("repro", env=WITH_KEY)
    assert two.states()["count"] == "ran"


def test_a_signed_result_altered_on_the_remote_is_rejected(make_workspace, remote_url, tmp_path):
    one = first_clone(make_workspace, env=WITH_KEY)
    one.ok("push", "--remote", remote_url, env=WITH_KEY)
    entry = lock_entry(one, "count")
    rid = entry_result_id(entry)
    forger = Forger(remote_url, tmp_path)
    record = json.loads(forger.read(entry.key, rid))
    assert record["signature"].startswith("hmac-sha256:")
    record["duration"] = 0.001  # any change at all, signature kept
    forger.raw(entry.key, rid, canonical(record))

    two = clone(one, "two")
    line = rejected(two.gitpipe("pull", "--remote", remote_url, env=WITH_KEY))
    assert f"its signature does not match {KEY_VAR}" in line
    two.ok("repro", env=WITH_KEY)  # the lock's objects came through verified
    assert two.states() == {"split": "cached", "count": "cached"}


def test_signed_results_travel_and_serve_a_clone_with_the_key(make_workspace, remote_url):
    one = first_clone(make_workspace, env=WITH_KEY)
    for _key, _rid, path in RunCache(store_of(one)).stored():
        signature = json.loads(path.read_bytes())["signature"]
        assert signature.startswith("hmac-sha256:") and len(signature) == 12 + 64
    one.ok("push", "--remote", remote_url, env=WITH_KEY)

    two = clone(one, "two")
    pulled = json.loads(two.ok("pull", "--remote", remote_url, "--json", env=WITH_KEY).stdout)
    assert (pulled["results"], pulled["rejected"]) == (2, [])
    two.ok("repro", env=WITH_KEY)
    assert two.states() == {"split": "cached", "count": "cached"}


def test_results_pushed_without_the_key_are_rejected_by_a_clone_that_has_it(
    make_workspace, remote_url
):
    """Turning the key on: unsigned results already on the remote are refused, one line
    each; the lock's objects still come, so the lock's steps restore."""
    one = first_clone(make_workspace)
    one.ok("push", "--remote", remote_url)
    two = clone(one, "two")
    pulled = two.gitpipe("pull", "--remote", remote_url, "--json", env=WITH_KEY)
    assert pulled.exit_code == 5
    report = json.loads(pulled.stdout)
    assert report["objects"] == 5 and report["results"] == 0
    assert len(report["rejected"]) == 2
    assert all("it is not signed" in r["reason"] for r in report["rejected"])
    two.ok("repro", env=WITH_KEY)
    assert two.states() == {"split": "cached", "count": "cached"}


def test_a_push_with_the_key_signs_results_recorded_before_it_was_set(make_workspace, remote_url):
    one = first_clone(make_workspace)  # no key: its results are unsigned here
    for _key, _rid, path in RunCache(store_of(one)).stored():
        assert "signature" not in json.loads(path.read_bytes())
    one.ok("push", "--remote", remote_url, env=WITH_KEY)  # the pushing clone vouches
    two = clone(one, "two")
    pulled = json.loads(two.ok("pull", "--remote", remote_url, "--json", env=WITH_KEY).stdout)
    assert (pulled["results"], pulled["rejected"]) == (2, [])


# -- results that do not fit the step -------------------------------------------------------


def test_a_result_omitting_a_declared_output_never_serves_and_cache_verify_names_it(
    make_workspace, remote_url, tmp_path
):
    one = first_clone(make_workspace)
    one.ok("push", "--remote", remote_url)
    key, honest_record = new_key_of_count(one, remote_url)
    forger = Forger(remote_url, tmp_path)
    outs = {"count.txt": OutRecord(forger.plant(b"666\n"), size=4)}  # no score.json
    forged = forger.result(key, outs, record=honest_record)

    edit_count(one)
    two = clone(one, "two")
    pulled = json.loads(two.ok("pull", "--remote", remote_url, "--all", "--json").stdout)
    assert pulled["rejected"] == []  # well-formed: which outputs a step declares, pull
    # cannot know; the planner does
    assert RunCache(store_of(two)).get(key).id == forged
    status = {s["step"]: s for s in json.loads(two.ok("status", "--json").stdout)}
    assert status["count"]["action"] == "run"
    two.ok("repro")
    assert two.states() == {"split": "cached", "count": "ran"}
    assert (two.root / "count.txt").read_bytes() == (one.root / "count.txt").read_bytes()
    two.ok("repro")  # and every later repro, too
    assert two.ran() == []

    verify = two.gitpipe("cache", "verify")
    assert verify.exit_code == 5
    assert (
        f"broken result {key}/{forged.hex} (lacks declared outputs: 'score.json')" in verify.stdout
    )
    two.ok("cache", "verify", "--repair")
    assert RunCache(store_of(two)).get_exact(key, forged) is None
    two.ok("cache", "verify")


def test_cache_verify_names_a_result_with_an_output_its_key_record_does_not_declare(
    make_workspace, tmp_path
):
    one = first_clone(make_workspace)
    entry = lock_entry(one, "count")
    cache = RunCache(store_of(one))
    honest = cache.get(entry.key)
    extra = {**honest.outs, "extra.bin": OutRecord(store_of(one).add_bytes(b"extra"))}
    forged = Result(outs=extra, metrics=honest.metrics, record=honest.record, step="count")
    cache.put(entry.key, forged)
    # a record that is not its key's says nothing: no pipeline, no check
    unknown = Result(outs=extra, record={"outs": ["count.txt"]}, step="count")
    cache.put(digest_bytes(b"another key"), unknown)

    verify = one.gitpipe("cache", "verify", "--json")
    assert verify.exit_code == 5
    assert json.loads(verify.stdout)["broken_results"] == [
        f"{entry.key}/{forged.id.hex} (names outputs its step did not declare: 'extra.bin')"
    ]
    one.ok("repro")
    assert one.ran() == []  # the lock's own result serves; the forged one never does


def test_a_file_claimed_for_a_folder_output_is_refused_and_the_folder_comes_back(
    make_workspace, remote_url, tmp_path
):
    one = first_clone(make_workspace)
    one.ok("push", "--remote", remote_url)
    entry = lock_entry(one, "split")
    manifest = entry.outs["parts/"]
    forger = Forger(remote_url, tmp_path)
    forger.spoil(manifest)  # the lock's folder is nowhere to be had
    forged = forger.result(entry.key, {"parts": OutRecord(forger.plant(b"a file\n"), size=7)})

    two = clone(one, "two")
    two.gitpipe("pull", "--remote", remote_url, "--all")
    assert RunCache(store_of(two)).get(entry.key).id == forged
    two.ok("repro")
    assert two.states() == {"split": "ran", "count": "cached"}
    assert (two.root / "parts").is_dir()
    assert (two.root / "parts" / "a.txt").read_text() == "hello\n"
    status = {s["step"]: s for s in json.loads(two.ok("status", "--json").stdout)}
    assert status["split"]["state"] == "up to date"
    verify = two.gitpipe("cache", "verify")
    assert f"broken result {entry.key}/{forged.hex}" not in verify.stdout  # no record


def test_a_file_where_a_folder_output_belongs_is_not_up_to_date(make_workspace):
    """What a `dir: false` result restored before this check: the folder's manifest
    bytes as a file, whose digest is the lock's digest of the folder."""
    one = first_clone(make_workspace)
    manifest = lock_entry(one, "split").outs["parts/"]
    subprocess.run(["rm", "-rf", str(one.root / "parts")], check=True)
    (one.root / "parts").write_bytes(store_of(one).object_path(manifest).read_bytes())

    status = {s["step"]: s for s in json.loads(one.ok("status", "--json").stdout)}
    assert status["split"]["state"] == "stale"
    assert "out modified: parts/ (a file where a folder belongs)" in status["split"]["reasons"]
    one.ok("repro")
    assert (one.root / "parts").is_dir()
    assert one.states()["split"] == "cached"


# -- malformed results: one line each at pull --------------------------------------------

DEEP = "[" * 10_000 + "]" * 10_000


def _with(field_: str, raw: str) -> Callable[[dict], bytes]:
    def make(record: dict) -> bytes:
        record[field_] = "@@"
        return canonical(record).replace(b'"@@"', raw.encode())

    return make


def _out_field(name: str, value: object) -> Callable[[dict], bytes]:
    def make(record: dict) -> bytes:
        for out in record["outs"].values():
            out[name] = value
        return canonical(record)

    return make


#: (what is wrong, how to make it from an honest record, what the pull says)
MALFORMED = {
    "metrics as a list": (_with("metrics", "[1, 2]"), "its metrics are not a table"),
    "metrics 10,000 deep": (
        _with("metrics", DEEP),
        f"it nests deeper than {MAX_DEPTH} levels",
    ),
    "NaN in metrics": (
        _with("metrics", '{"score.json": {"chars": NaN}}'),
        "it holds the number NaN, which is not finite",
    ),
}
MORE_MALFORMED = {
    "a list in metrics": (
        _with("metrics", '{"score.json": {"chars": [1]}}'),
        "its metrics are not a table",
    ),
    "null in metrics": (
        _with("metrics", '{"score.json": {"chars": null}}'),
        "its metrics are not a table",
    ),
    "metrics 100 tables deep": (
        _with("metrics", '{"a": ' * 100 + "1" + "}" * 100),
        f"it nests deeper than {MAX_DEPTH} levels",
    ),
    "an infinite duration": (
        _with("duration", "1e999"),
        "it holds a number too large to be finite (1e999)",
    ),
    "a size of 5,000 digits": (
        lambda record: re.sub(rb'"size":\d+', b'"size":1' + b"0" * 4999, canonical(record)),
        "it holds a whole number of 5000 digits",
    ),
    "a key record 10,000 deep": (
        _with("record", DEEP),
        f"it nests deeper than {MAX_DEPTH} levels",
    ),
    "a key record that is a list": (_with("record", "[1]"), "its key record is not a table"),
    "outs as a list": (_with("outs", '["count.txt"]'), "its outputs are not a table"),
    "dir as text": (
        _out_field("dir", "false"),
        "does not say with true or false what it is",
    ),
    "a negative size": (_out_field("size", -1), "has no size in bytes"),
    "a duration as text": (_with("duration", '"0.1"'), "its duration is not a number"),
    "an exit code as a float": (_with("exit_code", "0.5"), "its exit code is not a whole number"),
    "a list, not a table": (lambda record: b"[]", "it is not a JSON table"),
    "not JSON": (lambda record: b"{'outs':", "it is not JSON"),
    "not UTF-8": (lambda record: b'{"a": "\xff"}', "it is not UTF-8 text"),
}


def pull_malformed(one: Workspace, remote_url: str, tmp_path: Path, make: Callable) -> tuple:
    """count's lock result on the remote, remade malformed under its own name; a
    clone's pull of the lock: (the pull, the result's key and id)."""
    entry = lock_entry(one, "count")
    rid = entry_result_id(entry)
    forger = Forger(remote_url, tmp_path)
    forger.raw(entry.key, rid, make(json.loads(forger.read(entry.key, rid))))
    two = clone(one, "two")
    return two, two.gitpipe("pull", "--remote", remote_url), entry.key, rid


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_result_is_rejected_in_one_line_at_pull(
    make_workspace, remote_url, tmp_path, case
):
    make, says = MALFORMED[case]
    one = first_clone(make_workspace)
    one.ok("push", "--remote", remote_url)
    two, pulled, key, rid = pull_malformed(one, remote_url, tmp_path, make)
    line = rejected(pulled)
    assert f"1 item(s) failed verification: result {key} {rid} (not a trustworthy result: " in line
    assert says in line
    assert len(line) < 600
    assert RunCache(store_of(two)).get(key) is None
    two.ok("repro")  # the lock's objects came through verified
    assert two.states() == {"split": "cached", "count": "cached"}
    assert lock_text(two) == lock_text(one)


@pytest.mark.parametrize("case", sorted(MORE_MALFORMED))
def test_more_malformed_results_are_rejected_in_one_line_at_pull(make_workspace, tmp_path, case):
    make, says = MORE_MALFORMED[case]
    one = first_clone(make_workspace)
    remote = tmp_path / "remote"
    remote.mkdir()
    one.ok("push", "--remote", str(remote))
    two, pulled, key, _rid = pull_malformed(one, str(remote), tmp_path, make)
    line = rejected(pulled)
    assert says in line
    assert RunCache(store_of(two)).get(key) is None


def test_a_malformed_result_in_the_local_store_counts_as_none(make_workspace):
    """The same checks guard the local run cache: a bad file there is no result."""
    one = first_clone(make_workspace)
    entry = lock_entry(one, "count")
    cache = RunCache(store_of(one))
    path = cache.path_of(entry.key, entry_result_id(entry))
    path.chmod(0o644)
    path.write_bytes(MALFORMED["metrics 10,000 deep"][0](json.loads(path.read_bytes())))
    (one.root / "count.txt").unlink()
    one.ok("repro")  # restored from the lock's objects all the same
    assert one.states()["count"] == "cached"
    verify = one.gitpipe("cache", "verify")
    assert verify.exit_code == 5 and "Traceback" not in verify.output
    assert f"broken result {entry.key}/" in verify.stdout


def test_a_result_larger_than_a_result_may_be_is_refused_unread():
    key = digest_bytes(b"k")
    with pytest.raises(ValueError, match="more than a result may be"):
        parse_result(b" " * (16 * 1024 * 1024 + 1), key)


def test_a_long_forged_path_is_shown_cut_short(make_workspace, tmp_path):
    one = first_clone(make_workspace)
    remote = tmp_path / "remote"
    remote.mkdir()
    one.ok("push", "--remote", str(remote))

    def make(record: dict) -> bytes:
        record["outs"] = {"../" + "x" * 100_000: record["outs"]["count.txt"]}
        return canonical(record)

    _two, pulled, _key, _rid = pull_malformed(one, str(remote), tmp_path, make)
    line = rejected(pulled)
    assert "unsafe output path '../xxx" in line and len(line) < 600


# -- the secret stays secret ---------------------------------------------------------------


def test_the_signer_never_shows_its_secret():
    signer = Signer(SECRET.encode())
    assert SECRET not in repr(signer) and SECRET not in str(signer)
    record = json.loads(
        Result(outs={"a": OutRecord(digest_bytes(b"a"))}).to_json(digest_bytes(b"k"))
    )
    record["signature"] = "hmac-sha256:" + "0" * 64
    with pytest.raises(ValueError) as caught:
        signer.check(record)
    assert SECRET not in str(caught.value)
    assert signer.sign(b"x") not in str(caught.value)


def test_the_key_appears_nowhere_but_as_hmacs(make_workspace, remote_url, tmp_path):
    everything: list[str] = []

    def run(workspace: Workspace, *args: str, code: int = 0) -> None:
        outcome = workspace.gitpipe(*args, env=WITH_KEY)
        assert outcome.exit_code == code, outcome.output
        everything.append(outcome.output)

    one = make_workspace("one")
    one.write("data/raw.txt", "hello world\n")
    one.write(".gitignore", "parts/\ncount.txt\nscore.json\nenv.txt\n")
    one.pipeline(
        PIPELINE
        + """
[steps.snoop]
cmd = "env > env.txt; echo GITPIPE_RESULT_KEY=$GITPIPE_RESULT_KEY"
deps = ["count.txt"]
outs = ["env.txt"]

[hooks]
after_step = "env"
"""
    )
    one.commit("pipeline")
    run(one, "repro", "-v")
    one.commit("lock")
    run(one, "push", "--remote", remote_url)
    run(one, "status", "--json")
    run(one, "why", "count")
    run(one, "log")
    run(one, "lineage", "count.txt")
    run(one, "cache", "verify")
    assert f"{KEY_VAR}=" not in (one.root / "env.txt").read_text()  # not the step's

    key, _record = new_key_of_count(one, remote_url)
    forged_count(Forger(remote_url, tmp_path), key, signer=Signer(b"a guess"))
    edit_count(one)
    two = clone(one, "two")
    run(two, "pull", "--remote", remote_url, "--all", code=5)
    run(two, "pull", "--remote", remote_url, "--all", "--json", code=5)
    run(two, "--debug", "pull", "--remote", remote_url, "--all", code=5)
    run(two, "repro", "--pull", "--remote", remote_url, "--summary-json", "summary.json")
    run(two, "repro", "--frozen")

    for text in everything:
        assert SECRET not in text
    secret = SECRET.encode()
    remote_files: list[Path] = []
    if isinstance(open_remote(remote_url, base=tmp_path, environ={}), DirectoryRemote):
        remote_files = [p for p in Path(remote_url).rglob("*") if p.is_file()]
    for workspace in (one, two):
        for path in [*workspace.root.rglob("*"), *remote_files]:
            if path.is_file():
                assert secret not in path.read_bytes(), path
        with closing(sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db")) as db:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                for row in db.execute(f'SELECT * FROM "{table}"'):
                    assert SECRET not in repr(row), table
