"""The expression language of `when` conditions (issue 6): parsed, never eval'd."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from gitpipe.pipeline.expr import ExprError, Value, parse


def nothing_known(ref: str) -> Value | None:
    return None


def holds(source: str, values: Mapping[str, Value] | None = None) -> bool:
    """Parse with every reference left for run time, then evaluate with ``values``."""
    return parse(source, nothing_known).evaluate(values or {})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 < 2", True),
        ("2 < 1", False),
        ("2 <= 2", True),
        ("3 > 2.5", True),
        ("2 >= 2.0", True),
        ("1 == 1.0", True),
        ("1 != 2", True),
        ("-1 < 0", True),
        ("1e3 == 1000", True),
        ("'a' < 'b'", True),
        ("\"rf\" == 'rf'", True),
        ("true == true", True),
        ("false != true", True),
    ],
)
def test_comparisons_of_numbers_strings_and_booleans(source, expected):
    assert holds(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("true and false", False),
        ("true or false", True),
        ("not false", True),
        ("not not true", True),
        ("1 < 2 and 2 < 3", True),
        ("1 > 2 or 2 > 3", False),
    ],
)
def test_and_or_not(source, expected):
    assert holds(source) is expected


def test_not_binds_tighter_than_and_which_binds_tighter_than_or():
    # `or` lowest: true or (false and false) -> true; ((true or false) and false) would be false
    assert holds("true or false and false") is True
    # `not` before `and`: (not false) and false -> false; not (false and false) would be true
    assert holds("not false and false") is False
    assert holds("not (false and false)") is True
    assert holds("(true or false) and false") is False


def test_references_are_read_at_evaluation_time():
    condition = parse("${steps.evaluate.metrics.accuracy} >= 0.9", nothing_known)
    assert condition.refs == ("steps.evaluate.metrics.accuracy",)
    assert condition.evaluate({"steps.evaluate.metrics.accuracy": 0.91}) is True
    assert condition.evaluate({"steps.evaluate.metrics.accuracy": 0.85}) is False
    assert condition.shown({"steps.evaluate.metrics.accuracy": 0.85}) == "0.85 >= 0.9"


def test_references_known_at_parse_time_are_filled_in_and_not_left_for_later():
    def resolve(ref: str) -> Value | None:
        return "rf" if ref == "matrix.model" else None

    condition = parse("${matrix.model} == 'rf' and ${steps.t.metrics.m} > 1", resolve)
    assert condition.refs == ("steps.t.metrics.m",)
    assert condition.evaluate({"steps.t.metrics.m": 2}) is True
    assert condition.shown({"steps.t.metrics.m": 2}) == "'rf' == 'rf' and 2 > 1"


def test_equality_across_types_is_false_not_an_error():
    assert holds("1 == '1'") is False
    assert holds("1 != '1'") is True
    assert holds("true == 1") is False
    assert holds("'true' == true") is False


@pytest.mark.parametrize("source", ["'a' < 1", "1 >= 'b'", "true < 2"])
def test_ordering_a_string_and_a_number_is_an_error(source):
    with pytest.raises(ExprError, match="cannot order"):
        holds(source)


def test_a_number_where_true_or_false_is_needed_is_an_error():
    with pytest.raises(ExprError, match="not true or false"):
        holds("1 and true")
    with pytest.raises(ExprError, match="not true or false"):
        holds("${x}", {"x": 0.5})


def test_a_chained_comparison_is_rejected():
    with pytest.raises(ExprError, match="chained comparison"):
        parse("0 < ${x} < 1", nothing_known)


@pytest.mark.parametrize("word", ["accuracy", "True", "nothing", "is"])
def test_an_unknown_word_is_rejected(word):
    with pytest.raises(ExprError, match=f"unknown word '{word}'"):
        parse(f"{word} == 1", nothing_known)


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os').system('touch pwned')",
        "open('/etc/passwd')",
        "1 + 1 == 2",
        "[1] == [1]",
        "x.y == 1",
        "1 if true else 2",
        "(1 < 2",
        "1 <",
        "",
        "   ",
        "and",
        "1 2",
    ],
)
def test_anything_outside_the_language_is_a_parse_error_and_nothing_is_evaluated(
    source, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ExprError):
        parse(source, nothing_known)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_value_at_evaluation_time_is_an_error():
    condition = parse("${steps.a.metrics.b} > 1", nothing_known)
    with pytest.raises(ExprError, match="no value for"):
        condition.evaluate({})
