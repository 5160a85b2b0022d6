"""Environment identity: what of the environment a step's key holds (docs/environment.md).

The package tests build two versions of a tiny distribution (`fakepkg` 1.0 and 2.0) as
real wheels, install them with pip into a virtual environment of the test's own, and
run gitpipe from that environment as a subprocess."""

from __future__ import annotations

import base64
import hashlib
import os
import site
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import Workspace, snapshot

import gitpipe
from gitpipe.store import lockfile

REPO = Path(gitpipe.__file__).resolve().parents[1]
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _wheel(folder: Path, version: str) -> Path:
    """A pure-Python wheel of `fakepkg` ``version`` (module fakepkg.py)."""
    dist = f"fakepkg-{version}.dist-info"
    files = {
        "fakepkg.py": f'__version__ = "{version}"\n',
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: fakepkg\nVersion: {version}\n",
        f"{dist}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{dist}/top_level.txt": "fakepkg\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    path = folder / f"fakepkg-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment that sees this one's packages (gitpipe's dependencies)
    and holds its own: fakepkg is installed there."""
    root = tmp_path_factory.mktemp("env")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root / "venv")],
        check=True,
        capture_output=True,
    )
    purelib = next((root / "venv" / "lib").glob("python*/site-packages"))
    (purelib / "parent.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    wheels = root / "wheels"
    wheels.mkdir()
    _wheel(wheels, "1.0")
    _wheel(wheels, "2.0")
    return root / "venv"


def install(venv: Path, version: str) -> None:
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    offline = ["--quiet", "--no-index", "--disable-pip-version-check"]
    subprocess.run(
        [
            *pip,
            "install",
            *offline,
            "--find-links",
            str(venv.parent / "wheels"),
            f"fakepkg=={version}",
        ],
        check=True,
        capture_output=True,
    )


def gitpipe_in(venv: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITPIPE_")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)
    env["CI"] = "true"
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "gitpipe", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


PACKAGE_PIPELINE = """
[steps.uses]
cmd = "python uses.py"
outs = ["uses.txt"]

