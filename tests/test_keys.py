"""Step keys: content decides them, nothing else; a golden digest pins the encoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitpipe.core.hashing import Digest, canonical, canonical_as_is, digest_bytes, digest_record
from gitpipe.identity.action import FINGERPRINT_SCHEMA, KEY_SCHEMA, fingerprint, key_record
from gitpipe.pipeline import spec

GOLDEN_PIPELINE = """
[params]
seed = 7
[params.train]
lr = 0.5

[steps.train]
cmd = ["python train.py --seed ${params.seed}", "echo done"]
deps = ["data/b.csv", "data/a/"]
outs = ["model.bin", "plots/"]
metrics = ["metrics.json"]
params = ["train"]
env = { MODE = "fast", THREADS = 2 }
wdir = "src"
desc = "free text, not hashed"
"""

DEP_DIGESTS = {
    "data/b.csv": digest_bytes(b"b"),
    "data/a/": digest_bytes(b"a"),
}
CODE_DIGESTS = {"src/util.py": digest_bytes(b"util")}

#: Changing this value must be a deliberate act: every stored result keyed by the
#: old encoding stops matching.  Bump KEY_SCHEMA when the record changes.
GOLDEN_KEY = "b3:f5d763eb4434253a0f6fd4a1404651681894b67633dcb436b3063d3bed65bb56"


def key_of(text: str) -> Digest:
    pipeline = spec.parse(text, file=Path("/somewhere/gitpipe.toml"))
    return key_record(pipeline.steps["train"], deps=DEP_DIGESTS, code=CODE_DIGESTS).key


def test_the_key_of_a_fixed_step_is_pinned():
    assert KEY_SCHEMA == "gitpipe.key/1"
    assert str(key_of(GOLDEN_PIPELINE)) == GOLDEN_KEY


def test_the_key_does_not_depend_on_where_the_pipeline_lives():
    pipeline = spec.parse(GOLDEN_PIPELINE, file=Path("/elsewhere/deep/gitpipe.toml"))
    key = key_record(pipeline.steps["train"], deps=DEP_DIGESTS, code=CODE_DIGESTS).key
    assert key == key_of(GOLDEN_PIPELINE)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('deps = ["data/b.csv", "data/a/"]', 'deps = ["data/a/", "data/b.csv"]'),
        ('outs = ["model.bin", "plots/"]', 'outs = ["plots/", "model.bin"]'),
        ('outs = ["model.bin", "plots/"]', 'outs = ["./model.bin", "plots//"]'),
        ('desc = "free text, not hashed"', 'desc = "something else entirely"'),
        ("[params]", "# a comment\n[params]  # another"),
        ('env = { MODE = "fast", THREADS = 2 }', 'env = { THREADS = 2, MODE = "fast" }'),
        ("[steps.train]", "[steps.train]\nalways = false\ncache = true\ntimeout = 5"),
    ],
    ids=["deps order", "outs order", "path spelling", "desc", "comments", "env order", "flags"],
)
def test_edits_that_do_not_change_what_runs_keep_the_key(old, new):
    assert old in GOLDEN_PIPELINE
    assert key_of(GOLDEN_PIPELINE.replace(old, new)) == key_of(GOLDEN_PIPELINE)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("--seed ${params.seed}", "--seed  ${params.seed}"),
        ("seed = 7", "seed = 8"),
        ("lr = 0.5", "lr = 0.25"),
        ('MODE = "fast"', 'MODE = "slow"'),
        ('wdir = "src"', 'wdir = "."'),
        ('outs = ["model.bin", "plots/"]', 'outs = ["model.bin", "plots/", "extra.txt"]'),
        ('"echo done"]', '"echo done", "echo more"]'),
    ],
    ids=["cmd whitespace", "used param", "param table", "env", "wdir", "outs", "cmd list"],
)
def test_edits_that_change_what_runs_change_the_key(old, new):
    assert old in GOLDEN_PIPELINE
    assert key_of(GOLDEN_PIPELINE.replace(old, new)) != key_of(GOLDEN_PIPELINE)


def test_dep_and_code_digests_enter_the_key():
    pipeline = spec.parse(GOLDEN_PIPELINE, file=Path("gitpipe.toml"))
    step = pipeline.steps["train"]
    base = key_record(step, deps=DEP_DIGESTS, code=CODE_DIGESTS).key
    other_dep = {**DEP_DIGESTS, "data/b.csv": digest_bytes(b"B")}
    other_code = {"src/util.py": digest_bytes(b"UTIL")}
    assert key_record(step, deps=other_dep, code=CODE_DIGESTS).key != base
    assert key_record(step, deps=DEP_DIGESTS, code=other_code).key != base


def test_an_unused_param_does_not_enter_the_key():
    with_extra = GOLDEN_PIPELINE.replace("seed = 7", "seed = 7\nunused = 1")
    assert key_of(with_extra) == key_of(GOLDEN_PIPELINE)


EVERY_TOML_VALUE = """
[params]
text = "Grüße, \\"quoted\\" \\\\ back\\tslash \\u0001"
whole = 9007199254740993
big = -170141183460469231731687303715884105727
ratio = 0.1
tiny = 5e-324
huge = 1.7976931348623157e308
nan = nan
inf = -inf
yes = true
day = 2026-12-07
moment = 2026-12-07T15:27:23.123456+01:00
local = 2026-12-07T15:27:23
clock = 07:32:00.999
nested = { a = [1, 2.5, "x", [true, { deep = [] }]], empty = {} }
tables = [ { n = 1 }, { n = 2 } ]

