"""The tools compared: gitpipe and its peers DVC, Snakemake and GNU make.

Each `Tool` knows how to lay a `Workload` into a Git repository, and which command
line is its full `repro`, its no-op `status` and its no-op `repro`:

| tool      | status              | repro                | forget results                  |
| --------- | ------------------- | -------------------- | ------------------------------- |
| gitpipe   | `gitpipe status`    | `gitpipe repro -q`   | `.gitpipe/`, `gitpipe.lock`     |
| DVC       | `dvc status`        | `dvc repro -q`       | `.dvc/cache`, `dvc.lock`        |
| Snakemake | `snakemake -n -c1`  | `snakemake -c1`      | `.snakemake/`                   |
| make      | `make -q`           | `make`               | (nothing but the outputs)       |

The peers' programs are looked up in `$GITPIPE_PEERS_BIN` (a `:`-separated list of
folders; default `/work/peers/bin`, where `pip install dvc snakemake` put them on the
project's machines), then on `PATH`. A peer that is not found is reported as
"not installed", and so is every peer under `--no-peers`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import workloads
from timing import Sample, discard, run
from workloads import Workload

DEFAULT_PEERS_BIN = "/work/peers/bin"
NOT_INSTALLED = "not installed"
#: without PYTHONDONTWRITEBYTECODE (set on some machines): Python writes and reads its
#: bytecode cache, as an installed gitpipe (and the peers, installed by pip) have it;
#: with it, every gitpipe command of a source checkout compiles its modules again
#: (0.1-0.3 s, more than a no-op command's whole work)
ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "CI": "true",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "b@b",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "b@b",
    "DVC_NO_ANALYTICS": "1",
    "DVC_NO_UPDATE_CHECK": "1",
}


def find_program(name: str, *, search_peers: bool = True) -> str | None:
    """The program `name` in the peers' folders, then on PATH; None if absent."""
    if not search_peers:
        return None
    folders = os.environ.get("GITPIPE_PEERS_BIN", DEFAULT_PEERS_BIN).split(os.pathsep)
    folders += os.environ.get("PATH", "").split(os.pathsep)
    for folder in folders:
        path = Path(folder) / name
        if folder and path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def failure(sample: Sample, timeout: float | None = None) -> str:
    """Why a command failed, in a few words for the table."""
    if sample.timed_out:
        return f"timed out after {timeout:g} s" if timeout else "timed out"
    text = sample.stdout + sample.stderr
    if "RecursionError" in text or "maximum recursion depth" in text:
        return "fails (RecursionError)"
    return f"fails (exit {sample.returncode})"


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, env=ENV, check=True, capture_output=True)


def new_repo(root: Path, files: Mapping[str, str]) -> Path:
    """A Git repository holding `files`, committed."""
    root.mkdir(parents=True)
    git(root, "init", "-q")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "workload")
    return root


@dataclass
class Tool:
    """A pipeline tool driven through its command line. Subclasses fill in the parts."""

    name: str
    program: str | None  # the absolute path of its executable, None if not installed

    @property
    def installed(self) -> bool:
        return self.program is not None

    def version(self) -> str:
        if self.program is None:
            return NOT_INSTALLED
        done = subprocess.run(
            [self.program, "--version"], env=ENV, capture_output=True, text=True, check=False
        )
        return (done.stdout or done.stderr).strip().splitlines()[0]

    # -- laying out a workload -------------------------------------------------------
    def create(self, root: Path, work: Workload) -> Path:
        """A fresh Git repository with the workload in this tool's format."""
        new_repo(root, workloads.common_files())
        self.init(root)
        self.write(root, work)
        git(root, "add", "-A")
        git(root, "commit", "-qm", f"{self.name} pipeline")
        (root / workloads.OUT_DIR).mkdir(exist_ok=True)
        return root

    def init(self, root: Path) -> None:
        """Set up the tool's own state in a new repository."""

    def write(self, root: Path, work: Workload) -> None:
        raise NotImplementedError

    def reset(self, root: Path) -> None:
        """Forget every result: outputs and the tool's records of them."""
        discard(root / workloads.OUT_DIR)
        (root / workloads.OUT_DIR).mkdir()

    def populate(self, root: Path, work: Workload, *, timeout: float | None) -> Sample:
        """Bring the workload up to date by the cheapest means the tool allows."""
        return run(self.full(), root, env=ENV, timeout=timeout)

    def run_bare(self, root: Path, work: Workload, *, timeout: float | None) -> Sample:
        """Run the workload's commands in order with `sh`, without the tool."""
        script = root.parent / f"{root.name}-bare.sh"
        script.write_text(workloads.shell_script(work))
        return run(["sh", str(script)], root, env=ENV, timeout=timeout)

    # -- the commands timed ----------------------------------------------------------
    def full(self) -> list[str]:
        raise NotImplementedError

    def status(self) -> list[str]:
        raise NotImplementedError

    def noop(self) -> list[str]:
        return self.full()