[steps.plain]
cmd = "python plain.py"
outs = ["plain.txt"]
"""


def _package_workspace(workspace: Workspace, extra: str = "") -> None:
    workspace.pipeline(PACKAGE_PIPELINE + extra)
    workspace.write(
        "uses.py",
        "import fakepkg\nopen('uses.txt', 'w').write(fakepkg.__version__)\n",
    )
    workspace.write("plain.py", "import json\nopen('plain.txt', 'w').write(json.dumps(1))\n")
    workspace.commit("pipeline")


def test_upgrading_an_imported_package_reruns_only_the_step_that_imports_it(workspace, venv):
    _package_workspace(workspace)
    install(venv, "1.0")
    first = gitpipe_in(venv, workspace.root, "repro")
    assert first.returncode == 0, first.stderr
    assert sorted(workspace.ran()) == ["plain", "uses"]
    entry = lockfile.read(workspace.root / "gitpipe.lock").steps
    assert entry["uses"].environment == {"python": PYTHON, "packages": {"fakepkg": "1.0"}}
    assert entry["plain"].environment == {"python": PYTHON}  # json is the standard library

    install(venv, "2.0")
    status = gitpipe_in(venv, workspace.root, "status")
    assert "package changed: fakepkg 1.0 → 2.0" in status.stdout, status.stdout
    assert "plain" in status.stdout and "up to date" in status.stdout
    why = gitpipe_in(venv, workspace.root, "why", "uses")
    assert "package changed: fakepkg 1.0 → 2.0" in why.stdout, why.stdout + why.stderr
    again = gitpipe_in(venv, workspace.root, "repro")
    assert again.returncode == 0, again.stderr
    assert workspace.ran() == ["uses"]
    assert (workspace.root / "uses.txt").read_text() == "2.0"

    install(venv, "1.0")  # back: the stored result of 1.0 is restored, nothing runs
    back = gitpipe_in(venv, workspace.root, "repro")
    assert back.returncode == 0, back.stderr
    assert workspace.ran() == []
    assert (workspace.root / "uses.txt").read_text() == "1.0"


def test_environment_none_keeps_a_step_up_to_date_across_an_upgrade(workspace, venv):
    workspace.pipeline('[pipeline]\nenvironment = "none"\n' + PACKAGE_PIPELINE)
    workspace.write("uses.py", "import fakepkg\nopen('uses.txt', 'w').write('x')\n")
    workspace.write("plain.py", "open('plain.txt', 'w').write('y')\n")
    workspace.commit()
    install(venv, "1.0")
    assert gitpipe_in(venv, workspace.root, "repro").returncode == 0
    assert lockfile.read(workspace.root / "gitpipe.lock").steps["uses"].environment == {}
    install(venv, "2.0")
    status = gitpipe_in(venv, workspace.root, "status")
    assert "stale" not in status.stdout, status.stdout


def test_the_module_map_is_kept_until_a_distribution_changes(workspace, venv):
    _package_workspace(workspace)
    install(venv, "1.0")
    assert gitpipe_in(venv, workspace.root, "repro").returncode == 0
    cache = workspace.root / ".gitpipe" / "environment.json"
    kept = cache.read_bytes()
    (workspace.root / ".gitpipe" / "parsed").exists()
    os.utime(workspace.root / "uses.py")  # a new stamp: status keys again, map from cache
    assert gitpipe_in(venv, workspace.root, "status").returncode == 0
    assert cache.read_bytes() == kept
    install(venv, "2.0")
    assert gitpipe_in(venv, workspace.root, "status").returncode == 0
    assert cache.read_bytes() != kept


SHELL = """
[steps.shell]
cmd = "echo hi > out.txt"
outs = ["out.txt"]
"""


def test_a_command_step_has_no_environment_in_its_key(workspace):
    workspace.pipeline(SHELL)
    workspace.ok("repro")
    entry = lockfile.read(workspace.root / "gitpipe.lock").steps["shell"]
    assert entry.environment == {}
    assert "environment" not in (workspace.root / "gitpipe.lock").read_text()


def test_listed_commands_put_their_version_into_the_key(workspace):
    workspace.pipeline(
        SHELL.replace('outs = ["out.txt"]', 'outs = ["out.txt"]\nenvironment = ["git"]')
    )
    workspace.ok("repro")
    entry = lockfile.read(workspace.root / "gitpipe.lock").steps["shell"]
    version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    assert entry.environment == {"tools": {"git": version}}


def test_lockfile_mode_keys_the_lock_file_and_names_it_when_it_changes(workspace):
    workspace.pipeline('[pipeline]\nenvironment = "lockfile"\n' + SHELL)
    workspace.write("requirements.txt", "fakepkg==1.0\n")
    workspace.ok("repro")
    entry = lockfile.read(workspace.root / "gitpipe.lock").steps["shell"]
    assert list(entry.environment["lockfile"]) == ["requirements.txt"]
    workspace.write("requirements.txt", "fakepkg==2.0\n")
    why = workspace.gitpipe("why", "shell")
    assert "lockfile changed: requirements.txt" in why.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[pipeline]\nenvironment = "conda"\n' + SHELL,
            "at pipeline.environment: must be one of 'imports', 'lockfile', 'none', not 'conda'",
        ),
        (
            SHELL + "environment = 3\n",
            "at steps.shell.environment: must be one of 'imports', 'lockfile', 'none' "
            "or a list of commands, not an integer",
        ),
        (
            '[pipeline]\nenvironment = "lockfile"\n' + SHELL,
            "step 'shell' has environment = \"lockfile\" but no uv.lock, poetry.lock, "
            "pixi.lock, conda-lock.yml or requirements*.txt is at the repository's root",
        ),
        (
            SHELL + 'environment = ["no-such-tool-gitpipe"]\n',
            "environment command 'no-such-tool-gitpipe' of step 'shell' cannot start",
        ),
    ],
    ids=["unknown mode", "not a string", "lockfile without one", "command that cannot start"],
)
def test_a_bad_environment_is_one_line_exit_2_and_nothing_changes(workspace, text, message):
    workspace.pipeline(text)
    workspace.commit()
    before = snapshot(workspace.root)
    result = workspace.gitpipe("repro")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert snapshot(workspace.root) == before


def test_diff_names_the_environment_change_between_two_commits(workspace):
    workspace.pipeline('[pipeline]\nenvironment = "lockfile"\n' + SHELL)
    workspace.write("requirements.txt", "fakepkg==1.0\n")
    workspace.write(".gitignore", "out.txt\n")
    workspace.ok("repro")
    workspace.commit("one")
    workspace.write("requirements.txt", "fakepkg==2.0\n")
    workspace.ok("repro")
    workspace.commit("two")
    shown = workspace.ok("diff", "HEAD~1", "HEAD")
    assert "lockfile changed" in shown.stdout and "requirements.txt" in shown.stdout, shown.stdout
    as_json = workspace.ok("diff", "HEAD~1", "HEAD", "--json")
    assert '"change": "lockfile changed"' in as_json.stdout


def test_a_kept_no_op_status_answer_does_not_hide_an_upgrade(workspace, venv):
    _package_workspace(workspace)
    install(venv, "1.0")
    assert gitpipe_in(venv, workspace.root, "repro").returncode == 0
    time.sleep(1.1)  # out of the racy window: the answer is kept
    gitpipe_in(venv, workspace.root, "status")
    kept = list((workspace.root / ".gitpipe" / "parsed").glob("status-*.snapshot"))
    assert kept, "the first status keeps its answer"
    again = gitpipe_in(venv, workspace.root, "status")
    assert "stale" not in again.stdout, again.stdout
    install(venv, "2.0")
    status = gitpipe_in(venv, workspace.root, "status")
    assert "package changed: fakepkg 1.0 → 2.0" in status.stdout, status.stdout


def test_the_environment_enters_a_key_record_only_when_there_is_some():
    from gitpipe.identity.action import key_record
    from gitpipe.pipeline.spec import Step

    step = Step(name="s", cmd=("python s.py",))
    bare = key_record(step, deps={}, code={})
    assert "environment" not in bare.as_record()  # command steps keep their keys
    assert key_record(step, deps={}, code={}, environment={}).key == bare.key
    keyed = key_record(step, deps={}, code={}, environment={"python": "3.12"})
    assert keyed.as_record()["environment"] == {"python": "3.12"}
    assert keyed.key != bare.key
    other = key_record(
        step, deps={}, code={}, environment={"python": "3.12", "packages": {"fakepkg": "2.0"}}
    )
    assert other.key not in (bare.key, keyed.key)
