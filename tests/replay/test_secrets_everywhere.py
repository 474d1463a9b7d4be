"""No secret in any output (loopspec issue #14): an error body that echoes a key, a ``?key=`` in
``api_base``, a ``token=`` in a tool error and a credential environment value are redacted in the
cassette, the halt message, the consumers, the trace and ``--json``. What a secret is lives in one
module, :mod:`loopspec.wire.redaction`; each output redacts through it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from loopspec.cli import main
from loopspec.engine.consumers import Consumers
from loopspec.engine.turn import Turn
from loopspec.language import load_policy_text
from loopspec.replay.cassette import Cassette, Expectations, ToolOutcome, cassette_to_data
from loopspec.replay.inproc import InProcessProvider
from loopspec.replay.interactions import ErrorResponse
from loopspec.replay.redact import safe_dump
from loopspec.replay.server import LoopbackServer
from loopspec.wire.redaction import REDACTED, redact_text

from _paths import DEFAULT_POLICY

KEY = "sk-proj-ABCDEFGHIJKLMNOP1234"
QUERY_KEY = "QUERYKEY12345"
TOKEN = "TOKVALUE999"
LITERAL = "plain-literal-key-4711"  # no key shape: only the caller can name it
SECRETS = (KEY, QUERY_KEY, TOKEN)
BODY = {"error": {"message": f"invalid key {KEY} for https://api.example/v1?key={QUERY_KEY}, token={TOKEN}", "code": "invalid_api_key"}}

# default.yaml, with the auth halt quoting the provider's message
POLICY_TEXT = DEFAULT_POLICY.read_text().replace(
    'message: "The model provider rejected the credentials (HTTP {status}). Check your API key."',
    'message: "The provider said: {message}"',
)


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("https://generativelanguage.googleapis.com/v1?key=AbC123&alt=sse", "https://generativelanguage.googleapis.com/v1?key=<redacted>&alt=sse"),
        ("tool failed: token=abc123def (expired)", "tool failed: token=<redacted> (expired)"),
        ("next page_token=xyz&limit=5", "next page_token=<redacted>&limit=5"),
        ("X-Amz-Signature=deadbeef", "X-Amz-Signature=<redacted>"),
        ("monkey=5 max_tokens=5 tokens=7", "monkey=5 max_tokens=5 tokens=7"),
    ],
)
def test_parameter_secrets_are_redacted_and_lookalikes_are_not(text: str, redacted: str) -> None:
    assert redact_text(text) == redacted
    assert redact_text(redacted) == redacted


def test_a_recorded_api_base_and_tool_error_reach_the_cassette_redacted() -> None:
    c = Cassette(
        name="r", file="", messages=({"role": "user", "content": "hi"},),
        interactions=(ErrorResponse(401, BODY),),
        tool_results=(ToolOutcome("fetch", error=f"401 from upstream: token={TOKEN}"),),
        expect=Expectations(), source={"api_base": f"https://api.example/v1?key={QUERY_KEY}"},
    )
    text = safe_dump(cassette_to_data(c))
    assert not any(s in text for s in SECRETS), text
    assert "api_base: https://api.example/v1?key=<redacted>" in text


def test_an_error_body_that_echoes_a_key_reaches_no_output_in_process() -> None:
    policy = load_policy_text(POLICY_TEXT)
    seen: list[str] = []
    consumers = Consumers(on_delta=seen.append, on_interim=lambda m, _done: seen.append(m), on_status=seen.append)
    turn = Turn(policy, InProcessProvider([ErrorResponse(401, BODY)]), model="openai/replay", consumers=consumers)
    result = asyncio.run(turn.run([{"role": "user", "content": "hi"}]))
    assert result.outcome == "auth_failed"
    assert "invalid key <redacted> for https://api.example/v1?key=<redacted>, token=<redacted>" in result.message
    outputs = {
        "halt message": result.message,
        "error": result.error or "",
        "consumers": "\n".join(seen),
        "trace": json.dumps([s.attrs for s in result.trace], default=str),
        "json": json.dumps(result.to_json(), default=str),
    }
    for where, text in outputs.items():
        assert not any(s in text for s in SECRETS), where
        assert REDACTED in text, where


@pytest.mark.slow
def test_the_callers_literal_key_echoed_over_http_is_redacted(loop: asyncio.AbstractEventLoop) -> None:
    from loopspec.providers.litellm_provider import LiteLLMProvider

    body = {"error": {"message": f"Incorrect API key provided: {LITERAL}", "code": "invalid_api_key"}}
    policy = load_policy_text(POLICY_TEXT)
    with LoopbackServer([ErrorResponse(401, body)]) as srv:
        turn = Turn(policy, LiteLLMProvider(), model="openai/gpt-test", api_base=srv.api_base, api_key=LITERAL)
        result = loop.run_until_complete(turn.run([{"role": "user", "content": "hi"}]))
    assert result.outcome == "auth_failed"
    assert LITERAL not in result.message and LITERAL not in json.dumps(result.to_json(), default=str)
    assert REDACTED in result.message


@pytest.mark.slow
def test_run_json_prints_no_key(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    machine = tmp_path / "quoting.yaml"
    machine.write_text(POLICY_TEXT)
    monkeypatch.setenv("ACME_SERVICE_TOKEN", "env-credential-0815")
    body = {"error": {"message": f"bad key {LITERAL}; env-credential-0815; {KEY}", "code": "invalid_api_key"}}
    with LoopbackServer([ErrorResponse(401, body)]) as srv:
        rc = main(["run", "hi", "--machine", str(machine), "--model", "openai/gpt-test", "--api-base", srv.api_base,
                   "--api-key", LITERAL, "--json"])
    out = capsys.readouterr().out
    assert rc == 1 and json.loads(out)["outcome"] == "auth_failed"
    for s in (LITERAL, "env-credential-0815", KEY):
        assert s not in out
    assert REDACTED in out


def test_an_in_band_stream_error_that_quotes_a_key_is_redacted() -> None:
    from loopspec.providers.base import StreamBroken
    from loopspec.providers.chunks import delta_from_chunk_dict

    with pytest.raises(StreamBroken) as caught:
        delta_from_chunk_dict({"error": {"message": f"upstream rejected {KEY} (token={TOKEN})"}})
    message = caught.value.event.attrs["message"]
    assert message == f"upstream rejected {REDACTED} (token={REDACTED})"
    assert KEY not in str(caught.value)


@pytest.mark.slow
def test_rerun_prints_no_credential_environment_value(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    machine = tmp_path / "quoting.yaml"
    machine.write_text(POLICY_TEXT)
    cassette = tmp_path / "c.cassette.yaml"
    cassette.write_text("loopspec_cassette: 1\nmessages: [{role: user, content: hi}]\ninteractions: [{reply: {text: a}}]\n")
    monkeypatch.setenv("ACME_SERVICE_TOKEN", "env-credential-0815")
    body = {"error": {"message": "bad credential env-credential-0815", "code": "invalid_api_key"}}
    with LoopbackServer([ErrorResponse(401, body)]) as srv:
        rc = main(["rerun", str(cassette), "--machine", str(machine), "--model", "openai/gpt-test", "--api-base", srv.api_base,
                   "--api-key", LITERAL])
    out = capsys.readouterr().out
    assert rc == 1 and "bad credential <redacted>" in out and "env-credential-0815" not in out
