"""The small, safe expression language of `when` conditions.

    when = "${steps.evaluate.metrics.accuracy} >= 0.9 and not ${params.quick}"

Values are numbers, strings ('single' or "double" quoted), `true`/`false` and
``${...}`` references; operators are ``== != < <= > >=``, ``and``, ``or``, ``not``
and parentheses.  Nothing is ever passed to :func:`eval`: the text is tokenised and
parsed here into a tree of tuples, and evaluated against the values of its
references.  Malformed text raises :class:`ExprError` at parse time, so a bad
condition is a pipeline-file error before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Value = bool | int | float | str

COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")

_TOKEN = re.compile(
    r"""
    \s*(?:
      (?P<ref>\$\{[^}]*\})
    | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
    | (?P<string>"[^"\\]*"|'[^'\\]*')
    | (?P<op>==|!=|<=|>=|<|>|\(|\))
    | (?P<word>[A-Za-z_]\w*)
    )""",
    re.VERBOSE,
)


class ExprError(ValueError):
    """A condition that does not parse, or cannot be evaluated with the values given."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition: its text as written, its tree, and the references it reads."""

    source: str
    tree: tuple[Any, ...]
    refs: tuple[str, ...]  # the references left to resolve at run time, e.g. "steps.a.metrics.b"
    #: the references filled in when it was parsed (params, matrix values), to be shown
    known: tuple[tuple[str, Value], ...] = ()

    def evaluate(self, values: Mapping[str, Value]) -> bool:
        """The condition's truth, given a value for each of :attr:`refs`."""
        result = _evaluate(self.tree, values)
        if not isinstance(result, bool):
            raise ExprError(f"{self.source!r} gives {_show(result)}, not true or false")
        return result

    def renamed(self, mapping: Mapping[str, str], source: str) -> Condition:
        """The same condition reading renamed references (``mapping``: old -> new)."""

        def walk(node: tuple[Any, ...]) -> tuple[Any, ...]:
            if node[0] == "ref":
                return ("ref", mapping.get(node[1], node[1]))
            if node[0] == "value":
                return node
            return tuple(walk(n) if isinstance(n, tuple) else n for n in node)

        return Condition(
            source, walk(self.tree), tuple(mapping.get(r, r) for r in self.refs), self.known
        )

    def shown(self, values: Mapping[str, Value]) -> str:
        """The condition with its references replaced by their values (``values`` for
        those read at run time), for messages."""
        text = self.source
        for ref, value in (*self.known, *values.items()):
            text = re.sub(r"\$\{\s*" + re.escape(ref) + r"\s*\}", lambda _, v=value: _show(v), text)
        return text


def parse(source: str, resolve: Callable[[str], Value | None]) -> Condition:
    """Parse ``source``; ``resolve`` gives a reference's value now (params, matrix)
    or None to leave it for run time."""
    tokens = _tokenise(source)
    parser = _Parser(tokens, resolve, source)
    tree = parser.disjunction()
    if parser.pos != len(tokens):
        raise ExprError(f"unexpected {tokens[parser.pos][1]!r} in {source!r}")
    return Condition(source, tree, tuple(dict.fromkeys(parser.refs)), tuple(parser.known.items()))


def _tokenise(source: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    text = source.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            rest = text[pos:].strip()
            raise ExprError(f"cannot read {rest[:20]!r} in {source!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    if not tokens:
        raise ExprError("the condition is empty")
    return tokens


class _Parser:
    """Recursive descent over the tokens; depth is bounded by the text's parentheses."""

    def __init__(
        self, tokens: list[tuple[str, str]], resolve: Callable[[str], Value | None], source: str
    ) -> None:
        self.tokens = tokens
        self.resolve = resolve
        self.source = source
        self.pos = 0
        self.refs: list[str] = []
        self.known: dict[str, Value] = {}

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ExprError(f"{self.source!r} ends too early")
        self.pos += 1
        return token

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token == ("word", word)

    def disjunction(self) -> tuple[Any, ...]:
        node = self.conjunction()
        while self.is_word("or"):
            self.take()
            node = ("or", node, self.conjunction())
        return node

    def conjunction(self) -> tuple[Any, ...]:
        node = self.negation()
        while self.is_word("and"):
            self.take()
            node = ("and", node, self.negation())
        return node

    def negation(self) -> tuple[Any, ...]:
        if self.is_word("not"):
            self.take()
            return ("not", self.negation())
        return self.comparison()

    def comparison(self) -> tuple[Any, ...]:
        node = self.atom()
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in COMPARISONS:
            self.take()
            node = ("cmp", token[1], node, self.atom())
            after = self.peek()
            if after is not None and after[0] == "op" and after[1] in COMPARISONS:
                raise ExprError(
                    f"chained comparison in {self.source!r}; join comparisons with `and`"
                )
        return node

    def atom(self) -> tuple[Any, ...]:
        kind, text = self.take()
        if kind == "op" and text == "(":
            node = self.disjunction()
            if self.take() != ("op", ")"):
                raise ExprError(f"a '(' is not closed in {self.source!r}")
            return node
        if kind == "number":
            number = float(text)
            return ("value", int(text) if re.fullmatch(r"-?\d+", text) else number)
        if kind == "string":
            return ("value", text[1:-1])
        if kind == "word" and text in ("true", "false"):
            return ("value", text == "true")
        if kind == "ref":
            ref = text[2:-1].strip()
            value = self.resolve(ref)
            if value is not None:
                self.known[ref] = value
                return ("value", value)
            self.refs.append(ref)
            return ("ref", ref)
        if kind == "word":
            raise ExprError(
                f"unknown word {text!r} in {self.source!r} (quote strings; "
                "write references as ${...})"
            )
        raise ExprError(f"unexpected {text!r} in {self.source!r}")


def _evaluate(node: tuple[Any, ...], values: Mapping[str, Value]) -> Value:
    kind = node[0]
    if kind == "value":
        return node[1]  # type: ignore[no-any-return]
    if kind == "ref":
        if node[1] not in values:
            raise ExprError(f"no value for ${{{node[1]}}}")
        return values[node[1]]
    if kind == "not":
        return not _truth(_evaluate(node[1], values))
    if kind == "and":
        return _truth(_evaluate(node[1], values)) and _truth(_evaluate(node[2], values))
    if kind == "or":
        return _truth(_evaluate(node[1], values)) or _truth(_evaluate(node[2], values))
    op, left, right = node[1], _evaluate(node[2], values), _evaluate(node[3], values)
    return _compare(op, left, right)


def _truth(value: Value) -> bool:
    if not isinstance(value, bool):
        raise ExprError(f"{_show(value)} is not true or false; compare it with something")
    return value


def _compare(op: str, left: Value, right: Value) -> bool:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right))
    if op in ("==", "!="):
        same = left == right if numbers or type(left) is type(right) else False
        return same if op == "==" else not same
    if not numbers and not (isinstance(left, str) and isinstance(right, str)):
        raise ExprError(f"cannot order {_show(left)} and {_show(right)} with {op}")
    a: Any = left
    b: Any = right
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _show(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return str(value)
