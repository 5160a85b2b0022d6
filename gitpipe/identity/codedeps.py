"""Code identity: which files are a step's code, and digests that ignore cosmetics.

A step's code is the files its ``code`` globs name plus, for commands that run Python
(``python script.py``, ``python -m pkg.mod``, behind ``uv run``, ``poetry run``,
``env``, ``VAR=value`` ...), the script or module and every module of this workspace
it imports, transitively: ``import`` and ``from ... import`` anywhere in the file
(inside functions too), relative imports, and the ``__init__.py`` of each package on
the way.  Imports that resolve to no file here (the standard library, installed
packages) are not code.  Dynamic imports (``importlib.import_module(name)``,
``__import__``, plugin entry points) cannot be seen; list such files in ``code``.

A ``.py`` file's code digest is the digest of its syntax tree with docstrings
dropped, serialised by our own walker (fields that are None or empty are left out,
so the digest is the same on every Python version that parses the file alike):
comments, blank lines and formatting do not change it; any change to what runs
does.  Other files, and Python files that do not parse, are digested as bytes.

Everything here is pure over a :class:`Source`, so the same code serves the working
tree and a commit read from Git.
"""

from __future__ import annotations

import ast
import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from gitpipe.core.hashing import Digest, digest_bytes
from gitpipe.pipeline.spec import Step

CODE_SCHEMA = b"gitpipe.code/py-ast/1\0"
_PYTHON = re.compile(r"^(?:.*/)?(?:python|pythonw|python3(?:\.\d+)?)$")
_WRAPPERS = {
    ("uv", "run"): 2,
    ("poetry", "run"): 2,
    ("pipenv", "run"): 2,
    ("pdm", "run"): 2,
    ("hatch", "run"): 2,
    ("rye", "run"): 2,
}
_PREFIXES = {"env", "exec", "time", "nice", "nohup", "command"}
_SEPARATORS = {"&&", "||", ";", "|", "&"}
# python options that take a value (python -X dev, -W ignore, ...)
_OPTIONS_WITH_VALUE = {"-X", "-W", "-Q"}


class Source(Protocol):
    """Files relative to the pipeline's folder: a working tree or a commit."""

    def is_file(self, path: str) -> bool: ...

    def read(self, path: str) -> bytes: ...

    def glob(self, pattern: str) -> list[str]: ...

    def digest(self, path: str) -> Digest:
        """The digest of the file's bytes (a working tree answers from its stat cache)."""
        ...


def commands_of(step: Step) -> tuple[str, ...]:
    """What discovery reads a step's code from: its commands, or for a function step
    (``fn = "pkg.mod:f"``) the module it imports, as ``python -m pkg.mod``."""
    return (f"python -m {step.fn.partition(':')[0]}",) if step.fn else step.cmd


@dataclass(frozen=True, slots=True)
class Entry:
    """How a command starts Python: a script path or a module name, and where from."""

    kind: str  # "script" | "module"
    target: str
    cwd: str  # the step's wdir, relative to the pipeline's folder


def entries(command: str, wdir: str = ".") -> list[Entry]:
    """The Python scripts and modules a shell command runs (best effort, never raises)."""
    # Every entry starts at a token that names `python...` or ends in `.py`.  A token
    # is the command's characters less quotes and backslashes, so a command in which
    # neither appears once those are dropped runs no Python: skip the (slow) lexer.
    bare = command.replace('"', "").replace("'", "").replace("\\", "")
    if "python" not in bare and ".py" not in bare:
        return []
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        return []
    found: list[Entry] = []
    segment: list[str] = []
    cwd = wdir
    redirect = False
    for token in [*tokens, ";"]:
        if redirect:  # the file name after `>`, `>>` or `<`
            redirect = False
            continue
        if set(token) <= set("<>&") and ("<" in token or ">" in token):
            redirect = not token.endswith("&")  # `2>&1` takes no file name of its own
            continue
        if token in _SEPARATORS or set(token) <= set(";&|()"):
            if len(segment) == 2 and segment[0] == "cd":  # `cd sub && python x.py`
                cwd = posixpath.normpath(posixpath.join(cwd, segment[1]))
            entry = _entry(segment, cwd)
            if entry is not None:
                found.append(entry)
            segment = []
        else:
            segment.append(token)
    return found


