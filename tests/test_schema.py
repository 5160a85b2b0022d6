"""`gitpipe schema`: the JSON Schema of the pipeline file, for editors.

The schema is a file shipped in the package (gitpipe/pipeline/gitpipe.schema.json) and
the command prints it as is. These tests hold it to the parser: the same fields in
every table, the same choices, every example pipeline valid, and a misspelt field or a
wrong type refused by both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from gitpipe.core import tomlcache
from gitpipe.core.errors import PipelineError
from gitpipe.pipeline import nested, parser, spec, step_fields
from gitpipe.pipeline.model import CODE_DIGESTS, LINKS

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "gitpipe" / "pipeline" / "gitpipe.schema.json"
EXAMPLES = sorted(ROOT.glob("examples/**/gitpipe.toml"))


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SHIPPED.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator(schema) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def errors(validator: Draft202012Validator, text: str) -> list[str]:
    """The schema's complaints about the pipeline TOML ``text``, as 'at KEY: message'."""
    found = validator.iter_errors(tomlcache.loads(text))
    return [f"at {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in found]


def parses(text: str, folder: Path, files: dict[str, str] | None = None) -> bool:
    """Whether gitpipe's parser takes the pipeline TOML ``text`` (nesting ``files``)."""
    try:
        spec.parse(text, file=folder / "gitpipe.toml", read=(files or {}).__getitem__)
    except PipelineError:
        return False
    return True


# --- the command and the shipped file ----------------------------------------------


def test_gitpipe_schema_prints_the_shipped_schema(workspace, validator):
    printed = workspace.ok("schema").stdout
    assert printed == SHIPPED.read_text(encoding="utf-8")
    assert json.loads(printed)["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert not (workspace.root / "gitpipe.toml").exists()  # needs no pipeline, writes none


def test_the_schema_is_shipped_beside_the_parser():
    assert spec.schema_text() == SHIPPED.read_text(encoding="utf-8")


def test_the_schema_names_the_fields_the_parser_knows(schema):
    defs = schema["$defs"]
    top = schema["properties"]
    assert set(top) == parser.TOP_LEVEL
    assert set(top["pipeline"]["properties"]) == parser.PIPELINE_FIELDS
    assert set(top["hooks"]["properties"]) == parser.HOOK_FIELDS
    assert set(top["remote"]["properties"]) == parser.REMOTE_FIELDS
    assert set(defs["commandStep"]["properties"]) == step_fields.STEP_FIELDS
    assert set(defs["nestedStep"]["properties"]) == nested.NESTED_FIELDS
    assert tuple(defs["codeDigest"]["enum"]) == CODE_DIGESTS
    assert tuple(defs["link"]["enum"]) == LINKS
    steps = top["steps"]["propertyNames"]
    assert steps["maxLength"] == parser.MAX_NAME_BYTES
    # a table gitpipe checks field by field refuses a field it does not know
    for table in (schema, top["pipeline"], top["hooks"], top["remote"]):
        assert table["additionalProperties"] is False
    for table in (defs["commandStep"], defs["nestedStep"]):
        assert table["additionalProperties"] is False


# --- the pipelines users write are valid -------------------------------------------


def test_there_are_example_pipelines_to_check():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("file", EXAMPLES, ids=lambda f: str(f.relative_to(ROOT)))
def test_every_example_pipeline_is_valid(validator, file):
    text = file.read_text(encoding="utf-8")
    assert errors(validator, text) == []
    spec.parse(text, file=file)  # and gitpipe takes it too


def test_the_starter_gitpipe_init_writes_is_valid_with_its_steps_uncommented(workspace, validator):
    workspace.ok("init")
    text = (workspace.root / "gitpipe.toml").read_text(encoding="utf-8")
    assert errors(validator, text) == []
    uncommented = re.sub(r"(?m)^# (?=\[steps\.|\w+ = )", "", text)
    assert bool(tomlcache.loads(uncommented).get("steps")) == ("# [steps." in text)
    assert errors(validator, uncommented) == []


#: pipelines gitpipe parses, between them using every field of every table
VALID = {
    "every step field": """\
        #:schema ./.gitpipe-schema.json
        [pipeline]
        name = "everything"
        code_digest = "bytes"
        link = "hardlink"
        environment = "imports"

        [params]
        seed = 7
        train = { l2 = 1.0, features = ["a", "b"] }

        [steps.prepare]
        desc = "Split."
        cmd = ["echo ${params.seed} > data.csv", "true"]
        deps = "raw.csv"
        outs = ["data.csv"]
        params = ["train.l2"]
        code = ["src/*.py"]
        env = { SEED = "${params.seed}", THREADS = 4, FAST = true, RATE = 0.5 }
        wdir = "."
        always = false
        cache = true
        persist = false
        frozen = false
        timeout = 2.5
        retries = 2
        resources = { cpus = 2, gpu = 0.5 }
        code_digest = "ast"
        link = "copy"
        approval = false
        environment = ["git"]
        deterministic = true

        [steps.train]
        matrix = { lr = [0.1, 0.2], model = [{ name = "small", size = 1 }] }
        cmd = "echo ${matrix.lr} > model-${matrix.lr}.txt"
        deps = ["data.csv"]
        outs = ["model-${matrix.lr}.txt"]
        after = ["prepare"]
        when = "${params.seed} > 3"

        [steps.score]
        fn = "src.score:main"
        metrics = ["score.json"]
        plots = ["curve.csv"]

        [hooks]
        before_step = "echo start"
        after_step = ["echo done"]
        on_failure = []
        fail = false

        [remote]
        url = "s3://bucket/prefix"
        """,
    "a nested pipeline": """\
        [steps.fetch]
        cmd = "echo > raw.csv"
        outs = ["raw.csv"]

        [steps.sub]
        pipeline = "sub/gitpipe.toml"
        after = ["fetch"]
        desc = "The inner pipeline."
        """,
    "no tables at all": "",
}
NESTED = {"sub/gitpipe.toml": '[steps.inner]\ncmd = "echo > x.txt"\nouts = ["x.txt"]\n'}


def test_the_valid_pipelines_use_every_field():
    tables = [tomlcache.loads(re.sub(r"(?m)^ {8}", "", text)) for text in VALID.values()]
    used = {field for data in tables for body in data.get("steps", {}).values() for field in body}
    assert used >= step_fields.STEP_FIELDS | nested.NESTED_FIELDS
    assert {field for data in tables for field in data.get("hooks", {})} == parser.HOOK_FIELDS


@pytest.mark.parametrize("text", list(VALID.values()), ids=list(VALID))
def test_a_pipeline_gitpipe_parses_is_valid(validator, tmp_path, text):
    text = re.sub(r"(?m)^ {8}", "", text)
    assert parses(text, tmp_path, NESTED)
    assert errors(validator, text) == []


# --- a mistake is flagged by the schema as by gitpipe ------------------------------

#: (pipeline, the key the schema names): each is an error to gitpipe too
INVALID = {
    "a misspelt step field": ('[steps.a]\ncmd = "echo"\ndepz = ["x"]\n', "steps.a"),
    "a timeout that is not a number": (
        '[steps.a]\ncmd = "echo"\ntimeout = "soon"\n',
        "steps.a.timeout",
    ),
    "a timeout of zero": ('[steps.a]\ncmd = "echo"\ntimeout = 0\n', "steps.a.timeout"),
    "negative retries": ('[steps.a]\ncmd = "echo"\nretries = -1\n', "steps.a.retries"),
    "retries as a float": ('[steps.a]\ncmd = "echo"\nretries = 1.5\n', "steps.a.retries"),
    "a misspelt table": ('[stpes.a]\ncmd = "echo"\n', ""),
    "a misspelt pipeline field": ('[pipeline]\nnmae = "x"\n', "pipeline"),
    "an unknown link": ('[pipeline]\nlink = "reflink"\n', "pipeline.link"),
    "an unknown environment": ('[pipeline]\nenvironment = "conda"\n', "pipeline.environment"),
    "a misspelt hook": ('[hooks]\nbefore = "echo"\n', "hooks"),
    "a misspelt remote field": ('[remote]\nurl = "s3://b/p"\nuri = "x"\n', "remote"),
    "a step without a command": ('[steps.a]\nouts = ["x"]\n', "steps.a"),
    "a step with cmd and fn": ('[steps.a]\ncmd = "echo"\nfn = "m:f"\n', "steps.a"),
    "a fn that is no reference": ('[steps.a]\nfn = "m.f"\n', "steps.a.fn"),
    "an empty command list": ("[steps.a]\ncmd = []\n", "steps.a.cmd"),
    "a blank command": ('[steps.a]\ncmd = " "\n', "steps.a.cmd"),
    "a list holding a number": ('[steps.a]\ncmd = "echo"\ndeps = ["x", 3]\n', "steps.a.deps"),
    "a boolean as text": ('[steps.a]\ncmd = "echo"\nalways = "yes"\n', "steps.a.always"),
    "an env list": ('[steps.a]\ncmd = "echo"\nenv = { A = [1] }\n', "steps.a.env.A"),
    "a negative resource": (
        '[steps.a]\ncmd = "echo"\nresources = { cpus = -1 }\n',
        "steps.a.resources.cpus",
    ),
    "an empty matrix axis": (
        '[steps.a]\ncmd = "echo"\nmatrix = { lr = [] }\n',
        "steps.a.matrix.lr",
    ),
    "a nested step with a command": (
        '[steps.a]\npipeline = "sub/gitpipe.toml"\ncmd = "echo"\n',
        "steps.a",
    ),
    "a bad step name": ('[steps."-a"]\ncmd = "echo"\n', "steps"),
    "a step that is not a table": ('steps = { a = "echo" }\n', "steps.a"),
}


@pytest.mark.parametrize(("text", "key"), list(INVALID.values()), ids=list(INVALID))
def test_a_mistake_is_flagged_by_the_schema_and_refused_by_gitpipe(validator, tmp_path, text, key):
    assert not parses(text, tmp_path, NESTED)
    found = errors(validator, text)
    assert found, "the schema takes what gitpipe refuses"
    assert any(e.startswith(f"at {key}:") for e in found), found
