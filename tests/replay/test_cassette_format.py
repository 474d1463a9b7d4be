"""The cassette format: its JSON Schema matches what the reader accepts, and a bad cassette gets
``file:line:col`` diagnostics with a hint."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from _paths import FIXTURES
from loopspec.cli import main
from loopspec.replay.cassette import EXPECT_KEYS, INTERACTION_FORMS, PROPERTIES, TOP_KEYS, read_cassette
from loopspec.replay.cassette_schema import UNDESCRIBED, cassette_json_schema

INCIDENTS = sorted((FIXTURES / "incidents").glob("*.cassette.yaml"))
_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "boolean": bool,
          "null": type(None)}


def schema_errors(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "$") -> list[str]:
    """A tiny JSON Schema checker: $ref, type, const, enum, required, properties,
    additionalProperties, items, minItems, minimum, maximum, oneOf, anyOf. Enough for this schema."""
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return schema_errors(value, node, root, path)
    errs: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(isinstance(value, _TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool)) for t in types)
        if not ok:
            return [f"{path}: expected {schema['type']}, got {type(value).__name__}"]
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):  # JSON: true is not 1
        errs.append(f"{path}: expected {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict):
        errs += [f"{path}: missing {k}" for k in schema.get("required", []) if k not in value]
        props = schema.get("properties", {})
        for k, v in value.items():
            if k in props:
                errs += schema_errors(v, props[k], root, f"{path}.{k}")
            elif schema.get("additionalProperties") is False:
                errs.append(f"{path}: unknown key {k}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errs += schema_errors(v, schema["additionalProperties"], root, f"{path}.{k}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errs.append(f"{path}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, v in enumerate(value):
                errs += schema_errors(v, schema["items"], root, f"{path}[{i}]")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < schema.get("minimum", value):
        errs.append(f"{path}: below {schema['minimum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > schema.get("maximum", value):
        errs.append(f"{path}: above {schema['maximum']}")
    if "oneOf" in schema:
        n = sum(1 for s in schema["oneOf"] if not schema_errors(value, s, root, path))
        if n != 1:
            errs.append(f"{path}: matches {n} of oneOf, expected exactly 1")
    if "anyOf" in schema and all(schema_errors(value, s, root, path) for s in schema["anyOf"]):
        errs.append(f"{path}: matches none of anyOf")
    return errs


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return cassette_json_schema()


def test_schema_names_what_the_reader_reads(schema: dict[str, Any]) -> None:
    assert set(schema["properties"]) == set(TOP_KEYS)
    assert set(schema["properties"]["expect"]["properties"]) == set(EXPECT_KEYS)
    assert schema["properties"]["expect"]["properties"]["properties"]["items"]["enum"] == list(PROPERTIES)
    forms = [alt["required"][0] for alt in schema["definitions"]["interaction"]["oneOf"]]
    assert forms == list(INTERACTION_FORMS)
    text = json.dumps(schema)  # serialisable
    assert UNDESCRIBED not in text, "cassette.py reads a key cassette_schema.py does not describe yet"


def test_cli_prints_the_schema(capsys: pytest.CaptureFixture[str], schema: dict[str, Any]) -> None:
    assert main(["cassette-schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema


@pytest.mark.parametrize("path", INCIDENTS, ids=lambda p: p.name.split(".")[0])
def test_every_incident_cassette_validates(path: Path, schema: dict[str, Any]) -> None:
    data = yaml.safe_load(path.read_text())
    assert schema_errors(data, schema, schema) == []
    c, diags = read_cassette(str(path))
    assert c is not None and not diags


def test_schema_rejects_what_the_reader_rejects(schema: dict[str, Any]) -> None:
    base = {"loopspec_cassette": 1, "messages": [{"role": "user", "content": "hi"}], "interactions": [{"reply": {"text": "x"}}]}
    assert schema_errors(base, schema, schema) == []
    bad = [
        dict(base, mesages=[]),
        dict(base, loopspec_cassette=2),
        dict(base, messages=[]),
        dict(base, messages=[{"role": "robot"}]),
        dict(base, interactions=[{"reply": {"text": "x"}, "sse": "data: {}\n\n"}]),
        dict(base, interactions=[{"stall_after": 1}]),
        dict(base, interactions=[{"reply": {"txt": "x"}}]),
        dict(base, interactions=[{"error": {"body": "no status"}}]),
        dict(base, tool_results=[{"tool": "t", "result": "a", "error": "b"}]),
        dict(base, tool_results=[{"tool": "t"}]),
        dict(base, expect={"outcome": "finished"}),
        dict(base, expect={"properties": ["history_vaild"]}),
        dict(base, expect={"requests": [{"index": 1, "tools": "maybe"}]}),
        dict(base, trace=[{"state": "a", "event": "b"}]),
        dict(base, expect={"max_fires": {"t": -1}}),
        dict(base, interactions=[{"error": {"status": 200}}]),
        dict(base, interactions=[{"error": {"status": 99999}}]),
        dict(base, messages=[{"role": "user", "content": {"text": "hi"}}]),
        dict(base, loopspec_cassette=True),
    ]
    for doc in bad:
        assert schema_errors(doc, schema, schema), doc


# ------------------------------------------------------------------------------------ diagnostics

GOOD = """\
loopspec_cassette: 1
name: good
messages:
  - {role: user, content: hi}