[steps.all]
cmd = "echo ${params.text}"
deps = ["data/b.csv"]
outs = ["out.txt"]
params = ["text", "whole", "big", "ratio", "tiny", "huge", "nan", "inf", "yes", "day",
          "moment", "local", "clock", "nested", "tables"]
env = { MODE = "fast", THREADS = 2, EMPTY = "" }
"""


@pytest.mark.parametrize(
    "record",
    [
        {"a": 1, "b": [1, 2.5, None, True, "é"], "c": {"z": {}, "a": []}},
        {"nan": float("nan")},
        {"inf": [float("inf")]},
        {"when": __import__("datetime").date(2026, 12, 7)},
        {"digest": digest_bytes(b"x")},
        {"path": Path("a/b")},
        {"tuple": (1, ("a", "b"))},
        {"big": 2**80, "neg": -(2**70), "float": 1e-7},
    ],
)
def test_a_record_encoded_as_it_is_gives_the_canonical_bytes(record: dict[str, object]) -> None:
    """What keys and fingerprints are encoded with (canonical_as_is) is the one
    canonical encoding, whatever the record holds: a value the generic walk would
    rewrite (a date, a digest, a non-finite float) sends it down that walk."""
    assert canonical_as_is(record) == canonical(record)


@pytest.mark.parametrize(
    "value",
    [
        {"b": [1, 2.5, None, True, False], "a": {"z": {}, "y": []}, "": "empty key"},
        {"text": 'é ü \u2603 \U0001f600 tab\t nl\n quote" back\\ nul\x00 del\x7f'},
        {"big": 2**80, "neg": -(2**70), "tiny": 1e-7, "huge": 1e300, "zero": -0.0},
        {"Z": 1, "a": 2, "é": 3, "e\u0301": 4, "10": 5, "9": 6},
        ["a", {"b": "c"}, [[], {}]],
        "a string alone",
        12,
    ],
)
def test_the_canonical_encoding_is_json_dumps_with_sorted_keys_compact_and_utf8(
    value: object,
) -> None:
    """The encoder is made once and reused (gitpipe.core.hashing._compact); what it
    writes is exactly what `json.dumps` writes with these options, which the golden
    key pins."""
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical(value) == expected.encode("utf-8")
    if isinstance(value, dict):
        assert canonical_as_is(value) == expected.encode("utf-8")


def test_every_toml_value_in_a_step_s_params_keys_it_as_the_canonical_record_would() -> None:
    """A step's key is the digest of its record's canonical encoding, for params of
    every kind TOML has (dates, times, nan, big integers, arrays of tables)."""
    pipeline = spec.parse(EVERY_TOML_VALUE, file=Path("gitpipe.toml"))
    step = pipeline.steps["all"]
    record = key_record(step, deps={"data/b.csv": digest_bytes(b"b")}, code=CODE_DIGESTS)
    assert record.key == digest_record(record.as_record())
    assert fingerprint(pipeline, {"all": CODE_DIGESTS}) == digest_record(
        {
            "schema": FINGERPRINT_SCHEMA,
            "params": dict(pipeline.params),
            "steps": {
                "all": {
                    "cmd": list(step.cmd),
                    "wdir": step.wdir,
                    "deps": ["data/b.csv"],
                    "outs": ["out.txt"],
                    "metrics": [],
                    "after": [],
                    "params": dict(step.params),
                    "env": dict(step.env),
                    "code": {path: str(d) for path, d in sorted(CODE_DIGESTS.items())},
                }
            },
        }
    )
