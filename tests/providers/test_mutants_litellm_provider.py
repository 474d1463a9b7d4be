"""What the live provider puts on the wire and how it reads litellm's answer, pinned where
mutation testing found nothing looking (docs/quality.md, ``providers/litellm_provider.py``).

Real ``litellm.acompletion`` over real sockets to ``tests/_loopback.py``; the only stand-in is
:class:`WatchedWrapper`, which passes litellm's own stream wrapper through and counts what the
provider does to it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402
import pytest  # noqa: E402

from _loopback import LoopbackServer, Reply  # noqa: E402
from _paths import FIXTURES  # noqa: E402
from test_litellm_provider import no_listeners, req, run, sse  # noqa: E402

from loopspec.providers import litellm_provider as lp  # noqa: E402
from loopspec.providers.base import ModelRequest, ProviderError, StreamBroken  # noqa: E402
from loopspec.providers.litellm_provider import (  # noqa: E402
    CompletedResponse,
    LiteLLMProvider,
    build_kwargs,
    delta_from_litellm_response,
    priced,
)
from loopspec.wire.assemble import ReplyAssembler  # noqa: E402
from loopspec.wire.deltas import Delta, Usage  # noqa: E402

STREAMS = FIXTURES / "streams"
PRICED_MODEL = "openai/gpt-4o-mini"  # in litellm's local cost map
TOOL = {"type": "function", "function": {"name": "get_capital", "parameters": {"type": "object", "properties": {}}}}


class WatchedWrapper:
    """litellm's own stream wrapper, passed through, with every read and close counted.

    ``hide`` names attributes the wrapper is made to lack (a litellm that does not say whether
    it sent the usage chunk)."""

    def __init__(self, inner: Any, hide: tuple[str, ...] = (), close_error: Exception | None = None) -> None:
        self.inner = inner
        self.hide = hide
        self.close_error = close_error
        self.reads = 0
        self.reads_after_end = 0
        self.closes = 0
        self.ended = False

    def __aiter__(self) -> "WatchedWrapper":
        return self

    async def __anext__(self) -> Any:
        self.reads += 1
        if self.ended:
            self.reads_after_end += 1
        try:
            return await self.inner.__anext__()
        except BaseException:
            self.ended = True
            raise

    async def aclose(self) -> None:
        self.closes += 1
        await self.inner.aclose()
        if self.close_error is not None:
            raise self.close_error

    def __getattr__(self, name: str) -> Any:
        if name in self.__dict__.get("hide", ()):
            raise AttributeError(name)
        return getattr(self.inner, name)


def watch_acompletion(monkeypatch: pytest.MonkeyPatch, hide: tuple[str, ...] = (),
                      close_error: Exception | None = None) -> tuple[list[dict[str, Any]], list[WatchedWrapper]]:
    """Spy on ``litellm.acompletion``: the keyword arguments of each call, and each stream it
    returned wrapped in a :class:`WatchedWrapper` (a whole response is passed on as it is)."""
    lp.import_litellm()
    real = litellm.acompletion
    calls: list[dict[str, Any]] = []
    wrappers: list[WatchedWrapper] = []

    async def spy(**kwargs: Any) -> Any:
        calls.append(kwargs)
        answer = await real(**kwargs)
        if not kwargs.get("stream"):
            return answer
        wrappers.append(WatchedWrapper(answer, hide, close_error))
        return wrappers[-1]

    monkeypatch.setattr(litellm, "acompletion", spy)
    return calls, wrappers


# ------------------------------------------------------------------------------------ import

def test_importing_litellm_sets_the_local_cost_map_first_and_silences_its_banner(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``LITELLM_LOCAL_MODEL_COST_MAP=True`` litellm's import fetches its cost map over the
    network; with ``suppress_debug_info`` off it prints a help banner on every provider error."""
    monkeypatch.setattr(lp, "_litellm", None)
    monkeypatch.delenv("LITELLM_LOCAL_MODEL_COST_MAP", raising=False)
    monkeypatch.setattr(litellm, "suppress_debug_info", False)
    assert lp.import_litellm() is litellm
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert litellm.suppress_debug_info is True
    assert lp.import_litellm() is litellm


