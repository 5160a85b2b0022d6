"""No secret is ever echoed: a remote url's user name, password or query values are
redacted in every message, progress line, report, lineage row and file gitpipe writes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import CHAIN, GITPIPE_SCRIPT, Workspace

from gitpipe.store.remote import redact

SECRET = "s3cr3t-do-not-echo-7f3a"

#: urls gitpipe refuses, each holding the secret
REFUSED = (
    f"s3://AKIAEXAMPLE:{SECRET}@bucket/prefix",
    f"s3://bucket/prefix?X-Amz-Signature={SECRET}",
    f"https://user:{SECRET}@example.invalid/store",
    f"file://user:{SECRET}@elsewhere/store",
)

#: the commands that take a remote
COMMANDS = (
    ("push",),
    ("pull",),
    ("push", "--json"),
    ("repro", "--pull"),
    ("repro", "--push"),
)


def chain(workspace: Workspace) -> Workspace:
    workspace.write("data/raw.txt", "hello world\n")
    workspace.write(".gitignore", "first.txt\nsecond.txt\nthird.txt\n")
    workspace.pipeline(CHAIN)
    workspace.commit("pipeline")
    workspace.ok("repro")
    workspace.commit("lock")
    return workspace


def assert_nowhere(secret: str, root: Path, *outputs: str) -> None:
    """``secret`` is in no output and no file in the project (lineage.db included)."""
    for output in outputs:
        assert secret not in output, output
    needle = secret.encode()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and ".git/" not in path.as_posix() + "/":
            assert needle not in path.read_bytes(), path
    for path in (root / ".git").glob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), path


@pytest.mark.parametrize("url", REFUSED)
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_refused_url_is_never_repeated_with_its_secret(workspace, url, command):
    chain(workspace)

    result = workspace.gitpipe(*command, "--remote", url)
    from_env = workspace.gitpipe(*command, env={"GITPIPE_REMOTE": url})

    assert result.exit_code == 2, result.output
    assert from_env.exit_code == 2, from_env.output
    assert "***" in result.output
    assert_nowhere(SECRET, workspace.root, result.output, from_env.output)


def test_a_url_with_a_secret_query_is_used_and_never_shown(workspace, tmp_path):
    """A folder remote may carry a query (a token a mount needs, say): it works, and
    neither the progress lines, the reports, the notices nor lineage's argv show it."""
    chain(workspace)
    url = f"file://{tmp_path / 'remote'}?token={SECRET}"
    (tmp_path / "remote").mkdir()

    pushed = workspace.ok("push", "--remote", url)
    report = workspace.ok("push", "--json", "--remote", url)
    for name in ("first.txt", "second.txt", "third.txt"):
        (workspace.root / name).unlink()
    (workspace.root / ".gitpipe" / "cache").rename(tmp_path / "old-cache")
    # the real command, so that lineage records its real argv
    repro = subprocess.run(
        [
            *(str(GITPIPE_SCRIPT), "repro", "--pull", "--push", f"--remote={url}"),
            *("--summary-json", "summary.json", "--summary-md", "summary.md"),
        ],
        cwd=workspace.root,
        capture_output=True,
        text=True,
        check=False,
    )
    pulled = workspace.ok("pull", "--remote", url)
    env = workspace.ok("log", env={"GITPIPE_REMOTE": url})

    assert json.loads(report.stdout)["remote"] == redact(url)
    assert "token=***" in pushed.output
    assert repro.returncode == 0, repro.stdout + repro.stderr
    assert (workspace.root / "third.txt").exists()
    assert (workspace.root / "summary.md").exists()
    assert "--remote=file://" in workspace.ok("log", "--json").stdout
    assert_nowhere(
        SECRET,
        workspace.root,
        pushed.output,
        report.output,
        repro.stdout + repro.stderr,
        pulled.output,
        env.output,
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("s3://KEY:SECRET@bucket/x", "s3://***@bucket/x"),
        ("https://user:pass@host/x", "https://***@host/x"),
        ("s3://bucket/x?token=abc&plain", "s3://bucket/x?token=***&***"),
        ("s3://bucket/x", "s3://bucket/x"),
        ("relative/folder", "relative/folder"),
    ],
)
def test_redact_hides_users_passwords_and_query_values(url, shown):
    assert redact(url) == shown
