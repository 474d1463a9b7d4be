"""LiteLLMProvider against a loopback HTTP server serving the real recorded bodies.

No mock of litellm: real ``litellm.acompletion`` over real sockets to ``tests/_loopback.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402,F401  (imported once per module, so timing below excludes it)
import pytest  # noqa: E402

from _loopback import LoopbackServer, Reply  # noqa: E402
from _paths import FIXTURES  # noqa: E402

from loopspec.wire.assemble import ReplyAssembler  # noqa: E402
from loopspec.wire.classify import classify_reply  # noqa: E402
from loopspec.providers.base import ModelRequest, Provider, ProviderError, StreamBroken  # noqa: E402
from loopspec.providers.litellm_provider import LiteLLMProvider, build_kwargs  # noqa: E402

STREAMS = FIXTURES / "streams"
CAPITAL_TOOL = {
    "type": "function",
    "function": {
        "name": "get_capital",
        "description": "capital of a country",
        "parameters": {"type": "object", "properties": {"country": {"type": "string"}}, "required": ["country"]},
    },
}


def req(srv: LoopbackServer, **kw) -> ModelRequest:
    base = dict(model="openai/x", messages=[{"role": "user", "content": "hi"}], api_base=srv.base_url,
                api_key="sk-test", timeout=5.0)
    base.update(kw)
    return ModelRequest(**base)


async def drain(stream, assembler: ReplyAssembler) -> None:
    try:
        async for d in stream:
            assembler.feed(d)
    finally:
        await stream.aclose()


def run(coro):
    return asyncio.run(coro)


def sse(name: str) -> str:
    return (STREAMS / name).read_text()


def test_provider_protocol_and_kwargs():
    p = LiteLLMProvider()
    assert isinstance(p, Provider)
    kw = build_kwargs(
        ModelRequest("openai/x", [], tools=[CAPITAL_TOOL], tool_choice="auto", max_tokens=9,
                     reasoning_effort="low", extra={"num_retries": 3, "temperature": 0}),
        30.0,
    )
    assert kw["max_retries"] == 0 and "num_retries" not in kw and kw["stream"] is True
    assert kw["timeout"] == 30.0 and kw["temperature"] == 0 and kw["reasoning_effort"] == "low"


def test_a_stream_always_asks_for_usage_keeping_the_callers_stream_options():
    """Without include_usage litellm drops the usage-only final chunk: a reply whose output all
    went to hidden reasoning (gpt-5-nano) would look like a plain cut-off over HTTP."""
    kw = build_kwargs(ModelRequest("openai/x", [], extra={"stream_options": {"continuous_usage_stats": True}}), 30.0)
    assert kw["stream_options"] == {"continuous_usage_stats": True, "include_usage": True}
    assert build_kwargs(ModelRequest("openai/x", []), 30.0)["stream_options"] == {"include_usage": True}


def test_usage_is_asked_for_on_the_wire_and_reaches_the_reply(srv):
    srv.push(Reply(sse=sse("openai_stream_finish_length_reasoning_only_gpt5nano.sse")))

    async def go():
        a = ReplyAssembler()
        await drain(await LiteLLMProvider().open(req(srv)), a)
        return a.result()

    r = run(go())
    assert srv.requests[0].body["stream_options"] == {"include_usage": True}
    assert r.finish_reason == "length" and r.text == "" and r.usage is not None and r.usage.reasoning_tokens == 100
    assert classify_reply(r, {}).attrs["thinking_only"] is True


def test_text_stream(srv):
    srv.push(Reply(sse=sse("openai_stream_text.sse")))

    async def go():
        a = ReplyAssembler()
        await drain(await LiteLLMProvider().open(req(srv)), a)
        return a.result()

    r = run(go())
    assert r.text == "The capital of Mexico is Mexico City." and r.finish_reason == "stop"
    assert classify_reply(r, {}).name == "text"
    assert len(srv.requests) == 1 and srv.requests[0].path == "/v1/chat/completions"
    assert srv.requests[0].headers["authorization"] == "Bearer sk-test"
    assert srv.requests[0].body["model"] == "x" and srv.requests[0].body["stream"] is True


def test_tool_call_stream_with_tools(srv):
    """tools= makes litellm import mcp (docs/providers.md, "Installing"): this passing proves mcp is installed."""
    srv.push(Reply(sse=sse("openai_stream_tool_call_single.sse")))

    async def go():
        a = ReplyAssembler()
        await drain(await LiteLLMProvider().open(req(srv, tools=[CAPITAL_TOOL], tool_choice="auto")), a)
        return a.result()

    r = run(go())
    assert [(c.name, json.loads(c.arguments)) for c in r.tool_calls] == [("get_capital", {"country": "UK"})]
    ev = classify_reply(r, {"get_capital": CAPITAL_TOOL["function"]["parameters"]})
    assert ev.name == "tool_calls" and ev.attrs["tools"] == ["get_capital"]
    assert srv.requests[0].body["tools"][0]["function"]["name"] == "get_capital"


def test_parallel_tool_calls_and_usage(srv):
    srv.push(Reply(sse=sse("openai_stream_tool_call_parallel.sse")))

    async def go():
        a = ReplyAssembler()
        r = req(srv, tools=[CAPITAL_TOOL], extra={"stream_options": {"include_usage": True}})
        await drain(await LiteLLMProvider().open(r), a)
        return a.result()

    r = run(go())
    assert [c.name for c in r.tool_calls] == ["get_weather", "get_product_name"]
    assert [c.arguments for c in r.tool_calls] == ['{"city": "Mexico City"}', "{}"]
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (417, 44)


def test_gpt5nano_length_reasoning_only(srv):
    srv.push(Reply(sse=sse("openai_stream_finish_length_reasoning_only_gpt5nano.sse")))

    async def go():
        a = ReplyAssembler()
        await drain(await LiteLLMProvider().open(req(srv, extra={"stream_options": {"include_usage": True}})), a)
        return a.result()

    r = run(go())
    ev = classify_reply(r, {})
    assert ev.name == "length" and ev.attrs["thinking_only"] is True and ev.attrs["chars"] == 0


def test_deepseek_reasoning(srv):
    srv.push(Reply(sse=sse("deepseek_stream_reasoning_content.sse")))

    async def go():
        a = ReplyAssembler()
        await drain(await LiteLLMProvider().open(req(srv)), a)
        return a.result()

    r = run(go())
    assert r.text == "The product of 17 and 23 is 391." and r.reasoning.startswith("We are asked")


def open_error(srv: LoopbackServer, reply: Reply) -> ProviderError:
    srv.push(reply)

    async def go():
        return await LiteLLMProvider().open(req(srv))

    with pytest.raises(ProviderError) as ei:
        run(go())
    return ei.value


def test_429_is_rate_limit_with_one_request(srv):
    err = open_error(srv, Reply(429, sse("openai_error_429_rate_limit_requests.json"), headers={"Retry-After": "2"}))
    assert err.event.name == "rate_limit"
    assert err.event.attrs["status"] == 429 and err.event.attrs["retry_after"] == 2.0
    assert len(srv.requests) == 1


def test_400_context_length_is_context_overflow(srv):
    err = open_error(srv, Reply(400, sse("openai_error_400_context_length_exceeded.json")))
    assert err.event.name == "context_overflow" and err.event.attrs["status"] == 400
    assert "maximum context length" in err.event.attrs["message"]
    assert len(srv.requests) == 1


ERROR_BODIES = [
    ("anthropic_error_400_invalid_request.json", 400, "effort_unsupported"),
    ("anthropic_error_400_prompt_too_long.json", 400, "context_overflow"),
    ("anthropic_error_429_rate_limit.json", 429, "rate_limit"),
    ("anthropic_error_500_api_error.json", 500, "transient"),
    ("anthropic_error_529_overloaded.json", 529, "transient"),
    ("openai_error_400_unsupported_parameter.json", 400, "bad_request"),
    ("openai_error_429_insufficient_quota.json", 429, "rate_limit"),
    ("openai_error_429_rate_limit_exceeded_code.json", 429, "rate_limit"),
    ("openai_error_500_server_error.json", 500, "transient"),
    ("openai_error_503_model_overloaded.json", 503, "transient"),
    ("openrouter_error_429_upstream_rate_limited.json", 429, "rate_limit"),
]


@pytest.mark.parametrize("name,status,event", ERROR_BODIES, ids=[e[0] for e in ERROR_BODIES])
def test_recorded_error_bodies(srv, name, status, event):
    err = open_error(srv, Reply(status, sse(name)))
    assert err.event.name == event
    assert err.event.attrs["status"] == status
    assert len(srv.requests) == 1  # max_retries=0: the policy owns retries


def test_connection_refused_is_transient():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    async def go():
        return await LiteLLMProvider().open(
            ModelRequest("openai/x", [{"role": "user", "content": "hi"}], api_base=f"http://127.0.0.1:{port}/v1",
                         api_key="sk-test", timeout=2.0))

    with pytest.raises(ProviderError) as ei:
        run(go())
    assert ei.value.event.name == "transient"


def test_dropped_connection_is_broken_disconnect(srv):
    srv.push(Reply(sse=sse("openai_stream_text.sse"), drop_after=3))
    a = ReplyAssembler()

    async def go():
        await drain(await LiteLLMProvider().open(req(srv)), a)

    with pytest.raises(StreamBroken) as ei:
        run(go())
    ev = ei.value.event
    assert ev.name == "broken" and ev.attrs["cause"] == "disconnect"
    assert a.result().text == "The capital" and ev.attrs["chars"] == len("The capital")


def test_groq_error_event_is_broken_provider_error(srv):
    srv.push(Reply(sse=sse("groq_stream_reasoning_then_error_event.sse")))
    a = ReplyAssembler()

    async def go():
        await drain(await LiteLLMProvider().open(req(srv)), a)

    with pytest.raises(StreamBroken) as ei:
        run(go())
    assert ei.value.event.attrs["cause"] == "provider_error"
    assert "Tool call validation failed" in ei.value.event.attrs["message"]
    assert a.result().reasoning.startswith("We need to call the tool")


def test_openrouter_error_chunk_is_broken_overflow(srv):
    srv.push(Reply(sse=sse("openrouter_stream_length_then_error_chunk.sse")))

    async def go():
        await drain(await LiteLLMProvider().open(req(srv)), ReplyAssembler())

    with pytest.raises(StreamBroken) as ei:
        run(go())
    assert ei.value.event.attrs["cause"] == "overflow"


STALL = 30.0  # far beyond anything the test waits


def test_stalled_stream_can_be_closed(srv):
    """The interpreter owns stall detection: it times out ``__anext__`` and calls ``aclose``."""
    srv.push(Reply(sse=sse("openai_stream_text.sse"), stall_after=3, stall_seconds=STALL))

    async def go():
        a = ReplyAssembler()
        stream = await LiteLLMProvider().open(req(srv, timeout=10.0))
        stalled = False
        while True:
            try:
                d = await asyncio.wait_for(stream.__anext__(), timeout=0.3)
            except asyncio.TimeoutError:
                stalled = True
                break
            except StopAsyncIteration:
                break
            a.feed(d)
        loop = asyncio.get_running_loop()
        t = loop.time()
        await stream.aclose()
        await stream.aclose()  # idempotent
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        return stalled, a, loop.time() - t

    stalled, a, close_time = run(go())
    assert stalled and a.result().text == "The capital" and not a.in_tool_call
    assert close_time < STALL / 3, "aclose released the connection instead of waiting out the stall"


def test_stall_before_headers_is_timeout(srv):
    srv.push(Reply(sse=sse("openai_stream_text.sse"), delay=1.5))

    async def go():
        return await LiteLLMProvider().open(req(srv, timeout=0.4))

    with pytest.raises(ProviderError) as ei:
        run(go())
    assert ei.value.event.name == "timeout" and ei.value.event.attrs["status"] == 408


def test_anthropic_native_thinking_blocks(srv):
    srv.push(Reply(sse=(STREAMS / "anthropic" / "anthropic_stream_thinking_tool_use.sse").read_text()))

    async def go():
        a = ReplyAssembler()
        r = ModelRequest("anthropic/x", [{"role": "user", "content": "version?"}], max_tokens=64,
                         api_base=f"http://127.0.0.1:{srv.port}", api_key="sk-test", timeout=5.0,
                         tools=[{"type": "function", "function": {"name": "fixed_version", "parameters": {"type": "object", "properties": {}}}}])
        await drain(await LiteLLMProvider().open(r), a)
        return a.result()

    r = run(go())
    assert srv.requests[0].path == "/v1/messages"
    assert [c.name for c in r.tool_calls] == ["fixed_version"] and r.finish_reason == "tool_calls"
    assert r.reasoning.startswith("The user wants me to:")
    assert len(r.thinking_blocks) == 1 and r.thinking_blocks[0]["signature"].startswith("EoQDCm0IDhgCKkCDzGs2")
    assert r.thinking_blocks[0]["thinking"] == r.reasoning
    assert classify_reply(r, {"fixed_version": None}).name == "tool_calls"


def no_listeners(monkeypatch) -> None:
    """litellm as loopspec imports it, with no success callback and no cache; its callback lists
    are restored afterwards (litellm copies registered loggers into them)."""
    from loopspec.providers.litellm_provider import import_litellm

    import_litellm()
    for name in ("callbacks", "success_callback", "_async_success_callback"):
        monkeypatch.setattr(litellm, name, [])
    monkeypatch.setattr(litellm, "cache", None)


def _count_reply_builds(monkeypatch) -> list[int]:
    """Count litellm's whole-reply rebuilds (``stream_chunk_builder``, run at each end-of-stream
    pass), starting with nobody listening (see :func:`no_listeners`)."""
    no_listeners(monkeypatch)
    builds = [0]
    real = litellm.stream_chunk_builder

    def counting(*args, **kwargs):
        builds[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(litellm, "stream_chunk_builder", counting)
    return builds


@pytest.mark.parametrize("name,rebuilds", [("openai_stream_tool_call_single.sse", 0),
                                            ("openai_stream_finish_length_text.sse", 1)])
def test_reading_stops_at_the_upstreams_end_when_no_callback_listens(srv, monkeypatch, name, rebuilds):
    """With nobody listening, loopspec reads the upstream's rest itself and litellm never rebuilds the
    reply (each rebuild is about 1 ms of CPU in a worker thread). An upstream that sent no usage
    leaves litellm to count the tokens: one rebuild, then its usage chunk ends the read, never the
    second rebuild that only logs a success (that one cost ~20 % of a live turn)."""
    builds = _count_reply_builds(monkeypatch)
    srv.push(Reply(sse=sse(name)))

    async def go():
        a = ReplyAssembler()
        stream = await LiteLLMProvider().open(req(srv, model="openai/gpt-4o-mini", tools=[CAPITAL_TOOL]))
        async for d in stream:
            a.feed(d)
        assert stream._wrapper is None, "the wrapper is closed at the usage, not left open"
        return a.result()

    r = run(go())
    assert builds[0] == rebuilds, f"litellm rebuilt the reply {builds[0]} times"
    assert r.usage is not None and r.usage.prompt_tokens > 0 and r.usage.cost is not None and r.usage.cost > 0
    assert r.finish_reason in ("tool_calls", "length")


def test_a_litellm_success_callback_still_hears_of_every_stream(srv, monkeypatch):
    """With a success callback registered, the stream is read to litellm's own end, so the
    callback runs (the early stop above must never cost a user their logging)."""
    from litellm.integrations.custom_logger import CustomLogger

    heard: list[object] = []

    class Listener(CustomLogger):  # type: ignore[misc]
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            heard.append(response_obj)

    builds = _count_reply_builds(monkeypatch)
    litellm.callbacks.append(Listener())
    srv.push(Reply(sse=sse("openai_stream_text.sse")))

    async def go():
        a = ReplyAssembler()
        await drain(await LiteLLMProvider().open(req(srv)), a)
        for _ in range(200):  # litellm logs in a task of its own after the stream ends
            if heard:
                break
            await asyncio.sleep(0.01)
        return a.result()

    r = run(go())
    assert r.usage is not None and r.text
    assert builds[0] == 2 and len(heard) == 1


@pytest.mark.parametrize("listener", ["callbacks", "success_callback", "_async_success_callback", "cache",
                                      "dynamic_success_callbacks", "dynamic_async_success_callbacks", "none",
                                      "no _async_success_callback list"])
def test_what_counts_as_litellm_listening_for_a_success(monkeypatch, listener):
    from loopspec.providers import litellm_provider
    from types import SimpleNamespace

    no_listeners(monkeypatch)
    logging_obj = SimpleNamespace(dynamic_success_callbacks=None, dynamic_async_success_callbacks=None)
    if listener == "cache":
        monkeypatch.setattr(litellm, "cache", object())
    elif listener.startswith("dynamic"):
        setattr(logging_obj, listener, ["langfuse"])
    elif listener.startswith("no "):  # a litellm that keeps its listeners elsewhere: never assume none
        monkeypatch.delattr(litellm, "_async_success_callback")
    elif listener != "none":
        monkeypatch.setattr(litellm, listener, ["langfuse"])
    wrapper = SimpleNamespace(logging_obj=logging_obj)
    assert litellm_provider.litellm_logs_successes(wrapper) is (listener != "none")
    global_listener = listener != "none" and not listener.startswith("dynamic")
    assert litellm_provider.litellm_logs_successes(SimpleNamespace()) is global_listener
