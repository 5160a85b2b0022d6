"""Pure tests of gitpipe.identity.codedeps: entries, imports, code digests and discovery.

Discovery runs over :class:`MemorySource`, an in-memory implementation of the
``codedeps.Source`` protocol (a dict of path -> bytes): our own protocol's twin,
the way dulwich tests its object store against ``MemoryObjectStore``.
"""

from __future__ import annotations

import fnmatch
import textwrap

import pytest

from gitpipe.core.hashing import Digest, digest_bytes
from gitpipe.identity.codedeps import (
    Discoverer,
    Entry,
    Imported,
    code_digest,
    entries,
    imports,
)


class MemorySource:
    """Files relative to the pipeline's folder, held in a dict; counts reads."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = {path: textwrap.dedent(text).encode() for path, text in files.items()}
        self.reads: list[str] = []

    def is_file(self, path: str) -> bool:
        return path in self.files

    def read(self, path: str) -> bytes:
        self.reads.append(path)
        return self.files[path]

    def glob(self, pattern: str) -> list[str]:
        return sorted(path for path in self.files if fnmatch.fnmatchcase(path, pattern))

    def digest(self, path: str) -> Digest:
        return digest_bytes(self.files[path])


def discover(files: dict[str, str], *commands: str, wdir: str = ".", code=()) -> list[str]:
    return Discoverer(MemorySource(files)).discover(commands, wdir, code).files


def digest(text: str, path: str = "x.py") -> Digest:
    value, parses = code_digest(path, textwrap.dedent(text).encode())
    assert parses
    return value


# -- entries: how a command starts Python ---------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("python src/x.py --seed 1", [Entry("script", "src/x.py", ".")]),
        ("python3 src/x.py", [Entry("script", "src/x.py", ".")]),
        ("python3.12 -u src/x.py", [Entry("script", "src/x.py", ".")]),
        ("/opt/venv/bin/python src/x.py", [Entry("script", "src/x.py", ".")]),
        ("python -W ignore -X dev src/x.py a b", [Entry("script", "src/x.py", ".")]),
        ("python -m pkg.mod --flag", [Entry("module", "pkg.mod", ".")]),
        ("python -u -m pkg.mod", [Entry("module", "pkg.mod", ".")]),
        ("python -mpkg.mod", [Entry("module", "pkg.mod", ".")]),
        ("uv run python src/x.py", [Entry("script", "src/x.py", ".")]),
        ("uv run --frozen python src/x.py", [Entry("script", "src/x.py", ".")]),
        ("uv run src/x.py", [Entry("script", "src/x.py", ".")]),
        ("poetry run python -m pkg.mod", [Entry("module", "pkg.mod", ".")]),
        ("pipenv run python src/x.py", [Entry("script", "src/x.py", ".")]),
        ("VAR=1 OTHER=x python src/x.py", [Entry("script", "src/x.py", ".")]),
        ("env A=1 python src/x.py", [Entry("script", "src/x.py", ".")]),
        ("nice -n 5 python src/x.py", [Entry("script", "src/x.py", ".")]),
        ("time python src/x.py", [Entry("script", "src/x.py", ".")]),
        ("./src/x.py --fast", [Entry("script", "./src/x.py", ".")]),
        ("cd sub && python x.py", [Entry("script", "x.py", "sub")]),
        ("cd a; cd b && python x.py", [Entry("script", "x.py", "a/b")]),
        ("cd sub && cd .. && python x.py", [Entry("script", "x.py", ".")]),
        (
            "python a.py && python -m pkg.b | python c.py",
            [
                Entry("script", "a.py", "."),
                Entry("module", "pkg.b", "."),
                Entry("script", "c.py", "."),
            ],
        ),
        ("python src/x.py > out.txt 2> err.txt", [Entry("script", "src/x.py", ".")]),
        ("python -c 'import pkg'", []),
        ("python", []),
        ("tr a-z A-Z < in.txt > out.txt", []),
        ("Rscript model.R", []),
        ("python 'unbalanced", []),
        # quotes and backslashes split no names: the lexer joins them again
        ("py'th'on src/x.py", [Entry("script", "src/x.py", ".")]),
        ('sh -c true && "src/x".py', [Entry("script", "src/x.py", ".")]),
        ("pyth\\on -m pkg", [Entry("module", "pkg", ".")]),
    ],
)
def test_entries_finds_the_python_a_command_runs(command, expected):
    assert entries(command) == expected


def test_entries_start_in_the_steps_wdir():
    assert entries("python x.py", "sub") == [Entry("script", "x.py", "sub")]
    assert entries("cd deeper && python -m m", "sub") == [Entry("module", "m", "sub/deeper")]


@pytest.mark.parametrize(
    "command",
    [
        "uv run --with numpy python src/x.py",
        "uv run --python 3.12 python src/x.py",
        "env -u HOME python src/x.py",
    ],
)
def test_entries_skip_wrapper_options_that_take_a_value(command):
    assert entries(command) == [Entry("script", "src/x.py", ".")]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("python src/x.py>out.txt", [Entry("script", "src/x.py", ".")]),
        ("(cd sub && python x.py)", [Entry("script", "x.py", "sub")]),
    ],
)
def test_entries_understand_redirections_and_subshells_without_spaces(command, expected):
    assert entries(command) == expected


# -- imports ---------------------------------------------------------------------


def test_imports_lists_every_import_statement_wherever_it_stands():
    source = textwrap.dedent(
        """
        import os, pkg.util as u
        from pkg import features, util
        from . import sibling
        from ..parent import thing
        from star import *

        def late():
            import inside.function
            if True:
                from cond import x
        class C:
            import in_class
        try:
            import optional
        except ImportError:
            pass
        """
    ).encode()
    found = imports(source)
    assert found is not None
    assert sorted(found, key=repr) == sorted(
        [
            Imported("os", 0, ()),
            Imported("pkg.util", 0, ()),
            Imported("pkg", 0, ("features", "util")),
            Imported("", 1, ("sibling",)),
            Imported("parent", 2, ("thing",)),
            Imported("star", 0, ()),
            Imported("optional", 0, ()),
            Imported("inside.function", 0, ()),
            Imported("in_class", 0, ()),
            Imported("cond", 0, ("x",)),
        ],
        key=repr,
    )


def test_imports_of_a_file_that_does_not_parse_is_none():
    assert imports(b"def broken(:\n") is None
    assert imports(b"x = 1\0") is None
    assert imports(b"") == []


def test_dynamic_imports_are_not_imports():
    source = b"import importlib\nm = importlib.import_module('pkg.hidden')\n__import__('other')\n"
    assert imports(source) == [Imported("importlib", 0, ())]


# -- code digests ------------------------------------------------------------------

SCRIPT = '''
"""Prepare the data."""

import json

SCALE = 2  # how much to scale


def scale(values, factor=SCALE):
    """Multiply every value."""
    total = [v * factor for v in values]
    return total


class Model:
    """A model."""

    def fit(self, xs):
        "One line."
        return sum(xs)


print(json.dumps(scale([1, 2, 3])))
'''


@pytest.mark.parametrize(
    "edited",
    [
        SCRIPT.replace("# how much to scale", "# the factor, tuned by hand"),
        SCRIPT.replace('"""Prepare the data."""', '"""Prepare the data.\n\nAt length."""'),
        SCRIPT.replace('"""Prepare the data."""\n', ""),
        SCRIPT.replace('"""Multiply every value."""', "'''Other words.'''"),
        SCRIPT.replace('    """A model."""\n', ""),
        SCRIPT.replace('"One line."', '"""Two\n        lines."""'),
        SCRIPT.replace("\n\n", "\n"),
        SCRIPT.replace(
            "def scale(values, factor=SCALE):", "def scale(\n    values,\n    factor=SCALE,\n):"
        ),
        SCRIPT.replace(
            "total = [v * factor for v in values]", "total = ([(v) * (factor) for v in values])"
        ),
        SCRIPT.replace("SCALE = 2", "SCALE=2   ;"),
        SCRIPT.replace("import json", "import json  # type: ignore"),
        SCRIPT.replace(
            "print(json.dumps(scale([1, 2, 3])))", "print(json.dumps(scale([1, 2, 3,])))"
        ),
    ],
)
def test_code_digest_ignores_comments_docstrings_blank_lines_and_formatting(edited):
    assert digest(edited) == digest(SCRIPT)


@pytest.mark.parametrize(
    "edited",
    [
        SCRIPT.replace("SCALE = 2", "SCALE = 3"),
        SCRIPT.replace("SCALE = 2", "SCALE = 2.0"),
        SCRIPT.replace("factor=SCALE", "factor=1"),
        SCRIPT.replace(
            "total = [v * factor for v in values]\n    return total",
            "t = [v * factor for v in values]\n    return t",
        ),
        SCRIPT.replace("def scale(values,", "def scale(items,").replace("in values]", "in items]"),
        SCRIPT.replace("v * factor", "factor * v"),
        SCRIPT.replace("return sum(xs)", "return sum(xs)\n        return 0"),
        SCRIPT.replace("[1, 2, 3]", "[1, 2, 3, 4]"),
        SCRIPT.replace("print(json", "print('note')\nprint(json"),
        SCRIPT.replace('"One line."', "x = 'One line.'"),
    ],
)
def test_code_digest_changes_with_anything_that_runs(edited):
    assert digest(edited) != digest(SCRIPT)


def test_code_digest_tells_constants_of_different_types_apart():
    assert len({digest("x = 1"), digest("x = 1.0"), digest("x = True"), digest("x = '1'")}) == 4


def test_a_python_file_that_does_not_parse_is_digested_as_bytes():
    data = b"def broken(:\n    pass\n"
    assert code_digest("src/x.py", data) == (digest_bytes(data), False)
    # so a comment in it does change its digest
    assert code_digest("src/x.py", data + b"# note\n")[0] != digest_bytes(data)


def test_other_files_are_digested_as_bytes():
    sql = b"SELECT 1; -- a comment\n"
    assert code_digest("queries/a.sql", sql) == (digest_bytes(sql), True)
    assert code_digest("queries/a.sql", sql.replace(b"a comment", b"other"))[0] != digest_bytes(sql)


def test_bytes_mode_digests_python_as_bytes():
    data = SCRIPT.encode()
    assert code_digest("x.py", data, mode="bytes") == (digest_bytes(data), True)
    commented = (SCRIPT + "# one more comment\n").encode()
    assert (
        code_digest("x.py", commented, mode="bytes")[0]
        != code_digest("x.py", data, mode="bytes")[0]
    )


def test_the_normalised_digest_is_not_the_bytes_digest():
    data = b"x = 1\n"
    assert code_digest("x.py", data)[0] != digest_bytes(data)


# -- discovery ---------------------------------------------------------------------

PACKAGE = {
    "src/app.py": """
        import json
        import numpy
        from pkg import features

        def main():
            from pkg.deep import inner
        """,
    "src/pkg/__init__.py": "",
    "src/pkg/features.py": "from .util import scale\n",
    "src/pkg/util.py": "from . import consts\n",
    "src/pkg/consts.py": "K = 1\n",
    "src/pkg/deep/__init__.py": "from ..consts import K\n",
    "src/pkg/deep/inner.py": "X = 1\n",
    "src/pkg/unused.py": "",
    "src/pkg/main.py": "from pkg import util\n",
    "src/pkg/__main__.py": "import pkg.features\n",
    "src/other.py": "import json\n",
}
APP_CODE = [
    "src/app.py",
    "src/pkg/__init__.py",
    "src/pkg/consts.py",
    "src/pkg/deep/__init__.py",
    "src/pkg/deep/inner.py",
    "src/pkg/features.py",
    "src/pkg/util.py",
]


def test_discovery_follows_imports_transitively_through_every_form():
    assert discover(PACKAGE, "python src/app.py") == APP_CODE


def test_discovery_leaves_out_the_standard_library_and_installed_packages():
    assert discover(PACKAGE, "python src/other.py") == ["src/other.py"]


@pytest.mark.parametrize(
    ("command", "wdir"),
    [
        ("cd src && python app.py", "."),
        ("python app.py", "src"),
        ("uv run python src/app.py", "."),
        ("PYTHONHASHSEED=0 python src/app.py", "."),
    ],
)
def test_discovery_is_the_same_however_the_script_is_started(command, wdir):
    assert discover(PACKAGE, command, wdir=wdir) == APP_CODE


def test_a_module_run_with_dash_m_is_found_under_src_with_its_packages():
    assert discover(PACKAGE, "python -m pkg.main") == [
        "src/pkg/__init__.py",
        "src/pkg/consts.py",
        "src/pkg/main.py",
        "src/pkg/util.py",
    ]


def test_a_package_run_with_dash_m_includes_its_main():
    assert discover(PACKAGE, "python -m pkg") == [
        "src/pkg/__init__.py",
        "src/pkg/__main__.py",
        "src/pkg/consts.py",
        "src/pkg/features.py",
        "src/pkg/util.py",
    ]


def test_a_command_that_runs_no_python_has_no_discovered_code():
    assert discover(PACKAGE, "tr a-z A-Z < in.txt > out.txt") == []
    assert discover(PACKAGE, "python src/missing.py") == []
    assert discover(PACKAGE, "python ../outside.py") == []


def test_the_scripts_own_folder_is_searched_first():
    files = {
        "tools/run.py": "import helper\n",
        "tools/helper.py": "",
        "helper.py": "",
    }
    assert discover(files, "python tools/run.py") == ["tools/helper.py", "tools/run.py"]


def test_the_wdir_and_the_pipeline_folder_are_searched_after_the_scripts_folder():
    files = {
        "sub/tools/run.py": "import near\nimport top\n",
        "sub/near.py": "",
        "top.py": "",
    }
    assert discover(files, "python tools/run.py", wdir="sub") == [
        "sub/near.py",
        "sub/tools/run.py",
        "top.py",
    ]


def test_globs_add_any_file_and_are_digested_by_the_caller():
    files = {**PACKAGE, "sql/a.sql": "SELECT 1", "sql/b.sql": "SELECT 2", "R/x.R": "1"}
    assert discover(files, "python src/other.py", code=["sql/*.sql", "R/x.R"]) == [
        "R/x.R",
        "sql/a.sql",
        "sql/b.sql",
        "src/other.py",
    ]


def test_a_glob_listed_module_is_not_followed_only_imported_ones_are():
    files = {**PACKAGE, "src/pkg/hidden.py": "import pkg.unused\n"}
    found = discover(files, "python src/other.py", code=["src/pkg/hidden.py"])
    assert found == ["src/other.py", "src/pkg/hidden.py"]


def test_files_that_do_not_parse_are_reported_and_their_imports_not_followed():
    files = {**PACKAGE, "src/pkg/features.py": "from .util import (\n"}
    result = Discoverer(MemorySource(files)).discover(["python src/app.py"], ".", [])
    assert result.unreadable == ["src/pkg/features.py"]
    assert "src/pkg/features.py" in result.files
    assert "src/pkg/util.py" not in result.files  # features' imports are unknown now


def test_import_cycles_end():
    files = {"a.py": "import b\n", "b.py": "import a\nimport c\n", "c.py": "from a import *\n"}
    assert discover(files, "python a.py") == ["a.py", "b.py", "c.py"]


def test_dynamic_imports_are_not_discovered():
    files = {
        "run.py": "import importlib\nimportlib.import_module('plugins.extra')\n",
        "plugins/__init__.py": "",
        "plugins/extra.py": "",
    }
    assert discover(files, "python run.py") == ["run.py"]


def test_discovery_parses_each_content_once_through_its_cache():
    source = MemorySource(PACKAGE)
    cache: dict = {}
    first = Discoverer(source, cache=cache).discover(["python src/app.py"], ".", [])
    assert sorted(source.reads) == APP_CODE
    source.reads.clear()
    again = Discoverer(source, cache=cache).discover(
        ["python src/app.py", "python -m pkg.main"], ".", []
    )
    assert source.reads == ["src/pkg/main.py"]  # the only bytes not seen before
    assert set(first.files) <= set(again.files)


def test_modules_of_namespace_packages_are_discovered():
    files = {
        "run.py": "from lib import helpers\nimport lib.more\n",
        "lib/helpers.py": "",
        "lib/more.py": "",
    }
    assert discover(files, "python run.py") == ["lib/helpers.py", "lib/more.py", "run.py"]
