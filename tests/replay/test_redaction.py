"""Every key shape the redactor claims, one example per provider prefix, kept out of cassettes: in
plain text, in structures, split across streamed chunks, and through ``record_turn`` end to end.

The examples are checked against the redactor's own pattern table (``redact._KEY_PATTERNS``), so a
pattern added there without an example here fails, and an example no pattern matches fails too.
None of the keys is handed to the recorder as a literal secret: only the patterns can catch them.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from loopspec import ToolRegistry, load_policy
from loopspec.engine.clock import ScaledClock
from loopspec.wire import redaction as redact_module
from loopspec.replay.cassette import read_cassette
from loopspec.replay.interactions import ErrorResponse, stream_chunks
from loopspec.replay.recorder import REDACTED, record_turn, redact, redact_chunks, redact_text, safe_dump
from loopspec.replay.server import LoopbackServer
from loopspec.replay.synth import reply, reply_chunks

from _paths import DEFAULT_POLICY

BODY = "Zq81uXv3LmT9aPfW2sKdYh6Rb4NcEe0Gj7"  # 34 letters and digits, no word break inside

KEYS = {
    "openai": "sk-" + BODY,
    "openai project": "sk-proj-" + BODY,
    "anthropic": "sk-ant-api03-" + BODY,
    "openrouter": "sk-or-v1-" + BODY,
    "stripe-style live": "sk-live-" + BODY,
    "stripe-style test": "sk-test-" + BODY,
    "groq": "gsk_" + BODY,
    "xai": "xai-" + BODY,
    "google": "AIza" + BODY + "_-x",
    "hugging face": "hf_" + BODY,
    "github personal": "ghp_" + BODY,
    "github oauth": "gho_" + BODY,
    "github user-to-server": "ghu_" + BODY,
    "github server-to-server": "ghs_" + BODY,
    "github refresh": "ghr_" + BODY,
    "aws access key id": "AKIA" + "Q7X2M4N8P1R5T3V9",
}


def test_every_pattern_of_the_redactor_has_an_example_and_every_example_a_pattern() -> None:
    patterns = [re.compile(p) for p in redact_module._KEY_PATTERNS]
    for p in patterns:
        assert any(p.fullmatch(k) for k in KEYS.values()), f"no example for the redactor's pattern {p.pattern}"
    for name, key in KEYS.items():
        assert any(p.fullmatch(key) for p in patterns), f"{name}: no pattern of the redactor matches {key}"


def test_every_sk_prefix_the_redactor_names_has_an_example() -> None:
    (sk,) = [p for p in redact_module._KEY_PATTERNS if "sk-" in p and "gsk" not in p]
    prefixes = re.search(r"\(\?:([^)]*)\)", sk)
    assert prefixes is not None
    for prefix in prefixes.group(1).split("|"):
        assert any(k.startswith("sk-" + prefix) for k in KEYS.values()), prefix


@pytest.mark.parametrize("name", sorted(KEYS))
def test_a_key_in_prose_is_redacted_with_no_hint_from_a_field_name(name: str) -> None:
    key = KEYS[name]
    assert redact_text(f"Here you go: {key}. Keep it safe.") == f"Here you go: {REDACTED}. Keep it safe."
    assert redact_text(f'"{key}"') == f'"{REDACTED}"'
    assert redact({"content": [f"({key})"], "note": {"n": 1}}) == {"content": [f"({REDACTED})"], "note": {"n": 1}}


@pytest.mark.parametrize("name", sorted(KEYS))
def test_a_key_split_across_streamed_chunks_is_redacted(name: str) -> None:
    key = KEYS[name]
    chunks = reply_chunks(f"use {key} now", tool_calls=[("save", {"value": key})], piece=5)
    assert not any(key in json.dumps(c) for c in chunks), "split, so a per-chunk pass cannot see it"
    out = redact_chunks(chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in out)
    args = "".join(tc["function"]["arguments"] for c in out for tc in c["choices"][0]["delta"].get("tool_calls") or [])
    assert text == f"use {REDACTED} now"
    assert json.loads(args) == {"value": REDACTED}
    dumped = safe_dump({"interactions": [{"chunks": chunks}], "messages": [{"role": "user", "content": key}]})
    assert key not in dumped and BODY not in dumped


def test_record_turn_writes_no_key_of_any_provider(tmp_path: Path) -> None:
    """A live turn (litellm against the loopback server) whose error body, streamed text, tool
    arguments, tool result and final answer carry every key: the written cassette holds none,
    and it still loads and replays."""
    keys = list(KEYS.values())
    policy = load_policy(str(DEFAULT_POLICY))
    tools = ToolRegistry()
    tools.register(lambda name: f"the keys for {name}: " + " ".join(keys), name="lookup",
                   parameters={"type": "object", "properties": {"name": {"type": "string"}}})
    upstream = [
        ErrorResponse(429, {"error": {"message": "Rate limit reached for key " + keys[6], "code": "rate_limit_exceeded"}},
                      {"retry-after": "0"}),
        reply("Looking up " + ", ".join(keys), tool_calls=[("lookup", {"name": "prod " + " ".join(keys)})]),
        reply("Done: " + " | ".join(keys)),
    ]

    async def go():  # type: ignore[no-untyped-def]
        async with LoopbackServer(upstream) as srv:
            return await record_turn(policy, [{"role": "user", "content": "look up prod"}], model="openai/x", tools=tools,
                                     api_base=srv.api_base, api_key="sk-loopspec-recording-key", clock=ScaledClock(0.05))

    rec = asyncio.run(go())
    assert rec.result.outcome == "completed" and rec.result.usage.tool_batches == 1
    assert not any(k in rec.secrets for k in keys), "only the patterns can catch these keys"
    path = tmp_path / "keys.cassette.yaml"
    text = rec.write(str(path))
    assert path.read_text() == text
    for name, key in KEYS.items():
        assert key not in text, f"{name} key written"
    assert BODY not in text
    c, diags = read_cassette(str(path))
    assert c is not None, [d.format() for d in diags]
    streamed = "".join(
        (ch.get("delta") or {}).get("content") or ""
        for it in c.interactions if not isinstance(it, ErrorResponse)
        for chunk in stream_chunks(it) for ch in chunk.get("choices") or []
    )
    assert streamed.count(REDACTED) == 2 * len(keys)
    assert (c.tool_results[0].result or "").count(REDACTED) == 2 * len(keys)  # the arguments echoed, then the result