def _entry(tokens: list[str], wdir: str) -> Entry | None:
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if "=" in token and not token.startswith("-") and token.split("=", 1)[0].isidentifier():
            i += 1  # VAR=value
        elif token in _PREFIXES or tuple(tokens[i : i + 2]) in _WRAPPERS:
            # `env -u HOME python x.py`, `uv run --with numpy python x.py`: the wrapper's
            # options may take values, so look ahead for what it runs
            i += _WRAPPERS.get(tuple(tokens[i : i + 2]), 1)
            ahead = next(
                (
                    j
                    for j in range(i, len(tokens))
                    if _PYTHON.match(tokens[j]) or tokens[j].endswith(".py")
                ),
                None,
            )
            if ahead is None:
                return None
            i = ahead
        else:
            break
    if i >= len(tokens):
        return None
    head = tokens[i]
    if head.endswith(".py"):
        return Entry("script", head, wdir)
    if not _PYTHON.match(head):
        return None
    i += 1
    while i < len(tokens):
        token = tokens[i]
        if token == "-m" and i + 1 < len(tokens):
            return Entry("module", tokens[i + 1], wdir)
        if token.startswith("-m") and len(token) > 2:
            return Entry("module", token[2:], wdir)
        if token == "-c":
            return None
        if token in _OPTIONS_WITH_VALUE:
            i += 2
            continue
        if token.startswith("-"):
            i += 1
            continue
        return Entry("script", token, wdir)
    return None


@dataclass(frozen=True, slots=True)
class Imported:
    module: str  # dotted name, "" for `from . import x`
    level: int  # 0 absolute; 1 for `from .`, 2 for `from ..`
    names: tuple[str, ...]  # what `from module import ...` takes (may be submodules)


