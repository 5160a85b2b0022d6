"""The report in a real browser: Debian's headless Chromium, driven by Playwright.

The page must load with no console error and no request but its own file, draw every
step, show a step's details on a click, draw one point per version, and read in light
and dark mode.  Chromium is not optional here: `.ci/run` installs it, and a machine
without it fails this module with a message saying so (never a silent skip)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Workspace, lock_steps
from test_report import EVIL, Experiment, history, tiny_png

from gitpipe.workspace import Project
from gitpipe.workspace.report import write

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VERSIONS = 5


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); "
            ".ci/run installs it before the tests"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Page:
    """A page of the report, with everything the browser said about it."""

    def __init__(self, browser: Any, path: Path, *, scheme: str = "light") -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.url = path.as_uri()
        self.page.goto(self.url)
        self.page.wait_for_load_state("load")

    def close(self) -> None:
        self.page.close()


def demo(workspace: Workspace) -> Path:
    """A pipeline with a matrix step, plots, an image, a failed step; ran once."""
    workspace.write(".gitignore", "/out/\n/report.html\n")
    workspace.write(
        "src/make.py",
        f"""
        import json, os, sys
        os.makedirs("out", exist_ok=True)
        lr = float(sys.argv[1])
        with open(f"out/fit-{{sys.argv[1]}}.json", "w") as f:
            json.dump({{"loss": 1 / lr}}, f)
        with open(f"out/curve-{{sys.argv[1]}}.csv", "w") as f:
            f.write("epoch,loss\\n" + "".join(f"{{i}},{{lr / (i + 1)}}\\n" for i in range(8)))
        open(f"out/dot-{{sys.argv[1]}}.png", "wb").write({tiny_png()!r})
        """,
    )
    workspace.pipeline(
        f"""
        [steps.prep]
        desc = {json.dumps(EVIL)}
        cmd = "mkdir -p out && echo data > out/data.txt"
        outs = ["out/data.txt"]

        [steps.fit]
        matrix = {{ lr = [1, 2, 4] }}
        cmd = "python3 src/make.py ${{matrix.lr}}"
        deps = ["out/data.txt"]
        metrics = ["out/fit-${{matrix.lr}}.json"]
        plots = ["out/curve-${{matrix.lr}}.csv"]
        outs = ["out/dot-${{matrix.lr}}.png"]

        [steps.broken]
        cmd = "echo about to fail; exit 3"
        deps = ["out/data.txt"]
        outs = ["out/never.txt"]
        """
    )
    assert workspace.gitpipe("repro").exit_code == 1  # broken fails; the rest ran
    experiments = [
        Experiment(f"exp-{i}", 1_700_000_000.0 + i, {"lr": i}, {"fit@1": {"loss": i}}, "done")
        for i in range(3)
    ]
    project = Project.open(workspace.root)
    return write(
        project, workspace.root / "report.html", history=history(VERSIONS), experiments=experiments
    )


def test_the_report_works_offline_in_chromium_and_shows_a_step_on_a_click(
    browser, workspace, tmp_path
):
    path = demo(workspace)
    view = Page(browser, path)
    page = view.page
    steps = json.loads(page.locator("#report-data").text_content())["steps"]
    assert set(steps) == {"prep", "fit@1", "fit@2", "fit@4", "broken"}
    drawn = page.eval_on_selector_all(
        "#dag-all .node", "nodes => nodes.map(n => n.getAttribute('data-step'))"
    )
    assert sorted(drawn) == sorted(steps)
    assert page.locator("#dag-grouped .node[data-group='fit']").count() == 1

    page.locator("#dag-grouped .node[data-step='prep']").click()
    details = page.locator("#details")
    assert details.locator("h3").text_content() == "prep"
    assert EVIL in details.text_content()  # shown as text, run as nothing
    digest = lock_steps(workspace)["prep"]["outs"]["out/data.txt"]
    assert details.locator("table.outputs td.digest").first.text_content() == digest
    kinds = details.locator("table.parts tr td:first-child").all_text_contents()
    assert {"command", "wdir", "outs"} <= set(kinds)

    page.locator("#dag-grouped .node[data-group='fit']").click()
    page.locator("#details button.member", has_text="fit@2").click()
    assert details.locator("h3").text_content() == "fit@2"
    assert "out/curve-2.csv" in details.text_content()

    page.locator("#dag-grouped .node[data-step='broken']").click()
    assert "about to fail" in details.locator("pre.log").text_content()
    assert "failed" in details.text_content()

    charts = page.locator("figure.metric")
    assert charts.count() == 2
    for i in range(charts.count()):
        assert charts.nth(i).locator("circle.point").count() == VERSIONS
    assert page.locator("table.experiments tbody tr").count() == 3
    assert page.locator("figure.plot svg polyline").count() == 3
    assert page.locator("figure.image img").count() == 3
    assert page.eval_on_selector_all(
        "figure.image img", "imgs => imgs.every(i => i.complete && i.naturalWidth === 1)"
    )

    page.locator("#expand").check()
    assert page.locator("#view-all").is_visible()
    assert not page.locator("#view-grouped").is_visible()
    page.locator("#dag-all .node[data-step='fit@4']").click()
    assert details.locator("h3").text_content() == "fit@4"

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot of the report: {shot}")
    assert view.errors == []
    assert view.dialogs == []
    assert view.requests == [view.url]
    view.close()


def test_the_report_reads_in_dark_mode_too(browser, workspace, tmp_path):
    path = demo(workspace)
    colours = {}
    for scheme in ("light", "dark"):
        view = Page(browser, path, scheme=scheme)
        colours[scheme] = view.page.evaluate(
            "() => getComputedStyle(document.body).backgroundColor"
        )
        shot = tmp_path / f"report-{scheme}.png"
        view.page.screenshot(path=str(shot))
        print(f"screenshot ({scheme}): {shot}")
        assert view.errors == [] and view.requests == [view.url]
        view.close()
    assert colours["light"] == "rgb(255, 255, 255)"
    assert colours["dark"] != colours["light"]


def test_a_200_step_graph_stays_usable_zoomed_out(browser, workspace, tmp_path):
    lines = ['[steps.s0]\ncmd = "true"\n']
    for i in range(1, 200):
        lines.append(f'[steps.s{i}]\ncmd = "true"\nafter = ["s{i // 3}"]\n')
    workspace.pipeline("\n".join(lines))
    workspace.ok("report", "-o", "big.html")
    view = Page(browser, workspace.root / "big.html")
    page = view.page
    assert page.locator("#dag-all .node").count() == 200
    before = page.locator("#dag-all").bounding_box()
    page.locator("button[data-zoom='0.8']").click()
    after = page.locator("#dag-all").bounding_box()
    assert after["height"] < before["height"]
    page.locator("#dag-all .node[data-step='s199']").scroll_into_view_if_needed()
    page.locator("#dag-all .node[data-step='s199']").click()
    assert page.locator("#details h3").text_content() == "s199"
    shutil.copy(workspace.root / "big.html", tmp_path / "big.html")
    assert view.errors == [] and view.requests == [view.url]
    view.close()
