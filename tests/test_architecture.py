"""The package's shape: layers that import one way, and no room too big to live in.

The layers, bottom to top (docs/architecture.md): core, pipeline, identity, store,
history, run, the workspace facade, the command line.  A module may import its own
layer and the layers below it, never one above: these tests read every import of
every module (those under ``if TYPE_CHECKING:`` included: a type is a dependency
too) and fail on the first that points up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gitpipe"
LAYERS = ("core", "pipeline", "identity", "store", "history", "run", "workspace", "cli")
#: modules at the package's top, with the layer they stand in
TOP = {"__init__": "api", "__main__": "api"}
MAX_MODULE_LINES = 800
MAX_CLASS_LINES = 400


def layer_of(module: str) -> str:
    """``gitpipe.run.planner`` -> ``run``; the top-level API modules -> ``api``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "api"
    if parts[1] in TOP:
        return TOP[parts[1]]
    return parts[1]


def rank(layer: str) -> int:
    return len(LAYERS) if layer == "api" else LAYERS.index(layer)


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append((".".join(parts), path))
    return found


def imports_of(module: str, path: Path) -> list[tuple[int, str]]:
    """Every gitpipe module ``module`` imports, with the line it does so on."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("gitpipe")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if not name.startswith("gitpipe"):
                continue
            if name == "gitpipe" or node.module is None:  # from gitpipe import x: a module
                found += [(node.lineno, f"{name}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, name))
    return found


def test_every_module_stands_in_a_known_layer():
    unknown = [m for m, _ in modules() if layer_of(m) not in (*LAYERS, "api")]
    assert unknown == []


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_no_module_imports_a_layer_above_its_own(module, path):
    mine = layer_of(module)
    upward = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} ({layer_of(target)})"
        for line, target in imports_of(module, path)
        if layer_of(target) != "api" and rank(layer_of(target)) > rank(mine)
    ]
    assert upward == [], f"{module} ({mine}) reaches up"


def test_the_core_imports_nothing_of_gitpipe_above_it():
    for module, path in modules():
        if layer_of(module) == "core":
            assert all(layer_of(t) == "core" for _, t in imports_of(module, path)), module


def test_no_module_is_too_big_to_live_in():
    too_big = [
        f"{path.relative_to(PACKAGE.parent)}: {n} lines"
        for _, path in modules()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert too_big == []


def test_no_class_is_too_big_to_live_in():
    too_big = []
    for _, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    too_big.append(f"{path.relative_to(PACKAGE.parent)}: {node.name}, {size}")
    assert too_big == []


def test_a_module_that_reaches_up_is_caught(tmp_path):
    """The checker itself: an import from a higher layer is found, a lower one is not."""
    path = tmp_path / "planner.py"
    path.write_text(
        "from typing import TYPE_CHECKING\n"
        "from gitpipe.core import atomic\n"
        "if TYPE_CHECKING:\n"
        "    from gitpipe.workspace import Project\n"
    )
    found = imports_of("gitpipe.run.planner", path)
    assert [(line, t, layer_of(t)) for line, t in found] == [
        (2, "gitpipe.core", "core"),
        (4, "gitpipe.workspace", "workspace"),
    ]
