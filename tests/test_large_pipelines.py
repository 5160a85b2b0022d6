"""Issue 24: reading a 100,000-step pipeline (the `status` of one never run) and the
first `status` after a large `repro` cost less, and decide the same.

What made them cheaper is pinned here: a step's absent fields take their defaults
without their checks (the checks of those it writes still run, in the same order);
the TOML keys of outputs are made only for an error; frozen dataclasses made by
setting their slots (gitpipe/core/slotted.py); the collector paused while the
pipeline is built (gitpipe/core/collector.py); the guard's paths cut by slicing.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Workspace, refused

from gitpipe.core import collector
from gitpipe.core.slotted import init_by_slots, pickled_by_slots
from gitpipe.pipeline import spec
from gitpipe.pipeline.model import PathSpec, Step, Template, out_key, out_places
from gitpipe.run.guard import _relative

ROOT = Path(__file__).resolve().parents[1]


def parsed(text: str, tmp_path: Path) -> spec.Pipeline:
    return spec.parse(textwrap.dedent(text), file=tmp_path / "gitpipe.toml")


def test_a_step_that_writes_no_optional_field_takes_the_defaults_and_the_pipelines(
    tmp_path: Path,
) -> None:
    pipeline = parsed(
        """
        [pipeline]
        code_digest = "bytes"
        link = "hardlink"
        environment = "none"
        [steps.plain]
        cmd = "cp a b"
        deps = ["a"]
        outs = ["b"]
        [steps.written]
        cmd = "cp b c"
        deps = ["b"]
        outs = ["c"]
        always = true
        cache = false
        persist = true
        frozen = true
        desc = "about"
        retries = 3
        code_digest = "ast"
        link = "copy"
        approval = true
        environment = ["git"]
        deterministic = false
        """,
        tmp_path,
    )
    plain, written = pipeline.steps["plain"], pipeline.steps["written"]
    assert (plain.code_digest, plain.link, plain.environment) == ("bytes", "hardlink", "none")
    assert (plain.always, plain.cache, plain.persist, plain.frozen, plain.approval) == (
        False,
        True,
        False,
        False,
        False,
    )
    assert (plain.desc, plain.retries, plain.deterministic, plain.wdir) == ("", 1, True, ".")
    assert (plain.params, plain.env, plain.resources, plain.code, plain.after) == (
        {},
        {},
        {},
        (),
        (),
    )
    assert plain.template == Template(cmd=("cp a b",), env={}, wdir=".")
    assert (written.always, written.cache, written.persist, written.frozen) == (
        True,
        False,
        True,
        True,
    )
    assert (written.desc, written.retries, written.code_digest, written.link) == (
        "about",
        3,
        "ast",
        "copy",
    )
    assert (written.approval, written.environment, written.deterministic) == (
        True,
        ("git",),
        False,
    )


def test_of_two_wrong_fields_the_first_in_field_order_is_named(workspace: Workspace) -> None:
    workspace.pipeline(
        """
        [steps.s]
        cmd = "true"
        deterministic = "no"
        link = "nope"
        always = 1
        """
    )
    workspace.commit("pipeline")
    refused(workspace, "status", says=("steps.s.always", "must be true or false"))
    workspace.pipeline('[steps.s]\ncmd = "true"\ndeterministic = "no"\nlink = "nope"\n')
    refused(workspace, "status", says=("steps.s.link", "'nope'"))


def test_an_empty_single_command_is_still_refused(workspace: Workspace) -> None:
    workspace.pipeline('[steps.s]\ncmd = "  "\n')
    workspace.commit("pipeline")
    refused(workspace, "status", says=("steps.s.cmd", "a command must not be empty"))


def test_out_key_names_each_output_as_out_places_does(tmp_path: Path) -> None:
    pipeline = parsed(
        """
        [steps.s]
        cmd = "true"
        outs = ["a", "b/"]
        metrics = ["m.json"]
        plots = ["p.csv", "q.csv"]
        """,
        tmp_path,
    )
    step = pipeline.steps["s"]
    keys = [key for _, key in out_places(step)]
    assert keys == [out_key(step, i) for i in range(len(step.all_outs))]
    assert keys[-1] == "steps.s.plots[1]"
    with pytest.raises(IndexError):
        out_key(step, len(step.all_outs))


def test_overlapping_and_protected_outputs_are_named_by_their_keys(workspace: Workspace) -> None:
    workspace.pipeline(
        '[steps.a]\ncmd = "true"\nouts = ["x", "out/"]\n'
        '[steps.b]\ncmd = "true"\nmetrics = ["m.json"]\nouts = ["out/inner.txt"]\n'
    )
    workspace.commit("pipeline")
    refused(workspace, "status", says=("steps.b.outs[0]", "overlapping outputs"))
    workspace.pipeline('[steps.a]\ncmd = "true"\nouts = ["x"]\nmetrics = ["sub/.GIT/m.json"]\n')
    refused(workspace, "status", says=("steps.a.metrics[0]", "lies inside .GIT"))


@pytest.mark.parametrize(
    "real",
    [
        "/r/top/a/b.txt",
        "/r/top/.git",
        "/r/top/a/.gitpipe/x",
        "/r/top/a/./b",
        "/r/top/a/../b",
        "/r/top/a//b",
        "/r/top/a/",
        "/r/top",
        "/r/top/",
        "/r/topper/a",
        "/r/other",
    ],
)
def test_the_guard_cuts_a_path_as_relpath_would(real: str) -> None:
    assert _relative(real, "/r/top", "/r/top/") == os.path.relpath(real, "/r/top")


def test_a_step_made_by_its_slots_is_the_frozen_dataclass_it_was() -> None:
    step = Step("s", ("true",), outs=(PathSpec("out.txt"),))
    other = Step(name="s", cmd=("true",), outs=(PathSpec("out.txt", False),))
    assert step == other and hash(step.outs) == hash(other.outs)
    assert step.params == {} and step.params is not other.params  # a new dict each
    assert step.template == Template() and step.template is not other.template
    assert (step.cache, step.retries, step.link, step.environment) == (True, 1, "copy", "imports")
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.name = "t"  # type: ignore[misc]
    assert dataclasses.replace(step, name="t").name == "t"
    assert pickle.loads(pickle.dumps(step)) == step
    with pytest.raises(TypeError, match="required positional argument: 'cmd'"):
        Step("s")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        Step("s", ("true",), nope=1)  # type: ignore[call-arg]


def test_init_by_slots_refuses_a_class_it_would_get_wrong() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            raise AssertionError("never skipped")

    @dataclasses.dataclass(frozen=True, slots=True)
    class Hidden:
        value: int = dataclasses.field(init=False, default=0)

    for cls in (Checked, Hidden):
        with pytest.raises(TypeError, match="plain __init__ methods only"):
            init_by_slots(cls)

    @init_by_slots
    @pickled_by_slots
    @dataclasses.dataclass(frozen=True, slots=True)
    class Pair:
        left: int
        right: list[int] = dataclasses.field(default_factory=list)

    assert Pair(1) == Pair(left=1, right=[]) and Pair(1).right is not Pair(1).right
    copy = object.__new__(Pair)
    copy.__setstate__(Pair(1, [2]).__getstate__())  # what pickle calls
    assert copy == Pair(1, [2])


def test_a_class_of_many_fields_is_set_through_its_twin_and_is_itself_after() -> None:
    def failing() -> list[int]:
        raise ValueError("no default")

    @init_by_slots
    @dataclasses.dataclass(frozen=True, slots=True)
    class Wide:
        a: int
        b: int = 2
        c: int = 3
        d: int = 4
        e: int = 5
        f: int = 6
        g: int = 7
        h: list[int] = dataclasses.field(default_factory=list)
        i: list[int] = dataclasses.field(default_factory=failing)

    wide = Wide(1, i=[9])
    assert type(wide) is Wide and wide == Wide(1, 2, 3, 4, 5, 6, 7, [], [9])
    assert (wide.a, wide.g, wide.h, wide.i) == (1, 7, [], [9])
    with pytest.raises(dataclasses.FrozenInstanceError):
        wide.a = 0  # type: ignore[misc]
    made: list[Wide] = []

    class Kept(Wide):
        __slots__ = ("extra",)

        def __init__(self, *args: object, **kwargs: object) -> None:
            made.append(self)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="no default"):
        Kept(1)  # a raising default leaves the object what it was made as
    assert type(made[0]) is Kept and made[0].a == 1
    kept = Kept(1, i=[])
    assert type(kept) is Kept and (kept.a, kept.h) == (1, [])


def test_the_collector_is_paused_while_a_pipeline_is_built_and_left_as_it_was(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gitpipe

    workspace.write("data.txt", "x\n")
    workspace.pipeline(
        '[steps.s]\ncmd = "cp data.txt out.txt"\ndeps = ["data.txt"]\nouts = ["out.txt"]\n'
    )
    workspace.commit("pipeline")
    seen: list[bool] = []
    real_parse = spec.parse_data

    def watched(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(spec, "parse_data", watched)
    frozen = gc.get_freeze_count()
    assert gc.isenabled()
    project = gitpipe.Project.open(workspace.root)
    assert [s.step for s in project.status()] == ["s"]
    assert seen == [False]  # paused while it was read
    assert gc.isenabled() and gc.get_freeze_count() == frozen  # a library freezes nothing
    gc.disable()
    try:
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # stopped by its caller: left stopped
    finally:
        gc.enable()


def test_the_console_script_freezes_what_the_paused_collector_built() -> None:
    code = textwrap.dedent(
        """
        import gc
        from gitpipe.core import collector
        with collector.paused():
            built = [[i] for i in range(1000)]
        print(gc.isenabled(), gc.get_freeze_count())
        collector.for_command()
        with collector.paused():
            more = [[i] for i in range(1000)]
        print(gc.isenabled(), gc.get_freeze_count() >= 2000)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    assert done.stdout.split() == ["True", "0", "True", "True"]


def test_the_report_judges_the_two_status_targets_on_their_medians(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import report
    from timing import Row

    def row(key: str, median: float, rss: float) -> Row:
        return Row(key, "s", median, median, median, 3, "", {"max_rss_mib": rss}, key=key)

    rows = [
        row("scaling/status-never/100000", 3.9, 400),
        row("scaling/status-first/10000", 1.01, 90),
        row("scaling/status-never/10000", 9.0, 90),  # no target at this size
    ]
    report.judge(rows, plan=None)  # type: ignore[arg-type]
    assert [r.met for r in rows] == [True, False, None]
    assert "≤ 4 s" in rows[0].target and "1 GiB" in rows[0].target
    assert "≤ 1.0 s" in rows[1].target
    rows = [row("scaling/status-never/100000", 3.9, 1100)]
    report.judge(rows, plan=None)  # type: ignore[arg-type]
    assert rows[0].met is False
