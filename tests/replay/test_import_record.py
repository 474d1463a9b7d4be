"""``loopspec import`` and ``loopspec record``: transcripts and live turns become cassettes that
load, replay under the default policy, and carry no secret.

The upstream for ``record`` is the product's loopback replay server (real HTTP, real litellm).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from loopspec.cli import main
from loopspec.replay.cassette import read_cassette
from loopspec.replay.importer import TranscriptError, import_transcript
from loopspec.replay.interactions import ErrorResponse, StreamResponse
from loopspec.replay.recorder import REDACTED, redact, redact_chunks, redact_text, safe_dump
from loopspec.replay.server import LoopbackServer
from loopspec.replay.synth import reply, reply_chunks

from _paths import DEFAULT_POLICY

SECRET = "sk-live-PLANTED0123456789abcdef"
SCALE = 0.05
"""Time compression for the live turns here: the stall timer is 3 s of wall time, which a loaded
machine does not miss between two chunks; the 30 s rate-limit backoff costs 1.5 s."""
POLICY = str(DEFAULT_POLICY)

TOOLS = [{"type": "function", "function": {"name": "word_count", "description": "Count words",
                                           "parameters": {"type": "object", "properties": {"text": {"type": "string"}},
                                                          "required": ["text"]}}}]
SESSION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "How many words are in 'a b c'?"},
    {"role": "assistant", "content": None, "reasoning_content": "Count them with the tool.",
     "tool_calls": [{"id": "call_A", "type": "function", "function": {"name": "word_count", "arguments": "{\"text\": \"a b c\"}"}}]},
    {"role": "tool", "tool_call_id": "call_A", "content": "3"},
    {"role": "assistant", "content": "There are 3 words."},
]


def _replay(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    capsys.readouterr()
    rc = main(["replay", str(path), "--machine", POLICY, "--json", *extra])
    out = json.loads(capsys.readouterr().out)
    assert rc == (0 if out["ok"] else 1)
    return out["cassettes"][0]


# ------------------------------------------------------------------------------------ import


@pytest.mark.parametrize("form", ["array", "object", "jsonl"])
def test_import_round_trip_tool_calls_then_answer(tmp_path: Path, form: str, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / f"session.{'jsonl' if form == 'jsonl' else 'json'}"
    if form == "array":
        src.write_text(json.dumps(SESSION))
    elif form == "object":
        src.write_text(json.dumps({"messages": SESSION, "tools": TOOLS}))
    else:
        src.write_text("\n".join(json.dumps(m) for m in SESSION) + "\n")
    out = tmp_path / "session.cassette.yaml"
    assert main(["import", str(src), "-o", str(out), "--name", "imported"]) == 0

    c, diags = read_cassette(str(out))
    assert c is not None, [d.format() for d in diags]
    assert c.name == "imported"
    assert [m["role"] for m in c.messages] == ["system", "user"]
    assert len(c.interactions) == 2
    assert [(r.tool, r.result) for r in c.tool_results] == [("word_count", "3")]
    tool = c.tools[0]
    assert tool.name == "word_count"
    assert tool.parameters == (TOOLS[0]["function"]["parameters"] if form == "object" else {"type": "object"})
    # The written reply: form reads back into exactly the chunks the importer built.
    built = import_transcript(str(src)).cassette
    assert c.interactions == built.interactions
    first = c.interactions[0]
    assert isinstance(first, StreamResponse)
    assert first.chunks == tuple(reply_chunks("", reasoning="Count them with the tool.",
                                              tool_calls=[("word_count", '{"text": "a b c"}')]))

    report = _replay(out, capsys)
    assert report["verdict"] == "pass", report["failures"]
    assert (report["outcome"], report["model_calls"], report["tool_batches"]) == ("completed", 2, 1)
    assert report["final_response"] == "There are 3 words."
    assert report["unconsumed"] == 0


def test_import_keeps_raw_arguments_finish_reason_and_parts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    session = [
        {"role": "user", "content": [{"type": "text", "text": "Read config.yaml"}]},
        *[{"role": "assistant", "content": "", "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "read_file", "arguments": '{"path": config.yaml}'}}]}
          for i in range(3)],
    ]
    src = tmp_path / "malformed.json"
    src.write_text(json.dumps({"messages": session, "tools": [{"name": "read_file", "parameters": {
        "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}]}))
    out = tmp_path / "m.cassette.yaml"
    assert main(["import", str(src), "-o", str(out)]) == 0
    assert "arguments: '{\"path\": config.yaml}'" in out.read_text()
    report = _replay(out, capsys)
    assert report["outcome"] == "malformed" and report["verdict"] == "pass"

    length = [{"role": "user", "content": "Write a long essay"},
              {"role": "assistant", "content": "Once upon", "finish_reason": "length"},
              {"role": "user", "content": "continue"},
              {"role": "assistant", "content": " a time."}]
    src2 = tmp_path / "length.jsonl"
    src2.write_text("\n".join(json.dumps(m) for m in length))
    out2 = tmp_path / "l.cassette.yaml"
    assert main(["import", str(src2), "-o", str(out2)]) == 0
    assert "left out" in capsys.readouterr().err  # the later user message is the policy's job
    c, _ = read_cassette(str(out2))
    assert c is not None and c.interactions[0].chunks[-1]["choices"][0]["finish_reason"] == "length"
    report = _replay(out2, capsys)
    assert report["verdict"] == "pass" and report["model_calls"] == 2


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("notjson.json", "{not json", r"notjson\.json:1:2: error: not JSON"),
        ("bad.jsonl", '{"role": "user", "content": "hi"}\n{"role": "assistant", "content": "x"\n',
         r"bad\.jsonl:2:\d+: error: line 2 is not JSON"),
        ("scalar.jsonl", '{"role": "user", "content": "hi"}\n42\n', r"scalar\.jsonl:2:1: error: line 2 is a number"),
        ("shape.json", '{"msgs": []}', r"shape\.json: error: a transcript object needs a 'messages' key \(at \$\)"),
        ("role.json", '[{"role": "user", "content": "hi"}, {"role": "robot"}]',
         r"role\.json: error: message role 'robot' .* \(at \$\[1\]\.role\)"),
        ("orphan.json", json.dumps([SESSION[1], SESSION[2], {"role": "tool", "tool_call_id": "call_Z", "content": "3"}]),
         r"orphan\.json: error: tool result answers tool_call_id 'call_Z'.*\(at \$\[2\]\.tool_call_id\)\n    hint: tool call ids so far: call_A"),
        ("orphan.jsonl", "\n".join(json.dumps(m) for m in [SESSION[1], {"role": "tool", "tool_call_id": "x", "content": ""}]),
         r"orphan\.jsonl:2:1: error: tool result answers tool_call_id 'x'"),
        ("nocall.json", json.dumps({"messages": [SESSION[1], {"role": "assistant", "tool_calls": [{"function": {}}]}]}),
         r"nocall\.json: error: a tool call needs function\.name \(at \$\.messages\[1\]\.tool_calls\[0\]\)"),
        ("nouser.json", '[{"role": "system", "content": "x"}]', r"nouser\.json: error: the transcript has no user message"),
        ("empty.json", "  \n", r"empty\.json: error: the transcript is empty"),
    ],
)
def test_import_bad_input_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, expected: str) -> None:
    src = tmp_path / name
    src.write_text(text)
    out = tmp_path / "x.cassette.yaml"
    capsys.readouterr()
    assert main(["import", str(src), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert re.search(re.escape(str(tmp_path)) + "/" + expected, err), err
    assert "Traceback" not in err
    assert not out.exists()
    with pytest.raises(TranscriptError):
        import_transcript(str(src))


def test_import_redacts_secrets(tmp_path: Path) -> None:
    session = [{"role": "user", "content": f"use key {SECRET}"},
               {"role": "assistant", "content": f"Using Authorization: Bearer {SECRET[3:]} now"}]
    src = tmp_path / "s.json"
    src.write_text(json.dumps(session))
    out = tmp_path / "s.cassette.yaml"
    assert main(["import", str(src), "-o", str(out)]) == 0
    text = out.read_text()
    assert SECRET not in text and SECRET[3:] not in text and "PLANTED" not in text
    assert text.count(REDACTED) == 2


# ------------------------------------------------------------------------------------ redaction


def test_redact_text_and_structures() -> None:
    cases = {
        f"Authorization: Bearer {SECRET}": f"Authorization: Bearer {REDACTED}",
        "x-api-key: sk-ant-api03-AAAAAAAAAAAAAAAAAAAA": f"x-api-key: {REDACTED}",
        "GET /v1?api_key=hunter2hunter2&x=1": f"GET /v1?api_key={REDACTED}&x=1",
        '{"api_key": "abc123abc"}': '{"api_key": "' + REDACTED + '"}',
        "https://bob:pw1234@example.com/v1": f"https://{REDACTED}@example.com/v1",
        "max_tokens: 100 and prompt_tokens: 7": "max_tokens: 100 and prompt_tokens: 7",
        "(api_key=sk-proj-Zq81uXv3LmT9aPfW2sKd)": f"(api_key={REDACTED})",
        "api_key:\n  type: string": "api_key:\n  type: string",
    }
    for before, after in cases.items():
        assert redact_text(before) == after
        assert redact_text(after) == after  # idempotent
    assert redact_text("my token is abcdefgh1", ["abcdefgh1"]) == f"my token is {REDACTED}"
    data = {"headers": {"Authorization": "Bearer x", "X-API-Key": "zz"}, "list": [SECRET], "n": 3}
    assert redact(data) == {"headers": {"Authorization": REDACTED, "X-API-Key": REDACTED}, "list": [REDACTED], "n": 3}


def test_redact_chunks_catches_a_secret_split_across_chunks() -> None:
    chunks = reply_chunks(f"key {SECRET} end", tool_calls=[("save", {"token": SECRET})], piece=5)
    assert not any(SECRET in json.dumps(c) for c in chunks)  # split, so a per-chunk pass would miss it
    out = redact_chunks(chunks)
    assert len(out) == len(chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in out)
    args = "".join(tc["function"]["arguments"] for c in out for tc in c["choices"][0]["delta"].get("tool_calls") or [])
    assert text == f"key {REDACTED} end"
    assert json.loads(args) == {"token": REDACTED}
    assert "PLANTED" not in safe_dump({"interactions": [{"chunks": chunks}]})


# ------------------------------------------------------------------------------------ record


def test_record_against_loopback_redacts_and_replays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    upstream = [
        ErrorResponse(429, {"error": {"message": f"Rate limit reached for key {SECRET}", "code": "rate_limit_exceeded"}},
                      {"retry-after": "0"}),
        reply(f"Counting. Your key {SECRET} is safe with me.", tool_calls=[("word_count", {"text": f"a b {SECRET}"})]),
        reply(f"There are 3 words. (key: {SECRET})"),
    ]
    out = tmp_path / "rec.cassette.yaml"
    with LoopbackServer(upstream) as srv:
        rc = main(["record", "--machine", POLICY, "--model", "openai/gpt-test", "--api-base", srv.api_base,
                   "--api-key", SECRET, "--time-scale", str(SCALE), "-o", str(out),
                   f"Count the words in 'a b c'. My api_key={SECRET}"])
    assert rc == 0, capsys.readouterr().err
    assert len(srv.requests) == 3
    text = out.read_text()
    for needle in (SECRET, "PLANTED", SECRET[-12:]):
        assert needle not in text
    c, diags = read_cassette(str(out))
    assert c is not None, [d.format() for d in diags]
    assert isinstance(c.interactions[0], ErrorResponse) and c.interactions[0].status == 429
    assert c.expect.outcome == "completed" and c.expect.model_calls == 3 and c.expect.tool_batches == 1
    assert [s.event for s in c.trace][:2] == ["rate_limit", "opened"]
    assert [r.tool for r in c.tool_results] == ["word_count"]
    report = _replay(out, capsys, "--transport", "inproc")
    assert report["verdict"] == "pass", report["failures"]
    assert report["trace_divergence"] is None
    # over HTTP at the same compression as the recording (the CLI's default 0.01 makes the stall
    # timer 0.6 s of wall time, which a loaded machine can miss between two chunks)
    import asyncio

    from loopspec.language.validate import validate_file
    from loopspec.replay.harness import replay

    policy, _ = validate_file(POLICY)
    http = asyncio.run(replay(c, policy, transport="http", time_scale=SCALE))
    assert http.verdict == "pass", http.failures
    assert http.divergence is None


def test_record_api_keeps_tool_results_stalls_and_breaks_without_secrets(tmp_path: Path) -> None:
    import asyncio

    from loopspec.engine.clock import ScaledClock
    from loopspec.engine.tools import ToolRegistry
    from loopspec.replay.harness import replay
    from loopspec.replay.recorder import record_turn
    from loopspec.language.validate import validate_file

    policy, _ = validate_file(POLICY)
    tools = ToolRegistry()
    tools.register(lambda name: f"the secret for {name} is {SECRET}", name="lookup",
                   parameters={"type": "object", "properties": {"name": {"type": "string"}}})

    async def go():  # type: ignore[no-untyped-def]
        async with LoopbackServer([
            reply("Looking it", tool_calls=[("lookup", {"name": "db"})]),
            reply("The answer is taking a while", stall_after=3, stall_seconds=100),
            StreamResponse(sse='data: {"choices":[{"index":0,"delta":{"content":"Lon"}}]}\n\n'
                               'event: error\ndata: {"error":{"message":"Tool call validation failed"}}\n\n'),
            reply(f"Done; it was {SECRET}."),
        ]) as srv:
            rec = await record_turn(policy, [{"role": "user", "content": "look up db"}], model="openai/x", tools=tools,
                                    api_base=srv.api_base, api_key="sk-loopspec-test", clock=ScaledClock(0.01))
        path = tmp_path / "api.cassette.yaml"
        text = rec.write(str(path))
        c, diags = read_cassette(str(path))
        assert c is not None, diags
        return rec, text, c, await replay(c, policy), await replay(c, policy, transport="http")

    rec, text, c, inproc, http = asyncio.run(go())
    assert SECRET not in text and "PLANTED" not in text
    assert c.tool_results[0].tool == "lookup" and REDACTED in (c.tool_results[0].result or "")
    stalled = c.interactions[1]
    assert isinstance(stalled, StreamResponse) and stalled.stall_after == len(stalled.chunks or ())
    assert stalled.stall_seconds > policy.settings.stall_timeout
    assert c.interactions[2].chunks[-1] == {"error": {"message": "Tool call validation failed"}}
    assert [s.event for s in rec.result.trace].count("stalled") == 1
    for report in (inproc, http):
        assert report.verdict == "pass", report.failures
        assert report.divergence is None