class Gitpipe(Tool):
    def write(self, root: Path, work: Workload) -> None:
        (root / "gitpipe.toml").write_text(workloads.gitpipe_toml(work))

    def reset(self, root: Path) -> None:
        super().reset(root)
        discard(root / ".gitpipe")
        discard(root / "gitpipe.lock")

    def full(self) -> list[str]:
        return [str(self.program), "repro", "-q"]

    def status(self) -> list[str]:
        return [str(self.program), "status"]


class Dvc(Tool):
    def init(self, root: Path) -> None:
        assert self.program
        subprocess.run([self.program, "init", "-q"], cwd=root, env=ENV, check=True)
        # keep DVC's per-repository state (its stat cache) inside the temporary folder
        site = root / ".dvc" / "tmp" / "site"
        subprocess.run(
            [self.program, "config", "--local", "core.site_cache_dir", str(site)],
            cwd=root,
            env=ENV,
            check=True,
        )

    def write(self, root: Path, work: Workload) -> None:
        (root / "dvc.yaml").write_text(workloads.dvc_yaml(work))

    def reset(self, root: Path) -> None:
        super().reset(root)
        discard(root / ".dvc" / "cache")  # run cache included
        discard(root / ".dvc" / "tmp")
        discard(root / "dvc.lock")

    def populate(self, root: Path, work: Workload, *, timeout: float | None) -> Sample:
        """Run the bare commands, then `dvc commit`: DVC's full repro takes minutes."""
        done = self.run_bare(root, work, timeout=timeout)
        if not done.ok:
            return done
        return run([str(self.program), "commit", "-f", "-q"], root, env=ENV, timeout=timeout)

    def full(self) -> list[str]:
        return [str(self.program), "repro", "-q"]

    def status(self) -> list[str]:
        return [str(self.program), "status", "-q"]


class Snakemake(Tool):
    def write(self, root: Path, work: Workload) -> None:
        (root / "Snakefile").write_text(workloads.snakefile(work))

    def populate(self, root: Path, work: Workload, *, timeout: float | None) -> Sample:
        """The bare commands in order: Snakemake then finds every output up to date."""
        return self.run_bare(root, work, timeout=timeout)

    def reset(self, root: Path) -> None:
        super().reset(root)
        discard(root / ".snakemake")

    def full(self) -> list[str]:
        return [str(self.program), "-c1", "--quiet"]

    def status(self) -> list[str]:
        return [str(self.program), "-n", "-c1", "--quiet"]


class Make(Tool):
    def write(self, root: Path, work: Workload) -> None:
        (root / "Makefile").write_text(workloads.makefile(work))

    def full(self) -> list[str]:
        return [str(self.program), "-s"]

    def status(self) -> list[str]:
        return [str(self.program), "-q"]


PEER_NAMES = ("DVC", "Snakemake", "make")


def gitpipe_tool() -> Gitpipe:
    return Gitpipe("gitpipe", str(Path(sys.executable).parent / "gitpipe"))


def peer_tools(*, enabled: bool = True) -> dict[str, Tool]:
    """DVC, Snakemake and make, each with its program or None."""
    return {
        "DVC": Dvc("DVC", find_program("dvc", search_peers=enabled)),
        "Snakemake": Snakemake("Snakemake", find_program("snakemake", search_peers=enabled)),
        "make": Make("make", find_program("make", search_peers=enabled)),
    }
