"""`gitpipe report`: one self-contained HTML page, written where asked, through the CLI
on real repositories; its drawings and the `plots` step field."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import CHAIN, GITPIPE_SCRIPT, Workspace, lock_steps, refused, snapshot

from gitpipe.workspace.report_html import ReportData, StepView, render
from gitpipe.workspace.report_svg import NODE_H, NODE_W, Node, layout

#: markup that must come out as text wherever a pipeline puts it
EVIL = "<img src=x onerror=alert(1)></script><script>alert(2)</script>"


def tiny_png() -> bytes:
    """A valid 1x1 PNG, made here."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xe6\x9f\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def chain(workspace: Workspace) -> None:
    workspace.write(".gitignore", "*.txt\n!data/*.txt\n/out/\n")
    workspace.write("data/raw.txt", "hello\n")
    workspace.pipeline(CHAIN)
    workspace.ok("repro")
    workspace.commit("the chain")


def page(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def embedded(text: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text)
    assert match is not None
    return json.loads(match.group(1))


def assert_self_contained(text: str) -> None:
    """No address the browser would fetch: every src/href is data: or a #fragment."""
    assert "http://" not in text and "https://" not in text
    for attribute in re.findall(r'(?:src|href)="([^"]*)"', text):
        assert attribute.startswith(("data:", "#")), attribute
    assert "default-src 'none'" in text  # the Content-Security-Policy


def test_the_report_is_written_where_asked_and_names_every_step(workspace):
    chain(workspace)
    workspace.root.joinpath("out").mkdir()
    result = workspace.ok("report", "-o", "out/report.html")
    target = workspace.root / "out" / "report.html"
    assert f"wrote {target}" in result.stdout
    text = page(target)
    assert_self_contained(text)
    for step in ("first", "second", "third"):
        assert f'data-step="{step}"' in text
    data = embedded(text)
    assert data["steps"]["second"]["parents"] == ["first"]
    assert data["steps"]["first"]["state"] == "up-to-date"
    outs = {o["path"]: o for o in data["steps"]["first"]["outputs"]}
    assert outs["first.txt"]["digest"] == lock_steps(workspace)["first"]["outs"]["first.txt"]
    assert outs["first.txt"]["size"] == len("HELLO\n")
    parts = {(p["kind"], p["name"]): p for p in data["steps"]["first"]["parts"]}
    assert parts[("dep", "data/raw.txt")]["change"] == "same"
    assert parts[("command", "")]["value"] == "tr a-z A-Z < data/raw.txt > first.txt"
    assert text.count('class="bar ') == 3  # the timeline of the run: three steps ran


def test_without_o_the_report_goes_into_gitpipes_folder_and_nothing_else_changes(workspace):
    chain(workspace)
    before = snapshot(workspace.root)
    workspace.ok("report")
    after = snapshot(workspace.root)
    written = workspace.root / ".gitpipe" / "report.html"
    assert is_report_page(written)
    # the one new file, and its folder's mtime with it; reading the metrics across
    # versions may leave the versions cache beside it (gitpipe's own state)
    mine = (".gitpipe/report.html", ".gitpipe", ".gitpipe/versions.db")
    assert {k: v for k, v in after.items() if k not in mine} == {
        k: v for k, v in before.items() if k != ".gitpipe"
    }


def is_report_page(path: Path) -> bool:
    return path.is_file() and '<meta name="generator" content="gitpipe report">' in page(path)


def test_the_report_shows_what_changed_since_the_lock_and_the_failure_of_the_last_run(workspace):
    chain(workspace)
    workspace.write("data/raw.txt", "changed\n")
    workspace.write("gitpipe.toml", CHAIN.replace('cmd = "rev', 'cmd = "false && rev'))
    assert workspace.gitpipe("repro").exit_code == 1
    workspace.ok("report", "-o", "r.html")
    data = embedded(page(workspace.root / "r.html"))
    steps = data["steps"]
    assert steps["first"]["state"] == "up-to-date"
    assert steps["second"]["state"] == "failed"
    assert steps["second"]["last_state"] == "failed"
    assert steps["third"]["state"] in ("stale", "skipped")
    command = next(p for p in steps["second"]["parts"] if p["kind"] == "command")
    assert command["change"] == "changed"
    assert "dep changed: first.txt" in steps["second"]["reasons"]


def test_markup_in_descriptions_commands_params_and_logs_is_shown_as_text(workspace):
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(
        f"""
        [params]
        label = {json.dumps(EVIL)}

        [steps.loud]
        desc = {json.dumps(EVIL)}
        cmd = "printf '%s' '${{params.label}}' > loud.txt; printf '%s' '${{params.label}}'"
        outs = ["loud.txt"]
        """
    )
    workspace.ok("repro")
    workspace.ok("report", "-o", "r.html")
    text = page(workspace.root / "r.html")
    assert "<img src=x" not in text
    assert "<script>alert" not in text
    assert text.count("<script") == 2  # the JSON data and the page's own script
    data = embedded(text)
    assert data["steps"]["loud"]["desc"] == EVIL
    assert EVIL in data["steps"]["loud"]["log_tail"]
    assert_self_contained(text)


def test_a_matrix_step_is_one_box_standing_for_its_expansions(workspace):
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(
        """
        [steps.prep]
        cmd = "echo data > data.txt"
        outs = ["data.txt"]

        [steps.fit]
        matrix = { lr = [1, 2, 3] }
        cmd = "cat data.txt > fit-${matrix.lr}.txt"
        deps = ["data.txt"]
        outs = ["fit-${matrix.lr}.txt"]

        [steps.pick]
        cmd = "cat fit-*.txt > pick.txt"
        deps = ["fit-1.txt", "fit-2.txt", "fit-3.txt"]
        outs = ["pick.txt"]
        """
    )
    workspace.ok("report", "-o", "r.html")
    text = page(workspace.root / "r.html")
    grouped = text.split('id="dag-grouped"', 1)[1].split("</svg>", 1)[0]
    assert 'data-group="fit" data-members="3"' in grouped
    assert 'data-step="fit@' not in grouped
    assert grouped.count('class="edge"') == 2  # prep -> fit -> pick
    every = text.split('id="dag-all"', 1)[1].split("</svg>", 1)[0]
    for name in ("prep", "fit@1", "fit@2", "fit@3", "pick"):
        assert f'data-step="{name}"' in every
    assert embedded(text)["groups"] == {"fit": ["fit@1", "fit@2", "fit@3"]}


def test_plots_files_are_drawn_as_line_charts(workspace):
    workspace.write(".gitignore", "/curve.csv\n/curve.json\n/broken.json\n")
    workspace.write(
        "src/curves.py",
        """
        import json
        with open("curve.csv", "w") as f:
            f.write("epoch,loss,acc\\n")
            for i in range(5):
                f.write(f"{i},{1 / (i + 1)},{i / 5}\\n")
        with open("curve.json", "w") as f:
            json.dump({"points": [{"x": i, "y": i * i} for i in range(4)]}, f)
        with open("broken.json", "w") as f:
            f.write("{not json")
        """,
    )
    workspace.pipeline(
        """
        [steps.curves]
        cmd = "python3 src/curves.py"
        plots = ["curve.csv", "curve.json", "broken.json"]
        """
    )
    workspace.ok("repro")
    assert set(lock_steps(workspace)["curves"]["outs"]) == {
        "curve.csv",
        "curve.json",
        "broken.json",
    }
    workspace.ok("report", "-o", "r.html")
    text = page(workspace.root / "r.html")
    csv_plot = text.split('data-path="curve.csv"', 1)[1].split("</figure>", 1)[0]
    assert csv_plot.count("<polyline") == 2  # loss and acc against epoch
    assert csv_plot.count('class="point"') == 10
    assert 'data-series="loss"' in csv_plot and ">epoch</text>" in csv_plot
    json_plot = text.split('data-path="curve.json"', 1)[1].split("</figure>", 1)[0]
    assert json_plot.count('class="point"') == 4
    assert "broken.json" in text and "cannot be drawn: not valid JSON" in text


def test_a_declared_plots_file_is_an_output_the_step_must_write(workspace):
    workspace.write(".gitignore", "*.csv\n")
    workspace.pipeline(
        """
        [steps.draw]
        cmd = "true"
        plots = ["curve.csv"]
        """
    )
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1
    assert "did not produce its declared output curve.csv" in result.stderr


def test_a_plots_entry_must_be_a_file(workspace):
    workspace.pipeline('[steps.draw]\ncmd = "true"\nplots = ["curves/"]\n')
    refused(workspace, "status", says=("a plots file cannot be a folder", "steps.draw.plots"))


def test_adding_a_plots_file_changes_only_that_steps_key(workspace):
    chain(workspace)
    keys = {name: entry["key"] for name, entry in lock_steps(workspace).items()}
    workspace.write(
        "gitpipe.toml",
        CHAIN.replace(
            'outs = ["third.txt"]', 'outs = ["third.txt"]\nplots = ["third.csv"]'
        ).replace("> third.txt", "> third.txt; echo x,y > third.csv"),
    )
    workspace.write(".gitignore", "*.txt\n!data/*.txt\n*.csv\n")
    workspace.ok("repro")
    assert workspace.ran() == ["third"]
    after = {name: entry["key"] for name, entry in lock_steps(workspace).items()}
    assert after["first"] == keys["first"] and after["second"] == keys["second"]
    assert after["third"] != keys["third"]


def test_png_and_svg_outputs_are_put_in_the_page(workspace):
    workspace.write(".gitignore", "/figures/\n")
    png = tiny_png()
    workspace.write(
        "src/draw.py",
        f"""
        import os
        os.makedirs("figures", exist_ok=True)
        open("figures/dot.png", "wb").write({png!r})
        svg = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
        open("figures/box.svg", "w").write(svg)
        """,
    )
    workspace.pipeline(
        """
        [steps.draw]
        cmd = "python3 src/draw.py"
        outs = ["figures/dot.png", "figures/box.svg"]
        """
    )
    workspace.ok("repro")
    workspace.ok("report", "-o", "r.html")
    text = page(workspace.root / "r.html")
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in text
    assert 'src="data:image/svg+xml;base64,' in text
    # the image's own namespace is inside base64: the page itself names no address
    assert_self_contained(text)


def test_a_run_of_a_200_step_pipeline_is_drawn_with_no_box_over_another(workspace):
    lines = ['[steps.s0]\ncmd = "true"\n']
    for i in range(1, 200):
        after = [f"s{j}" for j in (i // 2, i - 1, (i * 7) % i) if j < i]
        lines.append(f'[steps.s{i}]\ncmd = "true"\nafter = {json.dumps(sorted(set(after)))}\n')
    workspace.pipeline("\n".join(lines))
    workspace.ok("report", "-o", "r.html")
    text = page(workspace.root / "r.html")
    boxes = re.findall(r'data-step="(s\d+)"[^>]*transform="translate\((\d+),(\d+)\)"', text)
    assert len(boxes) == 200
    spots = {(int(x), int(y)) for _, x, y in boxes}
    assert len(spots) == 200
    x_of = {name: int(x) for name, x, _ in boxes}
    data = embedded(text)
    for name, step in data["steps"].items():
        assert all(x_of[parent] < x_of[name] for parent in step["parents"])


def test_layout_puts_parents_in_earlier_columns_and_keeps_boxes_apart():
    names = [f"n{i}" for i in range(30)]
    parents = {f"n{i}": [f"n{j}" for j in range(i) if (i * j) % 7 == 1] for i in range(30)}
    nodes = [Node(n, n, "stale", "!") for n in names]
    placed, width, height = layout(nodes, parents)
    at = {p.node.id: p for p in placed}
    for child, ps in parents.items():
        for parent in ps:
            assert at[parent].x + NODE_W < at[child].x
    for a in placed:
        for b in placed:
            if a is not b and a.x == b.x:
                assert abs(a.y - b.y) >= NODE_H
    assert all(p.x + NODE_W <= width and p.y + NODE_H <= height for p in placed)


# -- metrics across versions and experiments: the shapes Project gives (exp branch) ---


@dataclass(frozen=True)
class VersionMetrics:
    version: str
    commit: str | None
    time: float
    subject: str
    metrics: dict[str, dict[str, float]]


@dataclass(frozen=True)
class Experiment:
    id: str
    time: float
    overrides: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    state: str
    extra: dict[str, Any] = field(default_factory=dict)


def history(n: int) -> list[VersionMetrics]:
    return [
        VersionMetrics(
            f"1.{i}.0" if i < n - 1 else "",
            f"{i:040x}" if i < n - 1 else None,
            1_700_000_000.0 + i,
            f"commit {i}",
            {"evaluate": {"r2": 0.5 + i / 100, "rmse": 3.0 - i / 10}},
        )
        for i in range(n)
    ]


def test_metrics_across_versions_have_one_point_per_version_and_experiments_a_row_each():
    data = ReportData("demo", (StepView("a", "up-to-date", "up to date"),))
    experiments = [
        Experiment(
            f"exp-{i}", 1_700_000_000.0 + i, {"train.l2": i}, {"evaluate": {"r2": i / 10}}, "done"
        )
        for i in range(3)
    ]
    text = render(data, history=history(7), experiments=experiments)
    charts = re.findall(r'<figure class="metric">(.*?)</figure>', text)
    assert len(charts) == 2  # r2 and rmse of evaluate
    assert all(chart.count('class="point"') == 7 for chart in charts)
    assert "evaluate: r2" in text and "1.0.0" in text and "workspace" in text
    rows = re.findall(r"<tr><td>(exp-\d)</td>", text)
    assert rows == ["exp-0", "exp-1", "exp-2"]
    assert "train.l2=2" in text


def test_a_version_missing_a_metric_leaves_a_gap_not_a_zero():
    points = history(3)
    points[1] = VersionMetrics("1.1.0", "c" * 40, 1.0, "s", {"evaluate": {"r2": 0.7}})
    text = render(ReportData("demo", ()), history=points)
    rmse = next(
        c for c in re.findall(r'<figure class="metric">(.*?)</figure>', text) if "rmse" in c
    )
    assert rmse.count('class="point"') == 2


# -- where a report may not go: refused, nothing on disk changed -----------------------


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("missing/r.html", "the folder"),
        ("data", "is a folder"),
        ("gitpipe.lock", "the pipeline's lock file"),
        ("gitpipe.toml", "the pipeline file gitpipe.toml"),
        (".git/r.html", ".git, Git's own folder"),
        ("second.txt", "is an output of step second"),
        ("data/raw.txt", "is not a gitpipe report"),
    ],
)
def test_a_report_is_refused_where_it_would_replace_something_else(workspace, where, says):
    chain(workspace)
    refused(workspace, "report", "-o", where, says=(f"-o {where}", says))


def test_a_report_replaces_the_report_it_wrote_before(workspace):
    chain(workspace)
    workspace.ok("report", "-o", "r.html")
    workspace.write("data/raw.txt", "other\n")
    workspace.ok("report", "-o", "r.html")
    assert embedded(page(workspace.root / "r.html"))["steps"]["first"]["state"] != "up-to-date"


def test_open_hands_the_written_page_to_the_browser_named_by_BROWSER(workspace, tmp_path):
    chain(workspace)
    seen = tmp_path / "seen.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {seen}\n')
    browser.chmod(0o755)
    env = {**os.environ, "BROWSER": f"{browser} %s", "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [str(GITPIPE_SCRIPT), "report", "-o", "r.html", "--open"],
        cwd=workspace.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert seen.read_text() == (workspace.root / "r.html").as_uri()


def test_the_page_is_the_same_escaped_text_the_steps_hold():
    evil_step = StepView("a", "stale", "run", reasons=(EVIL,), desc=EVIL)
    text = render(ReportData(EVIL, (evil_step,)))
    assert f"<h1>{html.escape(EVIL)}</h1>" in text
    assert "<img" not in text
    assert embedded(text)["steps"]["a"]["reasons"] == [EVIL]


@pytest.mark.benchmark
def test_the_report_benchmark_meets_its_targets_in_quick_mode():
    """benchmarks/report_page.py --quick: 500 steps, 50 versions, 20 experiments in at
    most 2 s and 2 MB (it exits 1 past either)."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "report_page.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "report of 500 steps, 50 versions, 20 experiments" in done.stdout


SCORED = """
[params]
rate = 1

[steps.score]
cmd = "python3 score.py ${params.rate}"
metrics = ["m.json"]
"""


def test_the_report_draws_the_projects_own_versions_and_experiments(workspace):
    workspace.write(".gitignore", "m.json\n/out/\n")
    workspace.write(
        "score.py",
        "import json, sys\njson.dump({'acc': int(sys.argv[1]) / 10}, open('m.json', 'w'))\n",
    )
    for rate in (1, 2, 3):
        workspace.pipeline(SCORED.replace("rate = 1", f"rate = {rate}"))
        workspace.ok("repro")
        workspace.commit(f"rate {rate}")
    workspace.ok("repro", "-p", "rate=7")  # an experiment: the lock keeps rate = 3
    workspace.root.joinpath("out").mkdir()
    workspace.ok("report", "-o", "out/r.html")
    text = page(workspace.root / "out" / "r.html")
    # three commits; the experiment left the lock as HEAD's, so no working-tree point
    assert "3 versions, oldest first" in text
    chart = text.split('<section id="metrics">', 1)[1].split("</section>", 1)[0]
    assert chart.count('<circle class="point"') == 3
    table = text.split('<section id="experiments">', 1)[1].split("</section>", 1)[0]
    assert table.count("<tr>") == 2  # the header and the one experiment
    assert "rate" in table and "7" in table
