"""``loopspec import`` on transcripts of every accepted shape and on wrong ones: each wrong shape is
one TranscriptError naming where it is; the accepted variants (parts lists, parsed arguments, a
tools line in JSONL, error results, results by tool name) become the cassette they describe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loopspec.replay.importer import TranscriptError, import_transcript

USER = {"role": "user", "content": "read a"}
CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": '{"path": "a"}'}}],
}
RESULT = {"role": "tool", "tool_call_id": "c1", "content": "A"}
DONE = {"role": "assistant", "content": "done"}


def imported(tmp_path: Path, doc: Any, raw: str | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "t.json"
    path.write_text(raw if raw is not None else json.dumps(doc))
    return import_transcript(str(path))


BAD: dict[str, tuple[Any, str, str]] = {
    # transcript -> the diagnostic's path, a piece of its message
    "messages not a list": ({"messages": {"role": "user"}}, "$.messages", "'messages' must be a list of messages, not an object"),
    "object without messages": ({"turns": []}, "$", "needs a 'messages' key"),
    "a bare string": ("hello", "$", "a list of messages or an object with 'messages', not a string"),
    "message not an object": ([USER, 3], "$[1]", "a message must be an object, not a number"),
    "no assistant": ([USER], "", "no assistant message after the first user message"),
    "content a number": ([USER, {"role": "assistant", "content": 5}], "$[1].content", "content must be text, a list of parts or null, not a number"),
    "tool_calls an object": ([USER, {"role": "assistant", "tool_calls": {"id": "x"}}], "$[1].tool_calls", "tool_calls must be a list, not an object"),
    "tool call without name": ([USER, {"role": "assistant", "tool_calls": [{"function": {}}]}], "$[1].tool_calls[0]", "a tool call needs function.name"),
    "finish a number": ([USER, {"role": "assistant", "content": "x", "finish_reason": 1}], "$[1].finish_reason", "finish_reason must be a string"),
    "unknown call id": ([USER, CALL, {**RESULT, "tool_call_id": "c9"}], "$[2].tool_call_id", "tool_call_id 'c9', which no earlier assistant tool call has"),
    "tools an object": ({"messages": [USER, CALL, RESULT, DONE], "tools": {"read_file": {}}}, "$.tools", "'tools' must be a list, not an object"),
    "tool without name": ({"messages": [USER, CALL, RESULT, DONE], "tools": [{"type": "function"}]}, "$.tools[0]", "a tool needs a name"),
    "tool parameters a list": (
        {"messages": [USER, CALL, RESULT, DONE], "tools": [{"type": "function", "function": {"name": "read_file", "parameters": []}}]},
        "$.tools[0].parameters",
        "parameters must be a JSON Schema object, not a list",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_wrong_shape_is_one_error_where_it_is(name: str, tmp_path: Path) -> None:
    doc, path, message = BAD[name]
    with pytest.raises(TranscriptError) as info:
        imported(tmp_path, doc)
    [d] = info.value.diagnostics
    assert d.path == path and message in d.message, d.format()


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(b"[\xff]")
    with pytest.raises(TranscriptError, match="not UTF-8 text"):
        import_transcript(str(path))


def test_jsonl_with_a_tools_line_blank_lines_and_parts(tmp_path: Path) -> None:
    tools = {"tools": [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]}
    parts = {"role": "assistant", "content": [{"type": "text", "text": "do"}, "ne"], "reasoning": [{"text": "think"}]}
    lines = [tools, USER, CALL, RESULT, parts]
    raw = "\n".join(json.dumps(x) for x in lines[:2]) + "\n\n" + "\n".join(json.dumps(x) for x in lines[2:]) + "\n"
    res = imported(tmp_path, None, raw)
    c = res.cassette
    assert [t.name for t in c.tools] == ["read_file"] and c.tools[0].parameters == {"type": "object"}
    assert [r["text"] for r in res.replies if "text" in r] == ["done"]
    assert res.replies[-1]["reasoning"] == "think"
    assert c.source["format"] == "jsonl"


def test_parsed_arguments_error_results_and_results_by_name(tmp_path: Path) -> None:
    call = {"role": "assistant", "tool_calls": [
        {"id": "c1", "function": {"name": "read_file", "arguments": {"path": "a"}}},
        {"function": {"name": "list_dir", "arguments": None}},
    ]}
    msgs = [USER, call, {"role": "tool", "tool_call_id": "c1", "content": {"ok": False}, "is_error": True},
            {"role": "tool", "name": "list_dir", "content": None}, DONE]
    res = imported(tmp_path, msgs)
    assert res.replies[0]["tool_calls"] == [{"name": "read_file", "arguments": '{"path": "a"}'}, {"name": "list_dir", "arguments": ""}]
    results = res.cassette.tool_results
    assert (results[0].tool, results[0].error, results[0].result) == ("read_file", '{"ok": false}', None)
    assert (results[1].tool, results[1].result) == ("list_dir", "")


def test_a_developer_message_opens_the_cassette_as_a_system_message_that_reads_back(tmp_path: Path) -> None:
    """OpenAI's ``developer`` role is the system prompt of newer models; a cassette's messages are
    system, user, assistant or tool, so the import writes it as ``system`` and the written
    cassette reads back (kept as ``developer``, ``loopspec import`` wrote a cassette that
    ``loopspec replay`` refused)."""
    from loopspec.cli import main
    from loopspec.replay.cassette import load_cassette

    src = tmp_path / "t.json"
    src.write_text(json.dumps([{"role": "developer", "content": "be brief"}, USER, DONE]))
    out = tmp_path / "t.cassette.yaml"
    assert main(["import", str(src), "-o", str(out)]) == 0
    assert [(m["role"], m["content"]) for m in load_cassette(str(out)).messages] == [("system", "be brief"), ("user", "read a")]


def test_a_called_tool_the_tools_list_leaves_out_is_noted_and_a_listed_one_is_not(tmp_path: Path) -> None:
    """The session's tools list did not have the tool the model called: replay presents it as an
    unknown tool, as the session did, and the import says so; when every called tool is listed,
    nothing is said."""
    read_file = {"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}
    other = {"type": "function", "function": {"name": "list_dir", "parameters": {"type": "object"}}}
    listed = imported(tmp_path, {"messages": [USER, CALL, RESULT, DONE], "tools": [read_file, other]})
    assert not any("does not list" in n for n in listed.notes)
    unlisted = imported(tmp_path, {"messages": [USER, CALL, RESULT, DONE], "tools": [other]})
    assert ("the model called tools the transcript's 'tools' does not list (read_file); replay presents them as "
            "unknown tools, as the session did") in unlisted.notes
