"""The cassette writer and reader agree on every field: a cassette that sets each one (every
interaction form with its faults, tools with descriptions and approval, error results, every
expectation, a stored trace) is written and read back equal."""

from __future__ import annotations

from pathlib import Path

import yaml

from loopspec.replay.cassette import load_cassette, write_cassette

FULL = {
    "loopspec_cassette": 1,
    "name": "full",
    "doc": "Every field.",
    "source": {"recorded_by": "a test"},
    "model": "openai/gpt-4o-mini",
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "go\non"}],
    "tools": [
        {"name": "read_file", "description": "Read a file.", "parameters": {"type": "object"}},
        {"name": "rm", "parameters": {"type": "object"}, "needs_approval": True},
    ],
    "interactions": [
        {"sse": 'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\ndata: [DONE]\n\n', "stall_after": 1, "stall_seconds": 2.5},
        {"chunks": [{"choices": [{"index": 0, "delta": {"content": "y"}}]}], "disconnect_after": 1},
        {"error": {"status": 429, "body": {"error": {"message": "slow down"}}, "headers": {"retry-after": "3"}}},
        {"completion": {"choices": [{"index": 0, "message": {"role": "assistant", "content": "z"}, "finish_reason": "stop"}]}},
    ],
    "tool_results": [{"tool": "read_file", "result": "A"}, {"tool": "rm", "error": "denied"}],
    "expect": {
        "outcome": "completed",
        "model_calls": 4,
        "tool_batches": 1,
        "final_response_contains": ["z"],
        "message_contains": ["z"],
        "all_played": True,
        "requests": [{"index": 1, "tools": "present", "prompt_contains": "go"}],
        "properties": ["halts", "history_valid"],
        "max_fires": {"read_stream --text[0]--> call_model": 2},
    },
    "trace": [{"state": "call_model", "event": "opened", "target": "read_stream", "transition": "call_model --opened[0]--> read_stream"}],
}


def test_every_field_survives_a_write_and_a_read(tmp_path: Path) -> None:
    src = tmp_path / "full.cassette.yaml"
    src.write_text(yaml.safe_dump(FULL, sort_keys=False))
    first = load_cassette(str(src))
    out = tmp_path / "again.cassette.yaml"
    write_cassette(first, str(out))
    again = load_cassette(str(out))
    assert again == type(first)(**{**vars(first), "file": again.file})
    written = yaml.safe_load(out.read_text())
    assert {k: v for k, v in written.items()} == FULL, "the writer writes exactly what the reader read"
