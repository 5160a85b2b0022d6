"""Remote deps: an S3 object or an HTTP(S) resource in a step's `deps` is fingerprinted
by asking its server (never downloaded), and the fingerprint enters the key and the
lock.  Real servers on loopback: Python's http.server in a thread with a handler the
tests control, and moto's S3 server (the `s3_server` fixture of conftest.py)."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import AWS_SETTINGS, Workspace, git, lock_steps, refused, snapshot

SECRET = "s3cr3t-never-shown-4b1d"

STEP = """
[params]
name = "data.csv"

[steps.train]
cmd = "echo trained > model.txt"
deps = ["{url}"]
outs = ["model.txt"]
"""


@dataclass
class Resource:
    """What the server says of one path in answer to HEAD."""

    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    delay: float = 0.0


class Server:
    """An HTTP server on 127.0.0.1 whose answers the test sets, counting the HEAD
    requests each path gets."""

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self.heads: dict[str, int] = {}
        self.password = ""  # non-empty: Basic auth as user "reader" is required
        self.authorizations: list[str] = []
        self.gets: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                server.heads[self.path] = server.heads.get(self.path, 0) + 1
                given = self.headers.get("Authorization", "")
                server.authorizations.append(given)
                resource = server.resources.get(self.path)
                if server.password:
                    token = base64.b64encode(f"reader:{server.password}".encode()).decode()
                    if given != f"Basic {token}":
                        self.send_response(401)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                if resource is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                time.sleep(resource.delay)
                self.send_response(resource.status)
                for name, value in resource.headers.items():
                    self.send_header(name, value)
                self.end_headers()

            def do_GET(self) -> None:  # gitpipe never downloads a remote dep
                server.gets.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The tests choose the AWS settings, the timeout and the netrc file themselves."""
    for name in ("GITPIPE_HTTP_TIMEOUT", *AWS_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def with_url(workspace: Workspace, url: str) -> None:
    workspace.write(".gitignore", "model.txt\n")
    workspace.pipeline(STEP.format(url=url))
    workspace.commit("pipeline")


def assert_nowhere(secret: str, root: Path, *outputs: str) -> None:
    """``secret`` is in no output and no file of the repository (lineage included)."""
    for output in outputs:
        assert secret not in output, output
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert secret.encode() not in path.read_bytes(), path


def lineage_reads(workspace: Workspace) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db")) as db:
        return db.execute("SELECT role, path FROM io WHERE role = 'url' ORDER BY rowid").fetchall()


# -- HTTP(S) ------------------------------------------------------------------------


def test_first_repro_records_the_etag_in_the_lock_and_lineage(workspace, server):
    server.resources["/data.csv"] = Resource({"ETag": '"v1"'})
    url = server.url("/data.csv")
    with_url(workspace, url)

    workspace.ok("repro")

    entry = lock_steps(workspace)["train"]
    assert entry["urls"] == {url: {"etag": '"v1"'}}
    assert "deps" not in entry  # a url is no workspace path
    assert workspace.ran() == ["train"]
    assert lineage_reads(workspace) == [("url", url)]


def test_nothing_changed_is_up_to_date_without_running_each_url_asked_once(workspace, server):
    server.resources["/data.csv"] = Resource({"ETag": '"v1"'})
    with_url(workspace, server.url("/data.csv"))
    workspace.ok("repro")
    server.heads.clear()

    workspace.ok("repro")
    assert workspace.states() == {"train": "up to date"}
    assert server.heads == {"/data.csv": 1}
    status = workspace.ok("status")
    assert "train  up to date" in status.stdout
    assert server.heads == {"/data.csv": 2}  # status asks again: no stat-only answer
    workspace.ok("status")
    assert server.heads == {"/data.csv": 3}


def test_a_changed_etag_makes_the_step_stale_with_remote_dep_changed_and_it_reruns(
    workspace, server
):
    server.resources["/data.csv"] = Resource({"ETag": '"v1"'})
    url = server.url("/data.csv")
    with_url(workspace, url)
    workspace.ok("repro")
    server.resources["/data.csv"] = Resource({"ETag": '"v2"'})

    status = workspace.ok("status")
    plan = workspace.ok("repro", "-n")
    why = workspace.ok("why", "train")
    frozen = workspace.gitpipe("repro", "--frozen")
    check = workspace.gitpipe("status", "--check")

    assert f"train  stale  remote dep changed: {url}" in status.stdout
    assert f"remote dep changed: {url}" in plan.output
    assert f"remote dep changed: {url}" in why.stdout
    assert f"remote dep {url}" in why.stdout and "v1" in why.stdout
    assert frozen.exit_code == 3, frozen.output
    assert f"remote dep changed: {url}" in frozen.stderr
    assert check.exit_code == 3, check.output
    workspace.ok("repro")
    assert workspace.ran() == ["train"]
    assert lock_steps(workspace)["train"]["urls"] == {url: {"etag": '"v2"'}}


def test_back_to_an_earlier_etag_restores_its_stored_result(workspace, server):
    server.resources["/data.csv"] = Resource({"ETag": '"v1"'})
    with_url(workspace, server.url("/data.csv"))
    workspace.ok("repro")
    server.resources["/data.csv"] = Resource({"ETag": '"v2"'})
    workspace.ok("repro")
    server.resources["/data.csv"] = Resource({"ETag": '"v1"'})

    workspace.ok("repro")

    assert workspace.states() == {"train": "cached"}


def test_without_an_etag_last_modified_and_content_length_are_the_fingerprint(workspace, server):
    modified = "Wed, 02 Dec 2026 10:00:00 GMT"
    server.resources["/data.csv"] = Resource({"Last-Modified": modified, "Content-Length": "120"})
    url = server.url("/data.csv")
    with_url(workspace, url)
    workspace.ok("repro")
    assert lock_steps(workspace)["train"]["urls"] == {
        url: {"content_length": 120, "last_modified": modified}
    }
    server.resources["/data.csv"] = Resource({"Last-Modified": modified, "Content-Length": "121"})

    workspace.ok("repro")

    assert workspace.ran() == ["train"]


@pytest.mark.parametrize(
    ("headers", "status", "says"),
    [
        ({"Content-Length": "0"}, 200, "neither an ETag nor a Last-Modified"),
        ({"Last-Modified": "Wed, 02 Dec 2026 10:00:00 GMT"}, 200, "neither an ETag"),
        ({"Content-Length": "0"}, 403, "HTTP 403"),
    ],
    ids=["neither", "no-length", "forbidden"],
)
def test_a_resource_without_a_fingerprint_stops_repro_naming_the_url(
    workspace, server, headers, status, says
):
    server.resources["/data.csv"] = Resource(headers, status)
    url = server.url("/data.csv")
    with_url(workspace, url)

    for args in (("repro",), ("repro", "-n"), ("repro", "--frozen")):
        message = refused(workspace, *args, says=(url, says), code=5)
        assert message.count("\n") == 1


def test_a_missing_resource_stops_repro_with_exit_5_and_writes_nothing(workspace, server):
    url = server.url("/gone.csv")
    with_url(workspace, url)

    refused(workspace, "repro", says=(f"cannot fingerprint the remote dep {url}", "404"), code=5)

    assert not (workspace.root / "gitpipe.lock").exists()


def test_frozen_with_the_server_down_exits_5_naming_the_url_and_writes_nothing(workspace, server):
    server.resources["/data.csv"] = Resource({"ETag": '"v1"'})
    url = server.url("/data.csv")
    with_url(workspace, url)
    workspace.ok("repro")
    workspace.commit("lock")
    server.stop()

    refused(workspace, "repro", "--frozen", says=(url, "cannot fingerprint"), code=5)
    refused(workspace, "repro", says=(url,), code=5)


def test_status_with_the_server_down_says_unreachable_and_exits_5(workspace, server):
    server.resources["/data.csv"] = Resource({"ETag": '"v1"'})
    url = server.url("/data.csv")
    with_url(workspace, url)
    workspace.ok("repro")
    server.stop()

    status = workspace.gitpipe("status")
    as_json = workspace.gitpipe("status", "--json")
    check = workspace.gitpipe("status", "--check")
    why = workspace.gitpipe("why", "train")

    assert status.exit_code == 5, status.output
    assert f"train  stale  remote dep unreachable: {url} (" in status.stdout
    assert "up to date" not in status.stdout
    assert f"no fingerprint for the remote dep {url}" in status.stderr
    assert as_json.exit_code == 5
    assert json.loads(as_json.stdout)[0]["state"] == "stale"
    assert check.exit_code == 5, check.output
    assert why.exit_code == 5, why.output
    assert f"remote dep unreachable: {url}" in why.stdout
    # the console script's own way (gitpipe/__main__.py, without typer) says the same
    for args, said in ((["status"], status), (["status", "--check"], check)):
        fast = subprocess.run(
            [sys.executable, "-m", "gitpipe", *args],
            cwd=workspace.root,
            capture_output=True,
            text=True,
            env={**os.environ, "CI": "true"},
        )
        assert (fast.returncode, fast.stdout, fast.stderr) == (5, said.stdout, said.stderr)


def test_a_slow_server_is_given_up_on_after_the_timeout(workspace, server, monkeypatch):
    server.resources["/data.csv"] = Resource({"ETag": '"v1"'}, delay=3)
    with_url(workspace, server.url("/data.csv"))
    monkeypatch.setenv("GITPIPE_HTTP_TIMEOUT", "0.5")

    started = time.monotonic()
    refused(workspace, "repro", says=("no answer within 0.5 s",), code=5)

    assert time.monotonic() - started < 3


def test_a_timeout_that_is_no_number_is_a_usage_error(workspace, server, monkeypatch):
    server.resources["/data.csv"] = Resource({"ETag": '"v1"'})
    with_url(workspace, server.url("/data.csv"))
    monkeypatch.setenv("GITPIPE_HTTP_TIMEOUT", "soon")

    refused(workspace, "repro", says=("GITPIPE_HTTP_TIMEOUT must be a positive number",))


def test_many_urls_are_asked_at_once_each_once(workspace, server):
    for i in range(6):
        server.resources[f"/part{i}.csv"] = Resource({"ETag": f'"{i}"'}, delay=0.4)
    deps = ", ".join(f'"{server.url(f"/part{i}.csv")}"' for i in range(6))
    workspace.write(".gitignore", "a.txt\nb.txt\n")
    workspace.pipeline(
        f"""
        [steps.a]
        cmd = "echo a > a.txt"
        deps = [{deps}]
        outs = ["a.txt"]

        [steps.b]
        cmd = "cat a.txt > b.txt"
        deps = ["a.txt", {deps}]
        outs = ["b.txt"]
        """
    )

    started = time.monotonic()
    workspace.ok("repro")

    assert time.monotonic() - started < 6 * 0.4  # not one after the other
    assert set(server.heads.values()) == {1}
    assert len(lock_steps(workspace)["b"]["urls"]) == 6


def test_params_are_put_into_a_url(workspace, server):
    server.resources["/data.csv"] = Resource({"ETag": '"v1"'})
    url = server.url("/${params.name}")
    with_url(workspace, url)

    workspace.ok("repro")

    assert list(lock_steps(workspace)["train"]["urls"]) == [server.url("/data.csv")]


def test_credentials_for_a_host_come_from_netrc_and_are_never_shown(
    workspace, server, tmp_path, monkeypatch
):
    server.password = SECRET
    server.resources["/data.csv"] = Resource({"ETag": '"v1"'})
    url = server.url("/data.csv")
    with_url(workspace, url)
    refused(workspace, "repro", says=(url, "HTTP 401"), code=5)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login reader password {SECRET}\n")
    monkeypatch.setenv("NETRC", str(netrc))

    outputs = [workspace.ok("repro"), workspace.ok("status"), workspace.ok("log")]

    assert workspace.ran() == ["train"]
    assert_nowhere(SECRET, workspace.root, *(o.output for o in outputs))


def test_a_query_value_is_hidden_in_every_message_and_lineage(workspace, server):
    server.resources[f"/data.csv?sig={SECRET}"] = Resource({"ETag": '"v1"'})
    url = server.url(f"/data.csv?sig={SECRET}")
    with_url(workspace, url)
    ran = workspace.ok("repro")
    server.resources[f"/data.csv?sig={SECRET}"] = Resource({"ETag": '"v2"'})

    status = workspace.ok("status")
    why = workspace.ok("why", "train")
    server.stop()
    frozen = workspace.gitpipe("repro", "--frozen")

    shown = server.url("/data.csv?sig=***")
    assert f"remote dep changed: {shown}" in status.stdout
    assert f"cannot fingerprint the remote dep {shown}" in frozen.stderr
    assert lineage_reads(workspace) == [("url", shown)]
    for outcome in (ran, status, why, frozen):
        assert SECRET not in outcome.output


def test_gitpipe_check_takes_the_locks_fingerprints_without_asking(workspace, server):
    server.resources["/data.csv"] = Resource({"ETag": '"v1"'})
    with_url(workspace, server.url("/data.csv"))
    workspace.ok("repro")
    server.stop()

    workspace.ok("check")


def test_a_lock_whose_fingerprint_is_no_table_is_damaged(workspace, server):
    server.resources["/data.csv"] = Resource({"ETag": '"v1"'})
    url = server.url("/data.csv")
    with_url(workspace, url)
    workspace.ok("repro")
    lock = workspace.root / "gitpipe.lock"
    lock.write_text(lock.read_text().replace('etag = "\\"v1\\""', "etag = [1]"))

    outcome = workspace.gitpipe("status")

    assert outcome.exit_code == 5, outcome.output
    assert "gitpipe.lock is damaged" in outcome.stderr and url in outcome.stderr


def test_a_pipeline_without_urls_writes_its_lock_as_before(workspace):
    workspace.write(".gitignore", "model.txt\n")
    workspace.pipeline(
        """
        [steps.train]
        cmd = "echo trained > model.txt"
        outs = ["model.txt"]
        """
    )
    workspace.ok("repro")

    assert "urls" not in (workspace.root / "gitpipe.lock").read_text()


def test_adding_a_url_dep_shows_in_diff_as_an_added_dep(workspace, server):
    server.resources["/data.csv"] = Resource({"ETag": '"v1"'})
    url = server.url("/data.csv")
    workspace.write(".gitignore", "model.txt\n")
    workspace.write("local.csv", "x\n")
    workspace.pipeline(STEP.format(url="local.csv"))
    workspace.ok("repro")
    workspace.commit("a")
    git(workspace.root, "tag", "a")
    workspace.pipeline(STEP.format(url=f'local.csv", "{url}'))
    workspace.ok("repro")
    workspace.commit("b")

    diff = json.loads(workspace.ok("diff", "--json", "a", "HEAD").stdout)

    (train,) = diff["steps"]
    assert train["deps"] == {"added": [url], "removed": []}


def test_a_nested_pipeline_keeps_its_steps_url_deps(workspace, server):
    server.resources["/data.csv"] = Resource({"ETag": '"v1"'})
    url = server.url("/data.csv")
    workspace.write(".gitignore", "model.txt\n")
    workspace.write("inner/gitpipe.toml", STEP.format(url=url))
    workspace.pipeline(
        """
        [steps.outer]
        pipeline = "inner/gitpipe.toml"
        """
    )

    workspace.ok("repro")
    server.resources["/data.csv"] = Resource({"ETag": '"v2"'})

    assert f"outer/train  stale  remote dep changed: {url}" in workspace.ok("status").stdout


# -- what the pipeline file may say ---------------------------------------------------


@pytest.mark.parametrize(
    ("dep", "says"),
    [
        ("gs://bucket/data.csv", "gitpipe cannot fingerprint gs:// dependencies"),
        ("ftp://host/data.csv", "one of s3://, http://, https://"),
        ("s3://bucket/", "names no object"),
        ("s3://bucket", "names no object"),
        ("s3://bucket/data.csv?versionId=1", "names no object"),
        ("https:///data.csv", "names no host"),
        ("https://host/data.csv#part", "has a fragment"),
        ("https://host:port/data.csv", "is not a valid url"),
    ],
)
def test_a_url_gitpipe_cannot_fingerprint_is_refused_at_its_key(workspace, dep, says):
    workspace.pipeline(STEP.format(url=dep))

    message = refused(workspace, "status", says=(says, "steps.train.deps[0]"))

    assert message.count("\n") == 1


@pytest.mark.parametrize(
    "dep",
    [
        f"s3://AKIAEXAMPLE:{SECRET}@bucket/data.csv",
        f"https://reader:{SECRET}@host/data.csv",
        f"https://{SECRET}@host/data.csv",
    ],
)
def test_a_url_holding_credentials_is_refused_without_repeating_them(workspace, dep):
    workspace.pipeline(STEP.format(url=dep))

    outputs = [workspace.gitpipe(*args) for args in (("status",), ("repro",), ("repro", "-n"))]

    for outcome in outputs:
        assert outcome.exit_code == 2, outcome.output
        assert "holds credentials" in outcome.stderr
        assert "***@" in outcome.stderr
    assert_nowhere(SECRET, workspace.root / ".gitpipe", *(o.output for o in outputs))
    assert not (workspace.root / "gitpipe.lock").exists()


def test_a_url_cannot_be_an_output(workspace):
    workspace.pipeline(
        """
        [steps.upload]
        cmd = "true"
        outs = ["s3://bucket/model.pkl"]
        """
    )

    refused(workspace, "status", says=("is a url; outputs are files and folders",))


# -- S3 (moto) --------------------------------------------------------------------------


def make_bucket(endpoint: str, *, versioned: bool) -> str:
    bucket = f"gitpipe-{uuid.uuid4().hex[:12]}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"))
    if versioned:
        body = (
            b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<Status>Enabled</Status></VersioningConfiguration>"
        )
        urllib.request.urlopen(
            urllib.request.Request(
                f"{endpoint}/{bucket}?versioning=",
                data=body,
                method="PUT",
                headers={"Content-Type": "application/xml"},
            )
        )
    return bucket


