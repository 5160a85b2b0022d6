"""One description of a step workload, rendered for gitpipe, DVC, Snakemake and make.

A workload is a chain or a fan-out of N trivial steps. Step i (1..N) writes
`out/s{i}.txt` from one dependency: in a chain, the previous step's output (step 1
reads the tracked file `seed.txt`); in a fan-out, `seed.txt` itself. Every renderer
below reads only `Workload.steps()`, so the four tools run the same commands on the
same files, and an edit (`Workload.edited`) reaches all of them alike.

    chain:   seed.txt -> s1 -> s2 -> ... -> sN
    fan-out: seed.txt -> s1, s2, ..., sN
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Literal

Shape = Literal["chain", "fanout"]

SEED = "seed.txt"
SEED_TEXT = "seed\n"
OUT_DIR = "out"
#: the command of a step; `{dep}` and `{out}` are replaced by paths that need no quoting
COPY = "cp {dep} {out}"
#: a command that writes different bytes from the same dependency
EDITED = "(cat {dep}; echo edited) > {out}"


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    dep: str
    out: str
    cmd: str


@dataclass(frozen=True, slots=True)
class Workload:
    """`n` steps in the given shape; `edits` maps a step number to another template."""

    shape: Shape
    n: int
    template: str = COPY
    edits: dict[int, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.n:,}-step {'chain' if self.shape == 'chain' else 'fan-out'}"

    def edited(self, step: int, template: str = EDITED) -> Workload:
        """The same workload with step `step`'s command replaced."""
        return replace(self, edits={**self.edits, step: template})

    def steps(self) -> list[Step]:
        steps = []
        for i in range(1, self.n + 1):
            dep = SEED if self.shape == "fanout" or i == 1 else f"{OUT_DIR}/s{i - 1}.txt"
            out = f"{OUT_DIR}/s{i}.txt"
            cmd = self.edits.get(i, self.template).format(dep=dep, out=out)
            steps.append(Step(f"s{i}", dep, out, cmd))
        return steps

    def targets(self) -> list[str]:
        """The outputs nothing else reads: what `all` builds in Snakemake and make."""
        steps = self.steps()
        return [steps[-1].out] if self.shape == "chain" else [s.out for s in steps]


def common_files() -> dict[str, str]:
    """Files every tool's repository holds: the seed, and outputs kept out of Git."""
    return {SEED: SEED_TEXT, ".gitignore": f"/{OUT_DIR}/\n"}


def gitpipe_toml(work: Workload) -> str:
    parts = ['[pipeline]\nname = "bench"\n']
    for s in work.steps():
        parts.append(
            f"[steps.{s.name}]\ncmd = {json.dumps(s.cmd)}\n"
            f"deps = [{json.dumps(s.dep)}]\nouts = [{json.dumps(s.out)}]\n"
        )
    return "\n".join(parts)


def dvc_yaml(work: Workload) -> str:
    # JSON strings are valid YAML scalars, so no YAML library is needed
    lines = ["stages:"]
    for s in work.steps():
        lines += [
            f"  {s.name}:",
            f"    cmd: {json.dumps(s.cmd)}",
            f"    deps: [{json.dumps(s.dep)}]",
            f"    outs: [{json.dumps(s.out)}]",
        ]
    return "\n".join(lines) + "\n"


def snakefile(work: Workload) -> str:
    """One rule per step (as each step is its own stage in DVC and target in make)."""

    def quoted(text: str) -> str:  # Snakemake formats shell commands: double the braces
        return json.dumps(text.replace("{", "{{").replace("}", "}}"))

    targets = ", ".join(json.dumps(t) for t in work.targets())
    parts = [f"rule all:\n    input: [{targets}]\n"]
    for s in work.steps():
        parts.append(
            f"rule {s.name}:\n    input: {json.dumps(s.dep)}\n"
            f"    output: {json.dumps(s.out)}\n    shell: {quoted(s.cmd)}\n"
        )
    return "\n".join(parts)


def makefile(work: Workload) -> str:
    def recipe(cmd: str) -> str:
        return cmd.replace("$", "$$")

    parts = [".SUFFIXES:", "all: " + " ".join(work.targets()), ".PHONY: all", ""]
    for s in work.steps():
        parts += [f"{s.out}: {s.dep}", f"\t@{recipe(s.cmd)}"]
    return "\n".join(parts) + "\n"


def shell_script(work: Workload) -> str:
    """The bare commands, in order: the floor that no tool can go under."""
    return "set -e\n" + "\n".join(s.cmd for s in work.steps()) + "\n"
