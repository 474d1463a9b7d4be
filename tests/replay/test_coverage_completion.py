"""A recorded non-streaming ``chat.completion`` body replayed to a turn, which always streams: the
body is served as stream chunks (``completion_chunks``), and what the turn reads back is the
recorded message, its tool calls and its usage, under both transports."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopspec import load_policy
from loopspec.replay.cassette import load_cassette
from loopspec.replay.harness import replay
from loopspec.replay.interactions import StreamResponse, completion_chunks, fold_stream

from _paths import DEFAULT_POLICY

BODY: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini",
    "system_fingerprint": "fp_1",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": '{"path": "a"}'}},
                    {"id": "call_2", "type": "function", "function": {"name": "read_file", "arguments": '{"path": "b"}'}},
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
}


def test_completion_chunks_carry_the_whole_message() -> None:
    chunks = completion_chunks(BODY)
    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 2
    assert all(c["id"] == "chatcmpl-1" and c["system_fingerprint"] == "fp_1" for c in chunks)
    delta = chunks[0]["choices"][0]["delta"]
    assert "content" not in delta, "a None field is left out of the delta"
    assert [tc["index"] for tc in delta["tool_calls"]] == [0, 1]
    assert chunks[0]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[1]["choices"] == [] and chunks[1]["usage"] == BODY["usage"]


def test_folding_the_chunks_gives_the_body_back() -> None:
    folded = fold_stream(StreamResponse(chunks=completion_chunks(BODY)))
    message = folded["choices"][0]["message"]
    assert [tc["function"] for tc in message["tool_calls"]] == [tc["function"] for tc in BODY["choices"][0]["message"]["tool_calls"]]
    assert folded["choices"][0]["finish_reason"] == "tool_calls"
    assert folded["usage"] == BODY["usage"]
    assert (folded["id"], folded["model"], folded["system_fingerprint"]) == ("chatcmpl-1", "gpt-4o-mini", "fp_1")


def text_body(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


@pytest.mark.parametrize("transport", ["inproc", "http"])
def test_a_completion_interaction_replays_to_a_streaming_turn(transport: str, tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    doc = {
        "loopspec_cassette": 1,
        "messages": [{"role": "user", "content": "read a and b"}],
        "tools": [{"name": "read_file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}],
        "interactions": [{"completion": BODY}, {"completion": text_body("Both files read.")}],
        "tool_results": [{"tool": "read_file", "result": "A"}, {"tool": "read_file", "result": "B"}],
        "expect": {"outcome": "completed", "model_calls": 2, "tool_batches": 1, "final_response_contains": "Both files read."},
    }
    path = tmp_path / "completion.cassette.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    report = loop.run_until_complete(replay(load_cassette(str(path)), load_policy(str(DEFAULT_POLICY)), transport=transport))  # type: ignore[arg-type]
    assert report.verdict == "pass", report.failures
    assert [(s.state, s.event) for s in report.result.trace][:3] == [
        ("call_model", "opened"), ("read_stream", "tool_calls"), ("run_tools", "ok"),
    ], json.dumps([(s.state, s.event) for s in report.result.trace])