interactions:
  - reply: {text: hello}
"""


def _diags(tmp_path: Path, text: str) -> list[str]:
    p = tmp_path / "bad.cassette.yaml"
    p.write_text(text)
    c, diags = read_cassette(str(p))
    assert c is None and diags
    return [d.format() for d in diags]


def _one(tmp_path: Path, text: str, line: int, message: str, hint: str) -> None:
    out = _diags(tmp_path, text)
    assert len(out) == 1, out
    first, _, rest = out[0].partition("\n")
    assert re.match(rf".*bad\.cassette\.yaml:{line}:\d+: error: .*{message}", first), out[0]
    assert re.search(rf"hint: .*{hint}", rest), out[0]


def test_good_cassette_reads(tmp_path: Path) -> None:
    p = tmp_path / "good.cassette.yaml"
    p.write_text(GOOD)
    c, diags = read_cassette(str(p))
    assert c is not None and not diags


def test_unknown_top_key_did_you_mean(tmp_path: Path) -> None:
    _one(tmp_path, GOOD + "expext: {outcome: completed}\n", 7, "unknown key 'expext'", "did you mean 'expect'")


def test_bad_version(tmp_path: Path) -> None:
    _one(tmp_path, GOOD.replace("loopspec_cassette: 1", "loopspec_cassette: 2"), 1, "not a loopspec cassette version 1",
         "loopspec_cassette: 1")


def test_missing_sse_file(tmp_path: Path) -> None:
    _one(tmp_path, GOOD + "  - sse_file: streams/nope.sse\n", 7, "cannot read 'streams/nope.sse'", "relative to the cassette's folder")


def test_unknown_expectation_property(tmp_path: Path) -> None:
    _one(tmp_path, GOOD + "expect:\n  properties: [history_valid, no_partial_tool_execn]\n", 8,
         "unknown property 'no_partial_tool_execn'", "did you mean 'no_partial_tool_exec'")


def test_interaction_with_two_forms_position(tmp_path: Path) -> None:
    out = _diags(tmp_path, GOOD + "  - reply: {text: a}\n    sse: \"data: {}\\n\\n\"\n")
    assert len(out) == 1
    assert re.match(r".*bad\.cassette\.yaml:7:\d+: error: an interaction has exactly one of: sse, sse_file, chunks, "
                    r"reply, error, completion \(at interactions\[1\]\)", out[0]), out[0]


def test_interaction_with_two_forms_has_a_hint(tmp_path: Path) -> None:
    _one(tmp_path, GOOD + "  - reply: {text: a}\n    sse: \"data: {}\\n\\n\"\n", 7, "exactly one of", "reply.*sse")


def test_replay_cli_reports_diagnostics_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.cassette.yaml"
    p.write_text(GOOD + "expext: {}\n")
    assert main(["replay", str(p), "--machine", str(FIXTURES.parent / "machines" / "default.yaml")]) == 1
    err = capsys.readouterr().err
    assert f"{p}:7:1: error: unknown key 'expext'" in err and "Traceback" not in err


def test_cassette_errors_carry_their_own_codes(tmp_path: Path) -> None:
    """A misspelt key, a wrong type and a wrong version each get a code of their own (LS602-LS604),
    not the catch-all LS601, so a CI log can be searched by cause."""
    cases = {
        GOOD + "expext: {}\n": "LS602",
        GOOD.replace("messages:\n  - {role: user, content: hi}\n", "messages: hello\n"): "LS603",
        GOOD.replace("loopspec_cassette: 1", "loopspec_cassette: 7"): "LS604",
    }
    for text, code in cases.items():
        f = tmp_path / "c.cassette.yaml"
        f.write_text(text)
        _, diags = read_cassette(str(f))
        assert [d.code for d in diags][:1] == [code], [d.format() for d in diags]


@pytest.mark.parametrize("role", ["developer", "robot", "function"])
def test_a_message_role_outside_the_four_is_refused_where_it_is_written(tmp_path: Path, role: str) -> None:
    """A cassette's messages are system, user, assistant or tool (``loopspec import`` writes OpenAI's
    ``developer`` as system): the reader names the role and its place, and the schema agrees."""
    out = _diags(tmp_path, GOOD.replace("{role: user, content: hi}", f"{{role: {role}, content: hi}}"))
    assert len(out) == 1 and re.match(
        rf".*bad\.cassette\.yaml:4:\d+: error: message role '{role}' is not system, user, assistant or tool", out[0]
    ), out
    assert schema_errors({"loopspec_cassette": 1, "messages": [{"role": role, "content": "hi"}],
                          "interactions": [{"reply": {"text": "x"}}]}, cassette_json_schema(), cassette_json_schema())