def test_a_cost_map_setting_the_user_chose_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lp, "_litellm", None)
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "False")
    lp.import_litellm()
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "False"


def test_closing_clients_in_a_process_that_never_imported_litellm_does_not_import_it() -> None:
    """``close_clients`` runs at the end of every corpus replay; importing litellm there only to
    close nothing would cost its 2.5 s import."""
    code = ("import asyncio, sys\n"
            "from loopspec.providers.litellm_provider import close_clients\n"
            "asyncio.run(close_clients())\n"
            "print('litellm' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_closing_clients_closes_the_clients_litellm_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    from litellm.llms.custom_httpx import async_client_cleanup

    lp.import_litellm()
    closed: list[bool] = []

    async def spy() -> None:
        closed.append(True)

    monkeypatch.setattr(async_client_cleanup, "close_litellm_async_clients", spy)
    run(lp.close_clients())
    assert closed == [True]


# ------------------------------------------------------------------------------- the request

BASE = {"model": "openai/x", "messages": [], "stream": True, "stream_options": {"include_usage": True},
        "max_retries": 0, "timeout": 30.0}


@pytest.mark.parametrize("request_kw,want", [
    pytest.param({}, {}, id="plain"),
    pytest.param({"extra": {"tools": [TOOL], "tool_choice": "required"}}, {},
                 id="extra cannot offer tools or force a choice"),
    pytest.param({"tools": [TOOL], "extra": {"tool_choice": "required"}}, {"tools": [TOOL]},
                 id="extra cannot force a choice on offered tools"),
    pytest.param({"tools": [TOOL], "tool_choice": "required"}, {"tools": [TOOL], "tool_choice": "required"},
                 id="the request's tool choice"),
    pytest.param({"tool_choice": "required"}, {}, id="no choice without tools"),
    pytest.param({"max_tokens": 9}, {"max_tokens": 9}, id="max_tokens"),
    pytest.param({"max_tokens": 0}, {"max_tokens": 0}, id="max_tokens zero is still sent"),
    pytest.param({"reasoning_effort": "low", "api_base": "http://h/v1", "api_key": "k", "timeout": 2.5},
                 {"reasoning_effort": "low", "api_base": "http://h/v1", "api_key": "k", "timeout": 2.5},
                 id="effort, base, key and timeout"),
    pytest.param({"extra": {"num_retries": 3, "max_retries": 5, "stream": False, "temperature": 0}},
                 {"temperature": 0}, id="retries and streaming are loopspec's"),
])
def test_the_acompletion_arguments_are_exactly_the_requests(request_kw: dict[str, Any], want: dict[str, Any]) -> None:
    """Every keyword ``acompletion`` receives, compared whole: a tool choice or ``max_tokens``
    dropped, or one leaked from ``extra``, changes what the model may answer."""
    assert build_kwargs(ModelRequest("openai/x", [], **request_kw), 30.0) == {**BASE, **want}


def test_a_whole_response_is_asked_for_without_stream_options() -> None:
    """``stream_options`` is for streams only: some providers reject it on a whole-response call."""
    base = {k: v for k, v in BASE.items() if k != "stream_options"}
    assert build_kwargs(ModelRequest("openai/x", [], extra={"stream_options": {"x": 1}}), 30.0, stream=False) == {**base, "stream": False}


def test_the_provider_waits_ten_minutes_for_a_request_that_names_no_timeout(srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls, _ = watch_acompletion(monkeypatch)
    srv.push(Reply(sse=sse("openai_stream_text.sse")), Reply(sse=sse("openai_stream_text.sse")))

    async def go() -> None:
        for provider in (LiteLLMProvider(), LiteLLMProvider(default_timeout=7.0)):
            stream = await provider.open(req(srv, timeout=None))
            await stream.aclose()

    run(go())
    assert [c["timeout"] for c in calls] == [600.0, 7.0]


def test_tools_their_choice_and_max_tokens_reach_the_wire(srv: LoopbackServer) -> None:
    srv.push(Reply(sse=sse("openai_stream_tool_call_single.sse")))

    async def go() -> None:
        stream = await LiteLLMProvider().open(req(srv, tools=[TOOL], tool_choice="required", max_tokens=9))
        async for _ in stream:
            pass

    run(go())
    body = srv.requests[0].body
    assert body["tools"] == [TOOL] and body["tool_choice"] == "required" and body["max_tokens"] == 9
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_a_whole_response_request_sends_no_stream_options_and_is_priced(srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """``stream=False``: litellm rejects ``stream_options`` on a non-streaming call for some
    providers, and the one delta it gives carries the reply and its priced usage."""
    calls, _ = watch_acompletion(monkeypatch)
    body = json.loads((STREAMS / "openai_nonstream_tool_call.json").read_text())
    srv.push(Reply(body=json.dumps(body), headers={"content-type": "application/json"}))

    async def go() -> list[Delta]:
        stream = await LiteLLMProvider(stream=False).open(req(srv, model=PRICED_MODEL, tools=[TOOL]))
        return [d async for d in stream]

    deltas = run(go())
    assert calls[0]["stream"] is False and "stream_options" not in calls[0]
    sent = srv.requests[0].body
    assert sent.get("stream") in (False, None) and "stream_options" not in sent
    call = body["choices"][0]["message"]["tool_calls"][0]
    assert len(deltas) == 1
    (delta,) = deltas
    assert [(f.id, f.name, f.arguments) for f in delta.tool_calls] == [(call["id"], call["function"]["name"], call["function"]["arguments"])]
    assert delta.finish_reason == body["choices"][0]["finish_reason"]
    want = priced(Delta(usage=Usage(body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"])), PRICED_MODEL)
    assert delta.usage is not None and want.usage is not None and want.usage.cost
    assert delta.usage.cost == want.usage.cost


def test_an_error_that_echoes_the_api_key_does_not_carry_it(srv: LoopbackServer) -> None:
    """A key no pattern recognises (a proxy's own token) is still redacted, by its value."""
    key = "proxy-token-4f8a1c2e9b7d"
    srv.push(Reply(status=401, body=json.dumps({"error": {"message": f"Invalid token {key} for this route",
                                                          "type": "invalid_request_error"}}),
                   headers={"content-type": "application/json"}))

    async def go() -> None:
        await LiteLLMProvider().open(req(srv, api_key=key))

    with pytest.raises(ProviderError) as ei:
        run(go())
    event = ei.value.event
    assert event.name == "auth" and "Invalid token" in event.attrs["message"]
    assert key not in json.dumps(event.attrs)


# ------------------------------------------------------------------------------- the stream

def test_a_streamed_reply_is_priced_with_the_requests_model(srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    no_listeners(monkeypatch)
    srv.push(Reply(sse=sse("openai_stream_tool_call_single.sse")))

    async def go() -> list[Delta]:
        stream = await LiteLLMProvider().open(req(srv, model=PRICED_MODEL, tools=[TOOL]))
        assert stream.model == PRICED_MODEL
        return [d async for d in stream]

    usages = [d.usage for d in run(go()) if d.usage is not None]
    assert len(usages) == 1
    (u,) = usages
    want = priced(Delta(usage=Usage(u.prompt_tokens, u.completion_tokens)), PRICED_MODEL).usage
    assert want is not None and want.cost and u.cost == want.cost


def test_the_usage_chunk_closes_the_wrapper_and_nothing_reads_it_again(srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nobody listening for litellm's success, the usage ends the stream: the wrapper is closed
    (its connection released) and never asked for another chunk. The usage is read from the
    upstream's rest after the wrapper's last chunk, so every delta but that one is a read."""
    no_listeners(monkeypatch)
    _, wrappers = watch_acompletion(monkeypatch)
    srv.push(Reply(sse=sse("openai_stream_tool_call_single.sse")))

    async def go() -> int:
        stream = await LiteLLMProvider().open(req(srv, tools=[TOOL]))
        n = 0
        async for d in stream:
            n += 1
            last = d
        assert last.usage is not None, "the usage chunk was the last delta"
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        await stream.aclose()
        return n

    n = run(go())
    (w,) = wrappers
    assert w.closes == 1 and w.reads == n - 1 and not w.ended


def test_a_stream_read_to_its_end_is_not_read_again(srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a listener, the stream is read to litellm's own end; asking again after that, or after
    closing, raises StopAsyncIteration without touching the wrapper."""
    no_listeners(monkeypatch)
    monkeypatch.setattr(litellm, "callbacks", ["a listener"])
    _, wrappers = watch_acompletion(monkeypatch)
    srv.push(Reply(sse=sse("openai_stream_text.sse")))

    async def go() -> None:
        stream = await LiteLLMProvider().open(req(srv))
        async for _ in stream:
            pass
        for _ in range(2):
            with pytest.raises(StopAsyncIteration):
                await stream.__anext__()
        await stream.aclose()
        await stream.aclose()

    run(go())
    (w,) = wrappers
    assert w.ended and w.reads_after_end == 0 and w.closes == 1


@pytest.mark.parametrize("error", [RuntimeError("close failed"), AttributeError("aclose")])
def test_a_wrapper_that_fails_to_close_does_not_fail_the_reply(srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """Closing only releases the connection: the reply was read whole, so an error while closing
    (or a wrapper with no aclose) must not turn it into a failure."""
    no_listeners(monkeypatch)
    _, wrappers = watch_acompletion(monkeypatch, close_error=error)
    srv.push(Reply(sse=sse("openai_stream_tool_call_single.sse")), Reply(sse=sse("openai_stream_text.sse")))

    async def go() -> int:
        cut = await LiteLLMProvider().open(req(srv, tools=[TOOL]))
        n = len([d async for d in cut])  # closed at the usage chunk
        early = await LiteLLMProvider().open(req(srv))
        await early.__anext__()
        await early.aclose()  # closed by the caller
        return n

    assert run(go()) > 1
    assert [w.closes for w in wrappers] == [1, 1]


def test_a_broken_stream_is_not_read_again(srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _, wrappers = watch_acompletion(monkeypatch)
    srv.push(Reply(sse=sse("openai_stream_text.sse"), drop_after=3))

    async def go() -> None:
        stream = await LiteLLMProvider().open(req(srv))
        with pytest.raises(StreamBroken):
            async for _ in stream:
                pass
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        await stream.aclose()

    run(go())
    (w,) = wrappers
    assert w.ended and w.reads_after_end == 0


def test_a_wrapper_that_does_not_say_it_sent_usage_is_read_to_its_end(srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping early needs litellm's word that the usage chunk was its last; a wrapper without
    ``sent_stream_usage`` is read until it ends by itself."""
    a, w, _ = read_hiding(srv, monkeypatch, "sent_stream_usage")
    assert w.ended and w.closes == 1
    assert a.result().tool_calls and a.result().usage is not None


@pytest.mark.parametrize("missing", ["sent_last_chunk", "send_stream_usage", "completion_stream", "chunk_creator", "chunks"])
def test_a_wrapper_that_lacks_a_part_the_rest_is_read_with_is_read_to_its_usage_chunk(
        srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    """Reading the upstream's rest needs litellm's word that the reply's last chunk is out and that
    the usage is still to come, and the parts the rest is read with; without any one of them every
    delta, the usage included, is read from litellm's wrapper (up to its usage chunk), and nothing
    fails for the lack."""
    a, w, deltas = read_hiding(srv, monkeypatch, missing)
    assert w.reads == deltas and w.closes == 1 and not w.ended
    assert a.result().tool_calls and a.result().usage is not None


def read_hiding(srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch, missing: str) -> tuple[ReplyAssembler, WatchedWrapper, int]:
    """A tool call read through a wrapper made to lack ``missing``: the reply, the wrapper, the deltas."""
    no_listeners(monkeypatch)
    _, wrappers = watch_acompletion(monkeypatch, hide=(missing,))
    srv.push(Reply(sse=sse("openai_stream_tool_call_single.sse")))

    async def go() -> tuple[ReplyAssembler, int]:
        a, n = ReplyAssembler(), 0
        stream = await LiteLLMProvider().open(req(srv, tools=[TOOL]))
        async for d in stream:
            a.feed(d)
            n += 1
        await stream.aclose()
        return a, n

    a, n = run(go())
    (w,) = wrappers
    return a, w, n


def test_a_success_callback_passed_with_the_request_keeps_the_stream_read_to_its_end(srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A callback given in ``extra`` (litellm's per-request ``success_callback``) listens as a
    global one does: the stream is not cut at the usage chunk, so the callback hears of it.
    (litellm 1.106.2 calls only coroutine functions given this way for an async stream.)"""
    no_listeners(monkeypatch)
    _, wrappers = watch_acompletion(monkeypatch)
    heard: list[object] = []

    async def listener(kwargs: Any, response: Any, start: Any, end: Any) -> None:
        heard.append(response)

    srv.push(Reply(sse=sse("openai_stream_text.sse")))

    async def go() -> None:
        stream = await LiteLLMProvider().open(req(srv, extra={"success_callback": [listener]}))
        async for _ in stream:
            pass
        for _ in range(200):  # litellm logs in a thread or task of its own after the stream ends
            if heard:
                break
            await asyncio.sleep(0.01)

    run(go())
    (w,) = wrappers
    assert w.ended and len(heard) == 1


def test_a_wrapper_from_another_litellm_is_read_to_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before this module imported litellm, nobody can say whether it listens: assume it does."""
    from types import SimpleNamespace

    monkeypatch.setattr(lp, "_litellm", None)
    assert lp.litellm_logs_successes(SimpleNamespace()) is True


def test_a_litellm_without_a_cache_attribute_counts_as_listening(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    monkeypatch.setattr(lp, "_litellm", SimpleNamespace(callbacks=[], success_callback=[], _async_success_callback=[]))
    assert lp.litellm_logs_successes(SimpleNamespace()) is True
    monkeypatch.setattr(lp, "_litellm", SimpleNamespace(callbacks=[], success_callback=[], _async_success_callback=[], cache=None))
    assert lp.litellm_logs_successes(SimpleNamespace()) is False


# ------------------------------------------------------------------ a whole response, priced

def test_a_completed_response_gives_its_delta_once_and_nothing_after_closing() -> None:
    delta = Delta(text="done", finish_reason="stop")

    async def go() -> tuple[list[Delta], list[Delta]]:
        whole = CompletedResponse(delta)
        first = [d async for d in whole]
        again = [d async for d in whole]
        closed = CompletedResponse(delta)
        await closed.aclose()
        return first + again, [d async for d in closed]

    read, after_close = run(go())
    assert read == [delta] and after_close == []


def test_a_whole_response_without_content_reads_as_empty_text_and_arguments() -> None:
    """A tool-call reply has ``content: null`` and a call without arguments may carry null: both
    are empty strings, never the text "None"; reasoning the provider returned is kept."""
    from types import SimpleNamespace as NS

    message = NS(content=None, reasoning_content="Thinking it over.",
                 tool_calls=[NS(id="call_1", function=NS(name="get_capital", arguments=None))])
    delta = delta_from_litellm_response(NS(choices=[NS(message=message, finish_reason="tool_calls")], usage=None))
    assert delta.text == "" and delta.reasoning == "Thinking it over."
    assert [(f.index, f.id, f.name, f.arguments) for f in delta.tool_calls] == [(0, "call_1", "get_capital", "")]
    bare = delta_from_litellm_response(NS(choices=[NS(message=NS(content="hi", reasoning_content=None, tool_calls=None),
                                                     finish_reason="stop")], usage=None))
    assert bare.text == "hi" and bare.reasoning == "" and bare.tool_calls == ()
    empty = delta_from_litellm_response(NS(choices=[], usage=None))
    assert (empty.text, empty.reasoning, empty.tool_calls, empty.finish_reason) == ("", "", (), None)


@pytest.mark.parametrize("price,want", [((0.0, 0.0), 0.0), ((0.25, 0.5), 0.75), ((float("inf"), 0.0), None),
                                        ((-1.0, 0.0), None), ((float("nan"), 0.0), None)])
def test_a_price_is_kept_only_when_it_is_finite_and_not_negative(monkeypatch: pytest.MonkeyPatch, price: tuple[float, float], want: float | None) -> None:
    """A free model costs 0, which a cost budget must count as known; a price litellm's map gets
    wrong (infinite, negative, NaN) leaves the cost unknown instead of breaking the budget."""
    monkeypatch.setattr(lp.import_litellm(), "cost_per_token", lambda **kw: price)
    monkeypatch.setattr(lp, "_UNPRICED", set())
    got = priced(Delta(usage=Usage(10, 5)), "openai/any").usage
    assert got is not None and got.cost == want
