"""The cassette reader on bad input: each malformed part of a cassette gets one diagnostic that
names its path and says what is wrong, the rest of the file is still read (so every mistake is
reported in one go), and nothing raises but ``load_cassette``.

Each row below takes a minimal valid cassette and replaces or adds one top-level key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from loopspec.language import codes
from loopspec.replay.cassette import CassetteError, load_cassette, read_cassette

VALID: dict[str, Any] = {
    "loopspec_cassette": 1,
    "messages": [{"role": "user", "content": "hi"}],
    "interactions": [{"reply": {"text": "hello"}}],
}

# key -> bad value, the diagnostic's path, a piece of its message
BAD: dict[str, tuple[str, Any, str, str]] = {
    "top level not a map": ("", ["a", "list"], "", "a cassette's top level"),
    "message not a map": ("messages", [{"role": "user", "content": "hi"}, "hi"], "messages[1]", "a message"),
    "message role": ("messages", [{"role": "robot", "content": "x"}], "messages[0].role", "'robot' is not system, user, assistant or tool"),
    "no messages": ("messages", [], "messages", "at least one initial message"),
    "tool not a map": ("tools", ["t"], "tools[0]", "a tool"),
    "tool without name": ("tools", [{"description": "x"}], "tools[0].name", "a tool needs a name"),
    "interaction not a map": ("interactions", ["x"], "interactions[0]", "an interaction"),
    "two forms": ("interactions", [{"reply": {"text": "a"}, "sse": "data: x"}], "interactions[0]", "exactly one of"),
    "error without status": ("interactions", [{"error": {"body": "x"}}], "interactions[0].error", "an integer 'status'"),
    "completion not a map": ("interactions", [{"completion": "x"}], "interactions[0].completion", "a completion body"),
    "sse not text": ("interactions", [{"sse": ["data: x"]}], "interactions[0].sse", "raw SSE text"),
    "sse_file missing": ("interactions", [{"sse_file": "nowhere.sse"}], "interactions[0].sse_file", "cannot read 'nowhere.sse'"),
    "chunks not a list": ("interactions", [{"chunks": {"a": 1}}], "interactions[0].chunks", "chunks"),
    "reply not a map": ("interactions", [{"reply": "hello"}], "interactions[0].reply", "a reply"),
    "tool call without name": ("interactions", [{"reply": {"tool_calls": [{"arguments": {}}]}}], "interactions[0].reply.tool_calls[0]", "a tool call needs a name"),
    "tool result not a map": ("tool_results", ["ok"], "tool_results[0]", "a tool result"),
    "tool result both": ("tool_results", [{"tool": "t", "result": "a", "error": "b"}], "tool_results[0]", "exactly one of result, error or blocks: true"),
    "expect not a map": ("expect", ["completed"], "expect", "expect"),
    "unknown outcome": ("expect", {"outcome": "complete"}, "expect.outcome", "unknown outcome 'complete'"),
    "renamed property": ("expect", {"properties": ["halt_message_nonempty"]}, "expect.properties", "is now called 'halt_message'"),
    "unknown property": ("expect", {"properties": ["halts_eventually"]}, "expect.properties", "unknown property 'halts_eventually'"),
    "request without index": ("expect", {"requests": [{"tools": "present"}]}, "expect.requests[0].index", "a request expectation"),
    "request tools": ("expect", {"requests": [{"index": 1, "tools": "maybe"}]}, "expect.requests[0].tools", "'present' or 'absent'"),
    "max_fires negative": ("expect", {"max_fires": {"a --b[0]--> c": -1}}, "expect.max_fires.a --b[0]--> c", "must be a whole number"),
    "max_fires bool": ("expect", {"max_fires": {"a --b[0]--> c": True}}, "expect.max_fires.a --b[0]--> c", "must be a whole number"),
    "trace step": ("trace", [{"state": "a", "event": "b"}], "trace[0]", "state, event and target"),
}


def write(tmp_path: Path, key: str, value: Any) -> str:
    doc: Any = value if key == "" else {**VALID, key: value}
    path = tmp_path / "bad.cassette.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def test_the_base_cassette_is_valid(tmp_path: Path) -> None:
    cassette, diags = read_cassette(write(tmp_path, "name", "base"))
    assert diags == [] and cassette is not None and cassette.name == "base"


@pytest.mark.parametrize("name", sorted(BAD))
def test_one_mistake_one_diagnostic(name: str, tmp_path: Path) -> None:
    key, value, path, message = BAD[name]
    cassette, diags = read_cassette(write(tmp_path, key, value))
    assert cassette is None
    assert [d.path for d in diags] == [path], [d.format() for d in diags]
    assert message in diags[0].message, diags[0].format()
    assert diags[0].pos is not None, "every diagnostic points into the file"
    with pytest.raises(CassetteError):
        load_cassette(write(tmp_path, key, value))


def test_every_mistake_is_reported_in_one_go(tmp_path: Path) -> None:
    doc = {
        **VALID,
        "loopspec_cassette": 2,
        "messages": [{"role": "robot"}],
        "expect": {"outcome": "complete", "properties": ["halts_eventually"]},
        "trace": ["x"],
    }
    path = tmp_path / "bad.cassette.yaml"
    path.write_text(yaml.safe_dump(doc))
    cassette, diags = read_cassette(str(path))
    assert cassette is None
    assert [d.path for d in diags] == ["loopspec_cassette", "messages[0].role", "expect.outcome", "expect.properties", "trace[0]"]
    assert diags[0].code == codes.CASSETTE_VERSION
