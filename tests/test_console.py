"""The console helpers messages share: a long list named a few at a time."""

from __future__ import annotations

import pytest

from gitpipe.core.console import first_of

NAMES = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    ("items", "limit", "options", "expected"),
    [
        ([], 3, {}, ""),
        (["a"], 3, {}, "a"),
        (NAMES[:3], 3, {}, "a, b, c"),
        (NAMES[:4], 3, {}, "a, b, c and 1 more"),
        (NAMES, 3, {}, "a, b, c and 2 more"),
        (NAMES, 5, {}, "a, b, c, d, e"),
        (NAMES, 2, {"sep": "; ", "more": "; and {} more"}, "a; b; and 3 more"),
        (NAMES[:2], 2, {"sep": "; ", "more": "; and {} more"}, "a; b"),
        (NAMES, 3, {"more": " (and {} more)"}, "a, b, c (and 2 more)"),
        (tuple(NAMES), 4, {}, "a, b, c, d and 1 more"),
        (["{x}", "{}"], 1, {}, "{x} and 1 more"),  # only ``more`` is a format
    ],
)
def test_first_of_names_the_first_few_then_how_many_more(
    items: list[str], limit: int, options: dict[str, str], expected: str
) -> None:
    assert first_of(items, limit, **options) == expected