def put_object(bucket: str, key: str, data: bytes) -> None:
    """Write an object as another client would (obstore, with the environment's
    endpoint and credentials)."""
    import obstore
    from obstore.store import S3Store

    obstore.put(S3Store(bucket, client_options={"allow_http": True}), key, data)


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Credentials and endpoint in the environment only; the secret key is SECRET."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    return s3_server


@pytest.mark.parametrize("versioned", [False, True], ids=["plain", "versioned"])
def test_an_s3_object_is_fingerprinted_by_etag_size_and_version(workspace, s3_env, versioned):
    bucket = make_bucket(s3_env, versioned=versioned)
    put_object(bucket, "raw/data.csv", b"a,b\n1,2\n")
    url = f"s3://{bucket}/raw/data.csv"
    with_url(workspace, url)

    first = workspace.ok("repro")
    again = workspace.ok("repro")
    assert workspace.states() == {"train": "up to date"}
    found = lock_steps(workspace)["train"]["urls"][url]
    assert found["size"] == 8 and found["etag"].startswith('"')
    assert ("version_id" in found) is versioned
    put_object(bucket, "raw/data.csv", b"a,b\n1,3\n")  # same size, other bytes

    status = workspace.ok("status")
    rerun = workspace.ok("repro")

    assert f"remote dep changed: {url}" in status.stdout
    assert workspace.ran() == ["train"]
    assert lock_steps(workspace)["train"]["urls"][url] != found
    outputs = (first.output, again.output, status.output, rerun.output)
    assert_nowhere(SECRET, workspace.root, *outputs)


def test_a_missing_s3_object_stops_repro_naming_the_url(workspace, s3_env):
    bucket = make_bucket(s3_env, versioned=False)
    url = f"s3://{bucket}/raw/missing.csv"
    with_url(workspace, url)
    before = snapshot(workspace.root)

    outcome = workspace.gitpipe("repro", "--frozen")

    assert outcome.exit_code == 5, outcome.output
    assert f"cannot fingerprint the remote dep {url} (no such object)" in outcome.stderr
    assert snapshot(workspace.root) == before
    assert SECRET not in outcome.output


def test_a_redirect_is_followed_with_head_again_never_get(workspace, server):
    server.resources["/old.csv"] = Resource({"Location": "/new.csv"}, status=302)
    server.resources["/new.csv"] = Resource({"ETag": '"moved"'})
    with_url(workspace, server.url("/old.csv"))
    workspace.ok("repro")
    assert lock_steps(workspace)["train"]["urls"] == {server.url("/old.csv"): {"etag": '"moved"'}}
    assert server.heads == {"/old.csv": 1, "/new.csv": 1}
    assert server.gets == []