def imports(data: bytes) -> list[Imported] | None:
    """Every import statement in a Python file, wherever it stands; None if it does
    not parse."""
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError):
        return None
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(Imported(alias.name, 0, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names if alias.name != "*")
            found.append(Imported(node.module or "", node.level, names))
    return found


def _module_files(root: str, dotted: str, source: Source) -> list[str]:
    """The package ``__init__`` files on the way to a module and the module's file.

    A folder without ``__init__.py`` on the way is a namespace package, as in
    Python 3: it contributes no file, and the search goes on inside it.
    """
    parts = [part for part in dotted.split(".") if part]
    found = []
    for i in range(1, len(parts) + 1):
        base = posixpath.join(root, *parts[:i]) if root not in ("", ".") else "/".join(parts[:i])
        base = posixpath.normpath(base)
        if source.is_file(base + ".py"):
            found.append(base + ".py")
            return found if i == len(parts) else []  # a module cannot go deeper
        init = base + "/__init__.py"
        if source.is_file(init):
            found.append(init)
    return found if found and found[-1] == f"{_join(root, parts)}/__init__.py" else []


def _join(root: str, parts: list[str]) -> str:
    joined = posixpath.join(root, *parts) if root not in ("", ".") else "/".join(parts)
    return posixpath.normpath(joined)


@dataclass
class Discovery:
    """A step's code files, the Python files among them that do not parse, the
    folders its commands need on PYTHONPATH for Python to import them (relative to
    the pipeline's folder), and the imports found only where Python will not look."""

    files: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    pythonpath: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    #: top-level modules imported that no file of the repository holds (installed
    #: distributions, or the standard library); the environment keys them
    external: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Roots:
    """Where the imports of one Python command are looked for, in order: the
    folders Python itself puts first on ``sys.path`` (``own``: the script's folder,
    or the working folder for ``python -m``), then the others.  ``hidden`` are the
    folders discovery would also look in had ``pythonpath`` not been written: an
    import found only there is reported, never listed as code."""

    own: tuple[str, ...]
    others: tuple[str, ...]
    hidden: tuple[str, ...] = ()

    @property
    def search(self) -> tuple[str, ...]:
        return _unique_tuple(self.own + self.others)


def roots_for(entry: Entry, pythonpath: Iterable[str] | None) -> Roots:
    """The roots of an entry.  Without ``pythonpath`` (not written): the script's
    folder, the working folder and the pipeline's folder (for ``-m``: the working
    folder, the pipeline's folder and ``src``), as discovery always searched;
    with it: Python's own folder and those folders."""
    cwd = posixpath.normpath(entry.cwd)
    if entry.kind == "script":
        path = posixpath.normpath(posixpath.join(cwd, entry.target))
        own: tuple[str, ...] = (posixpath.dirname(path) or ".",)
        default = (cwd, ".")
    else:
        own, default = (cwd,), (".", "src")
    if pythonpath is None:
        return Roots(own, _unique_tuple(default))
    others = _unique_tuple(tuple(pythonpath))
    hidden = tuple(r for r in _unique_tuple(default) if r not in own + others)
    return Roots(own, others, hidden)


class Discoverer:
    """Finds code files over a source, caching what each file imports by its bytes."""

    def __init__(
        self,
        source: Source,
        *,
        cache: dict[Digest, list[Imported] | None] | None = None,
        imports_of: Callable[[str], list[Imported] | None] | None = None,
    ) -> None:
        self.source = source
        #: raw digest of a file -> what it imports (None: it does not parse)
        self.cache: dict[Digest, list[Imported] | None] = {} if cache is None else cache
        self._edges: dict[tuple[str, Roots], list[tuple[str, str]] | None] = {}
        self._external: dict[tuple[str, Roots], list[str]] = {}
        if imports_of is not None:  # a caller with a cache of its own
            self.imports_of = imports_of  # type: ignore[method-assign]

    def imports_of(self, path: str) -> list[Imported] | None:
        key = self.source.digest(path)
        if key not in self.cache:
            self.cache[key] = imports(self.source.read(path))
        return self.cache[key]

    def discover(
        self,
        commands: Iterable[str],
        wdir: str,
        globs: Iterable[str],
        pythonpath: Iterable[str] | None = None,
    ) -> Discovery:
        """The code of commands run in ``wdir``, with the ``code`` globs; imports are
        looked for as :func:`roots_for` says (``pythonpath``: as written in the
        pipeline, None when it is not)."""
        result = Discovery()
        files: set[str] = set()
        for pattern in globs:
            files.update(self.source.glob(pattern))
        explicit = None if pythonpath is None else tuple(pythonpath)
        needed: list[str] = list(explicit or ())
        queue: list[tuple[str, Roots]] = []  # (file, where its imports are looked for)
        for command in commands:
            for entry in entries(command, wdir):
                roots = roots_for(entry, explicit)
                for path, root in self._start(entry, roots):
                    queue.append((path, roots))
                    if root not in roots.own:
                        needed.append(root)
        seen: set[str] = set()
        unresolved: set[str] = set()
        external: set[str] = set()
        while queue:
            path, roots = queue.pop()
            if path in seen:
                continue
            seen.add(path)
            files.add(path)
            if not path.endswith(".py"):
                continue
            targets = self._targets(path, roots)
            if targets is None:
                result.unreadable.append(path)
                continue
            external.update(self._external.get((path, roots), ()))
            for target, root in targets:
                if root.startswith("!"):  # found only where Python will not look
                    hint = f"add {root[1:]!r} to [pipeline] pythonpath"
                    unresolved.add(f"{target} (imported by {path}; {hint})")
                    continue
                if root and root not in roots.own:
                    needed.append(root)
                if target not in seen:
                    queue.append((target, roots))
        result.files = sorted(files)
        result.unreadable.sort()
        result.pythonpath = list(dict.fromkeys(needed))
        result.unresolved = sorted(unresolved)
        result.external = sorted(external)
        return result

    def forget(self) -> None:
        """Drop what was learnt of the files' imports (some file changed)."""
        self._edges.clear()
        self._external.clear()

    def _targets(self, path: str, roots: Roots) -> list[tuple[str, str]] | None:
        """The files a Python file's imports resolve to, each with the root it was
        found through ("" for a relative import; "!ROOT" for a hidden root), None when
        it does not parse; remembered for the discoverer's life: steps share most of
        their modules."""
        memo = (path, roots)
        if memo not in self._edges:
            found = self.imports_of(path)
            if found is None:
                self._edges[memo] = None
            else:
                targets: list[tuple[str, str]] = []
                outside: list[str] = []
                for item in found:
                    resolved = self._resolve(item, path, roots)
                    targets += resolved
                    if not resolved and not item.level and item.module:
                        outside.append(item.module.split(".")[0])
                self._edges[memo] = list(dict.fromkeys(targets))
                self._external[memo] = list(dict.fromkeys(outside))
        return self._edges[memo]

    def _start(self, entry: Entry, roots: Roots) -> Iterator[tuple[str, str]]:
        """The files an entry runs first, each with the root it was found through."""
        cwd = posixpath.normpath(entry.cwd)
        if entry.kind == "script":
            path = posixpath.normpath(posixpath.join(cwd, entry.target))
            if self.source.is_file(path):
                yield path, roots.own[0]  # Python puts the script's folder first on sys.path
            return
        for root in roots.search:
            files = _module_files(root, entry.target, self.source)
            if files:
                # `python -m pkg` runs pkg/__main__.py
                main = posixpath.join(posixpath.dirname(files[-1]), "__main__.py")
                if files[-1].endswith("__init__.py") and self.source.is_file(main):
                    files.append(main)
                for path in files:
                    yield path, root
                return

    def _resolve(self, item: Imported, importer: str, roots: Roots) -> list[tuple[str, str]]:
        if item.level:
            base = posixpath.dirname(importer)
            for _ in range(item.level - 1):
                base = posixpath.dirname(base)
            return [(path, "") for path in self._find(item, base or ".")]
        for base in roots.search:
            found = self._find(item, base)
            if found:
                return [(path, base) for path in found]
        for base in roots.hidden:
            found = self._find(item, base)
            if found:
                return [(found[-1], "!" + base)]
        return []

    def _find(self, item: Imported, base: str) -> list[str]:
        """The files an import names under one root (with `from pkg import mod`'s
        submodules); [] when it names none there."""
        found = _module_files(base, item.module, self.source) if item.module else []
        extra = []
        if not found or found[-1].endswith("__init__.py"):
            # `from pkg import submodule`; pkg may be a namespace package (no file)
            package = _join(base, item.module.split(".")) if item.module else base
            for name in item.names:
                extra += _module_files(package, name, self.source)
        return found + extra


def _unique_tuple(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(posixpath.normpath(item) for item in items))


def code_digest(path: str, data: bytes, *, mode: str = "ast") -> tuple[Digest, bool]:
    """A code file's digest, and whether it parsed (always True for non-Python files).

    ``mode="ast"`` normalises Python files; ``mode="bytes"`` digests the bytes.
    """
    if mode != "ast" or not path.endswith(".py"):
        return digest_bytes(data), True
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError):
        return digest_bytes(data), False
    return digest_bytes(CODE_SCHEMA + _canonical(tree).encode("utf-8")), True


def _canonical(node: ast.AST) -> str:
    """A stable text of a syntax tree: node types and non-empty fields, no positions,
    no docstrings."""
    out: list[str] = []
    _write(node, out)
    return "".join(out)


def _body_without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        return body[1:]
    return body


def _write(value: object, out: list[str]) -> None:
    if isinstance(value, ast.AST):
        out.append(type(value).__name__)
        out.append("(")
        docstring_holder = isinstance(
            value, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        )
        for name, child in ast.iter_fields(value):
            if name == "type_ignores" or (name == "kind" and isinstance(value, ast.Constant)):
                continue
            if docstring_holder and name == "body":
                child = _body_without_docstring(child)
            if child is None or (isinstance(child, list) and not child):
                continue
            out.append(name)
            out.append("=")
            _write(child, out)
            out.append(",")
        out.append(")")
    elif isinstance(value, list):
        out.append("[")
        for item in value:
            _write(item, out)
            out.append(",")
        out.append("]")
    else:
        out.append(f"{type(value).__name__}:{value!r}")
