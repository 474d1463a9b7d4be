"""Classifier tests: replies, and REAL litellm exception objects for every row of
docs/providers.md ("How errors become events") (constructed the way litellm constructs them, no mocks)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from _paths import FIXTURES

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx  # noqa: E402
import litellm  # noqa: E402
from litellm.exceptions import MidStreamFallbackError  # noqa: E402
import pytest  # noqa: E402

from loopspec.wire.assemble import AssembledReply, AssembledToolCall  # noqa: E402
from loopspec.wire.classify import (  # noqa: E402
    broken_cause,
    canonical_arguments,
    classify_exception,
    classify_reply,
    validate_tool_arguments,
)
from loopspec.wire.deltas import Usage  # noqa: E402
from loopspec.providers.base import ProviderError, StreamBroken  # noqa: E402
from loopspec.language.alphabet import KINDS  # noqa: E402

litellm.suppress_debug_info = True
STREAMS = FIXTURES / "streams"
M, P = "x", "openai"  # model / provider as litellm names them for model="openai/x"


def body_message(name: str) -> str:
    return json.loads((STREAMS / name).read_text())["error"]["message"]


def call(exc: BaseException):
    ev = classify_exception(exc, phase="call")
    spec = KINDS["call"].event(ev.name)
    assert spec is not None, ev
    assert set(ev.attrs) <= {a.name for a in spec.attrs}
    return ev


def stream(exc: BaseException):
    ev = classify_exception(exc, phase="stream")
    assert KINDS["stream"].event(ev.name) is not None, ev
    return ev


def resp(status: int, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers or {}, request=httpx.Request("POST", "http://127.0.0.1/v1/chat/completions"))


def oai(msg: str) -> str:
    return f"OpenAIException - {msg}"  # how litellm's openai/ path words upstream messages


def midstream(original: BaseException, generated: str = "") -> BaseException:
    return MidStreamFallbackError(
        message=str(original), model=M, llm_provider=P, original_exception=original, generated_content=generated
    )


# -- §3 table rows (openai/ provider) -----------------------------------------------------------

CALL_ROWS = [
    ("429 rate limit", lambda: litellm.RateLimitError(oai(body_message("openai_error_429_rate_limit_requests.json")), P, M), "rate_limit", 429),
    ("429 insufficient_quota", lambda: litellm.RateLimitError(oai(body_message("openai_error_429_insufficient_quota.json")), P, M), "rate_limit", 429),
    ("429 openrouter", lambda: litellm.RateLimitError(oai(body_message("openrouter_error_429_upstream_rate_limited.json")), P, M), "rate_limit", 429),
    ("400 context_length_exceeded", lambda: litellm.ContextWindowExceededError(oai(body_message("openai_error_400_context_length_exceeded.json")), M, P), "context_overflow", 400),
    ("400 anthropic prompt too long via openai/", lambda: litellm.BadRequestError(oai(body_message("anthropic_error_400_prompt_too_long.json")), M, P), "context_overflow", 400),
    ("400 unsupported_parameter", lambda: litellm.BadRequestError(oai(body_message("openai_error_400_unsupported_parameter.json")), M, P), "bad_request", 400),
    ("500 server_error", lambda: litellm.InternalServerError(oai(body_message("openai_error_500_server_error.json")), P, M), "transient", 500),
    ("502", lambda: litellm.BadGatewayError(oai("Bad Gateway"), P, M), "transient", 502),
    ("503 overloaded", lambda: litellm.ServiceUnavailableError(oai(body_message("openai_error_503_model_overloaded.json")), P, M), "transient", 503),
    ("529 via openai/", lambda: litellm.APIError(529, oai(body_message("anthropic_error_529_overloaded.json")), P, M), "transient", 529),
    ("connection refused", lambda: litellm.InternalServerError(oai("Connection error."), P, M), "transient", 500),
    ("headers not sent within timeout", lambda: litellm.Timeout("APITimeoutError - Request timed out.", M, P), "timeout", 408),
    ("401", lambda: litellm.AuthenticationError(oai("Incorrect API key provided"), P, M), "auth", 401),
    ("403", lambda: litellm.PermissionDeniedError(oai("forbidden"), P, M, response=resp(403)), "auth", 403),
    ("missing credentials", lambda: litellm.InternalServerError(oai("Missing credentials. Please pass an `api_key`"), P, M), "auth", 500),
    ("404", lambda: litellm.NotFoundError(oai("model not found"), M, P), "bad_request", 404),
    ("422", lambda: litellm.UnprocessableEntityError(oai("bad"), M, P, response=resp(422)), "bad_request", 422),
    # §6 native anthropic/ provider
    ("anthropic 429", lambda: litellm.RateLimitError("AnthropicException - " + body_message("anthropic_error_429_rate_limit.json"), "anthropic", M), "rate_limit", 429),
    ("anthropic 529", lambda: litellm.InternalServerError("AnthropicException - Overloaded", "anthropic", M), "transient", 500),
    ("anthropic 400 prompt too long", lambda: litellm.ContextWindowExceededError("AnthropicException - " + body_message("anthropic_error_400_prompt_too_long.json"), M, "anthropic"), "context_overflow", 400),
    ("anthropic 500", lambda: litellm.InternalServerError("AnthropicException - " + body_message("anthropic_error_500_api_error.json"), "anthropic", M), "transient", 500),
    # the 400s the policy treats specially
    ("anthropic effort level", lambda: litellm.BadRequestError("AnthropicException - " + body_message("anthropic_error_400_invalid_request.json"), M, "anthropic"), "effort_unsupported", 400),
    ("openai reasoning_effort", lambda: litellm.BadRequestError(oai("Unsupported parameter: 'reasoning_effort' is not supported with this model."), M, P), "effort_unsupported", 400),
    ("thinking signature", lambda: litellm.BadRequestError("AnthropicException - messages.1.content.0: Invalid `signature` in `thinking` block", M, "anthropic"), "thinking_signature_invalid", 400),
    # configuration traps: never transient
    ("mcp missing", lambda: litellm.APIConnectionError("No module named 'mcp'", P, M), "bad_request", 500),
    ("tenacity missing", lambda: Exception("tenacity import failed please run `pip install tenacity`. ErrorNo module named 'tenacity'"), "bad_request", 0),
]


@pytest.mark.parametrize("label,make,name,status", CALL_ROWS, ids=[r[0] for r in CALL_ROWS])
def test_call_phase_rows(label, make, name, status):
    ev = call(make())
    assert ev.name == name, (label, ev)
    assert ev.attrs["status"] == status
    assert ev.attrs["message"]
    assert isinstance(ev.attrs["retry_after"], float)


def test_mcp_trap_message_is_clear():
    ev = call(litellm.APIConnectionError("No module named 'mcp'", P, M))
    assert "configuration error" in ev.attrs["message"] and "mcp" in ev.attrs["message"]


def test_retry_after_from_headers_and_message():
    e = litellm.RateLimitError(oai("slow down"), P, M, response=resp(429, {"retry-after": "7"}))
    assert call(e).attrs["retry_after"] == 7.0
    e = litellm.RateLimitError(oai("slow down"), P, M, response=resp(429, {"retry-after-ms": "1500"}))
    assert call(e).attrs["retry_after"] == 1.5
    e = litellm.RateLimitError(oai("slow down"), P, M, headers={"retry-after": "3"})
    assert call(e).attrs["retry_after"] == 3.0
    # OpenAI's body says "Please try again in 20s" and issue bodies lost the headers
    e = litellm.RateLimitError(oai(body_message("openai_error_429_rate_limit_exceeded_code.json")), P, M)
    assert call(e).attrs["retry_after"] == 20.0
    assert call(litellm.RateLimitError(oai("no hint"), P, M)).attrs["retry_after"] == 0.0


def test_cancelled():
    assert classify_exception(asyncio.CancelledError(), phase="call").name == "cancelled"
    assert classify_exception(asyncio.CancelledError(), phase="stream").name == "cancelled"


def test_carried_events_pass_through():
    sb = StreamBroken.make("disconnect", "gone", 5)
    assert classify_exception(sb, phase="stream") is sb.event
    pe = ProviderError(call(litellm.RateLimitError("x", P, M)))
    assert classify_exception(pe, phase="call") is pe.event


def test_unknown_python_errors():
    assert call(ConnectionResetError("reset")).name == "transient"
    assert call(TimeoutError()).name == "timeout"
    assert call(ValueError("weird")).name == "bad_request"


# -- §4 streams that break partway (MidStreamFallbackError) -------------------------------------

STREAM_ROWS = [
    ("groq event:error", litellm.APIConnectionError(oai("Tool call validation failed: tool call validation failed: parameters for tool get_something_by_name did not match schema"), P, M), "", "provider_error"),
    ("openrouter error chunk", litellm.APIConnectionError(oai("Token limit reached"), P, M), "", "overflow"),
    ("dropped (sync)", litellm.APIConnectionError(oai("incomplete chunked read"), P, M), "The capital", "disconnect"),
    ("dropped (async)", litellm.APIConnectionError(oai("Response payload is not completed: <TransferEncodingError: 400, message='Not enough data to satisfy transfer length header.'>"), P, M), "The capital", "disconnect"),
    ("stall > timeout (sync)", litellm.APIConnectionError(oai("timed out"), P, M), "The", "disconnect"),
    ("stall > timeout (async)", litellm.APIConnectionError(oai("Timeout on reading data from socket"), P, M), "", "disconnect"),
    ("anthropic overloaded event", litellm.InternalServerError("AnthropicException - Overloaded", "anthropic", M), "Hi", "provider_error"),
]


@pytest.mark.parametrize("label,original,generated,cause", STREAM_ROWS, ids=[r[0] for r in STREAM_ROWS])
def test_midstream_rows(label, original, generated, cause):
    ev = stream(midstream(original, generated))
    assert ev.name == "broken"
    assert ev.attrs["cause"] == cause, (label, ev)
    assert ev.attrs["chars"] == len(generated)
    assert ev.attrs["message"]


def test_midstream_before_first_chunk_is_classified_by_original():
    ev = call(midstream(litellm.RateLimitError(oai("slow"), P, M)))
    assert ev.name == "rate_limit"
    ev = call(midstream(litellm.APIConnectionError(oai("incomplete chunked read"), P, M)))
    assert ev.name == "transient"


def test_broken_cause_ignores_class_names():
    assert broken_cause("litellm.APIConnectionError: APIConnectionError: OpenAIException - schema mismatch") == "provider_error"
    assert broken_cause("Connection reset by peer") == "disconnect"


# -- replies ---------------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "tags": {"type": ["array", "null"]}},
    "required": ["city"],
    "additionalProperties": False,
}


def reply(text="", reasoning="", calls=(), finish="stop", usage=None, blocks=()):
    return AssembledReply(
        text=text,
        reasoning=reasoning,
        tool_calls=[AssembledToolCall(i, f"call_{i}", n, a) for i, (n, a) in enumerate(calls)],
        finish_reason=finish,
        usage=usage,
        thinking_blocks=list(blocks),
    )


@pytest.mark.parametrize(
    "args,ok",
    [
        ('{"city": "Paris"}', True),
        ('{"city": "Paris", "days": 3, "tags": null}', True),
        ('{"city": "Paris", "days": 3.5}', False),
        ('{"city": "Paris", "days": true}', False),
        ('{"days": 3}', False),
        ('{"city": "Paris", "extra": 1}', False),
        ('["Paris"]', False),
        ('{"city": "Par', False),
        ("", False),  # empty means {}, and city is required
    ],
)
def test_validate_tool_arguments(args, ok):
    assert (validate_tool_arguments(args, SCHEMA) is None) is ok
    assert (validate_tool_arguments(args, {"type": "function", "function": {"name": "w", "parameters": SCHEMA}}) is None) is ok


def test_reply_events():
    tools = {"weather": SCHEMA, "noop": None}
    assert classify_reply(reply(calls=[("weather", '{"city":"Oslo"}'), ("noop", "")], finish="tool_calls"), tools).attrs == {
        "tools": ["weather", "noop"], "count": 2, "chars": 0}
    ev = classify_reply(reply(calls=[("weather", '{"city":')], finish="tool_calls"), tools)
    assert (ev.name, ev.attrs) == ("malformed_args", {"tools": ["weather"]})
    ev = classify_reply(reply(calls=[("weather", '{"town":"Oslo"}')], finish="tool_calls"), tools)
    assert ev.name == "malformed_args"
    ev = classify_reply(reply(calls=[("rm_rf", "{}")], finish="tool_calls"), tools)
    assert (ev.name, ev.attrs) == ("unknown_tool", {"tools": ["rm_rf"]})
    ev = classify_reply(reply(text="  \n", reasoning="hmm"), tools)
    assert (ev.name, ev.attrs) == ("thinking_only", {"finish_reason": "stop"})
    ev = classify_reply(reply(text=" \n"), tools)
    assert (ev.name, ev.attrs) == ("empty", {"finish_reason": "stop"})
    ev = classify_reply(reply(text="Hi."), tools)
    assert (ev.name, ev.attrs) == ("text", {"finish_reason": "stop", "chars": 3})
    # length with tool calls: every call is dropped, even well-formed ones
    ev = classify_reply(reply(text="ok", calls=[("weather", '{"city":"Oslo"}'), ("noop", '{"a')], finish="length"), tools)
    assert (ev.name, ev.attrs) == ("length", {"has_tool_calls": True, "dropped_tools": ["weather", "noop"], "thinking_only": False, "chars": 2})
    ev = classify_reply(reply(reasoning="deep", finish="length"), tools)
    assert ev.attrs["thinking_only"] is True
    ev = classify_reply(reply(finish="length", usage=Usage(1, 5, 0)), tools)
    assert ev.attrs["thinking_only"] is False


def test_every_reply_event_is_in_the_alphabet():
    for r in [reply(), reply(text="a"), reply(reasoning="r"), reply(finish="length"),
              reply(calls=[("a", "{")]), reply(calls=[("z", "{}")]), reply(calls=[("a", "{}")])]:
        ev = classify_reply(r, {"a": None})
        spec = KINDS["stream"].event(ev.name)
        assert spec is not None and set(ev.attrs) == {a.name for a in spec.attrs}


def test_canonical_arguments():
    assert canonical_arguments('{"b": 1, "a": {"y": 2, "x": [1, 2]}}') == canonical_arguments('{"a":{"x":[1,2],"y":2},"b":1}')
    assert canonical_arguments("") == canonical_arguments("{}") == "{}"
    assert canonical_arguments(' {"a": ') == '{"a":'
    assert canonical_arguments('{"a": "é"}') == '{"a":"é"}'


def test_a_list_of_types_admits_a_value_of_any_of_them_and_no_other() -> None:
    spec = {"type": "object", "properties": {"x": {"type": ["string", "null"]}}}
    assert validate_tool_arguments('{"x": "a"}', spec) is None and validate_tool_arguments('{"x": null}', spec) is None
    assert validate_tool_arguments('{"x": 5}', spec) == "property 'x' is not ['string', 'null']"


def test_a_property_whose_schema_is_not_an_object_admits_anything() -> None:
    spec = {"type": "object", "properties": {"x": True, "y": {"type": "integer"}}}
    assert validate_tool_arguments('{"x": [1], "y": 2}', spec) is None
    assert validate_tool_arguments('{"x": [1], "y": "2"}', spec) == "property 'y' is not integer"
