"""The end of a litellm stream as loopspec reads it: the usage, without litellm's rebuild.

After a reply's last chunk, litellm (1.106) keeps only the upstream's usage, then rebuilds the whole
reply in a worker thread to report it. When nobody listens for that (no success callback, no
cache), ``LiteLLMResponseStream`` reads the rest of the upstream itself, through litellm's own
``chunk_creator``, and adds the usage up with litellm's own function. These tests hold it to
litellm's own end: for every recorded stream, through every provider route it can be served on,
cut at every point after its finish reason, the reply loopspec assembles (text, reasoning, tool
calls, finish reason, usage and its cost, the broken event) is the one it assembles when a
listener makes it read to litellm's end. Real litellm, real sockets (``tests/_loopback.py``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402
import pytest  # noqa: E402
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402

from _loopback import LoopbackServer, Reply  # noqa: E402
from _paths import FIXTURES  # noqa: E402
from test_litellm_provider import _count_reply_builds, no_listeners  # noqa: E402

from loopspec.providers.base import ModelRequest, StreamBroken  # noqa: E402
from loopspec.providers.litellm_provider import LiteLLMProvider, import_litellm  # noqa: E402
from loopspec.wire.assemble import ReplyAssembler  # noqa: E402

STREAMS = FIXTURES / "streams"
OPENAI_SHAPED = sorted(STREAMS.glob("*.sse"))
ANTHROPIC = sorted((STREAMS / "anthropic").glob("*.sse"))
# models litellm's token counter reads with tiktoken (a llama name would fetch a tokenizer)
OPENAI_ROUTES = ["openai/x", "openai/gpt-4o-mini", "deepseek/x", "groq/x", "openrouter/x"]
ANTHROPIC_ROUTES = ["anthropic/x", "anthropic/claude-sonnet-4-5"]
CASES = [(p, m) for p in OPENAI_SHAPED for m in OPENAI_ROUTES] + [(p, m) for p in ANTHROPIC for m in ANTHROPIC_ROUTES]


class _Listener(CustomLogger):  # type: ignore[misc]
    """A success callback that does nothing: its presence makes loopspec read to litellm's end."""


LISTS = ("callbacks", "success_callback", "_async_success_callback")


class Listeners:
    """litellm's global callback lists: a request copies a logger registered in ``callbacks`` into
    the other two, so stopping listening empties all three."""

    def add(self) -> None:
        litellm.callbacks.append(_Listener())

    def clear(self) -> None:
        for name in LISTS:
            getattr(litellm, name).clear()


@pytest.fixture
def listeners(monkeypatch: pytest.MonkeyPatch) -> Listeners:
    """Nobody listening for the test (lists and cache emptied), restored after it."""
    no_listeners(monkeypatch)
    return Listeners()


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How often litellm rebuilt a whole reply (``stream_chunk_builder``)."""
    return _count_reply_builds(monkeypatch)


def read(srv: LoopbackServer, reply: Reply, model: str) -> tuple[Any, ...]:
    """What loopspec assembles from one reply served on ``model``'s route."""
    srv.push(reply)
    base = f"http://127.0.0.1:{srv.port}" if model.startswith("anthropic/") else srv.base_url

    async def go() -> tuple[Any, ...]:
        a, broken = ReplyAssembler(), None
        request = ModelRequest(model, [{"role": "user", "content": "hi"}], max_tokens=64, api_base=base,
                               api_key="sk-test", timeout=5.0)
        try:
            stream = await LiteLLMProvider().open(request)
            try:
                async for d in stream:
                    a.feed(d)
            finally:
                await stream.aclose()
        except StreamBroken as e:
            broken = e.event.name, dict(e.event.attrs)
        r = a.result()
        return r.text, r.reasoning, [(c.id, c.name, c.arguments) for c in r.tool_calls], r.finish_reason, r.usage, broken

    return asyncio.run(go())


def both_ways(srv: LoopbackServer, listeners: Listeners, reply: Reply, model: str,
              builds: list[int] | None = None) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The reply read to litellm's own end (a listener registered), then as loopspec reads it alone
    (``builds`` counted from there)."""
    listeners.add()
    try:
        reference = read(srv, reply, model)
    finally:
        listeners.clear()
    if builds is not None:
        builds[0] = 0
    return reference, read(srv, reply, model)


@pytest.mark.parametrize("path,model", CASES, ids=[f"{p.name}@{m}" for p, m in CASES])
def test_every_recorded_stream_ends_as_litellms_own_end_reports_it(srv, listeners, builds, path: Path, model: str):
    """The same reply, usage and cost included, whether litellm's end or loopspec's reads the rest;
    and where the upstream sent its usage and no error, litellm never rebuilds the reply."""
    text = path.read_text()
    reference, ours = both_ways(srv, listeners, Reply(sse=text), model, builds)
    assert ours == reference
    if ours[5] is None and ('"usage":{"' in text.replace(" ", "") or path.parent.name == "anthropic"):
        assert ours[4] is not None and builds[0] == 0, (ours[4], builds[0])


def _events(text: str) -> list[str]:
    return [e for e in text.split("\n\n") if e.strip()]


def _finish_index(events: list[str]) -> int:
    """The index of the first event that carries a finish reason (OpenAI or Anthropic shaped)."""
    marks = ('"finish_reason":"', '"finish_reason": "', '"stop_reason":"', '"stop_reason": "')
    return next(i for i, e in enumerate(events) if any(m in e for m in marks))


CUT_STREAMS = [STREAMS / "openai_stream_tool_call_single.sse", STREAMS / "groq_stream_reasoning_tool_call.sse",
               STREAMS / "anthropic" / "anthropic_stream_text.sse"]
CUTS = [(p, n) for p in CUT_STREAMS for n in range(_finish_index(_events(p.read_text())) + 1, len(_events(p.read_text())) + 1)]


@pytest.mark.parametrize("path,after", CUTS, ids=[f"{p.name}-drop-after-{n}" for p, n in CUTS])
def test_a_connection_dropped_after_the_finish_reason_ends_the_reply_as_litellms_own_end_does(
        srv, listeners, path: Path, after: int):
    """litellm reads a dropped connection after the finish reason as the stream's end (and counts
    the tokens itself when the usage never came): loopspec's read of the rest agrees, at every cut."""
    model = "anthropic/x" if path.parent.name == "anthropic" else "openai/gpt-4o-mini"
    reference, ours = both_ways(srv, listeners, Reply(sse=path.read_text(), drop_after=after), model)
    assert ours == reference
    assert ours[3] is not None and ours[5] is None


def test_the_finish_reason_is_handed_out_before_the_rest_is_read(srv, listeners):
    """A stall between the finish reason and the usage: the reply's last chunk has already reached
    the reader when the read of the rest waits, as it does when litellm reads the rest itself (a
    reply that ended on a tool call is not mistaken for one cut inside it)."""
    text = (STREAMS / "openai_stream_tool_call_single.sse").read_text()
    after = _finish_index(_events(text)) + 1

    async def until_stall(model: str) -> list[Any]:
        srv.push(Reply(sse=text, stall_after=after, stall_seconds=2.0))
        stream = await LiteLLMProvider().open(ModelRequest(model, [{"role": "user", "content": "hi"}],
                                                           api_base=srv.base_url, api_key="sk-test", timeout=5.0))
        got = []
        try:
            while True:
                got.append(await asyncio.wait_for(stream.__anext__(), 0.5))
        except asyncio.TimeoutError:
            return got
        finally:
            await stream.aclose()

    ours = asyncio.run(until_stall("openai/gpt-4o-mini"))
    assert ours and ours[-1].finish_reason == "tool_calls" and all(d.usage is None for d in ours)
    listeners.add()
    assert asyncio.run(until_stall("openai/gpt-4o-mini")) == ours


class RestOfTheUpstream:
    """Test double: the parts of litellm's ``CustomStreamWrapper`` that ``rest_to_the_end`` reads,
    over a scripted rest of the upstream, with every chunk handed to ``chunk_creator`` recorded.
    For what litellm's own loop skips and no recorded stream sends (``None``, the string "None",
    Gemini's chunk without parts)."""

    def __init__(self, rest: list[Any], provider: str = "openai") -> None:
        self.custom_llm_provider = provider
        self.chunks: list[Any] = []
        self.created: list[Any] = []
        self.logging_obj = None
        self._rest = rest

    @property
    def completion_stream(self) -> Any:
        async def gen() -> Any:
            for item in self._rest:
                yield item
        return gen()

    def chunk_creator(self, chunk: Any) -> Any:
        self.created.append(chunk)
        return chunk if getattr(chunk, "usage", None) is not None else None


def _usage_chunk(prompt: int, completion: int) -> Any:
    chunk = litellm.ModelResponseStream()
    chunk.usage = litellm.Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
    return chunk


class _NoParts:
    parts: list[Any] = []


@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_the_rest_is_read_past_what_litellms_own_loop_skips(provider: str) -> None:
    """``None``, the string "None" and (from Gemini only) a chunk without parts are skipped, as
    litellm's loop skips them, and reading goes on to the usage after them."""
    from loopspec.providers.litellm_provider import rest_to_the_end

    import_litellm()
    no_parts, usage = _NoParts(), _usage_chunk(5, 7)
    wrapper = RestOfTheUpstream([None, "None", no_parts, usage], provider)
    got = asyncio.run(rest_to_the_end(wrapper))[1]
    assert (got.prompt_tokens, got.completion_tokens) == (5, 7)
    assert wrapper.created == ([usage] if provider == "gemini" else [no_parts, usage])


def test_the_usage_adds_up_the_kept_chunks_as_litellm_does() -> None:
    """A usage chunk litellm kept before the reply's last chunk (input tokens, which Anthropic
    sends first) and one in the rest (output tokens): the usage is litellm's sum of both
    (``calculate_total_usage``), not the last chunk's alone."""
    from loopspec.providers.litellm_provider import rest_to_the_end

    import_litellm()
    early, late = litellm.ModelResponseStream(), litellm.ModelResponseStream()
    early.usage = {"prompt_tokens": 11}
    late.usage = {"completion_tokens": 9}
    wrapper = RestOfTheUpstream([late])
    wrapper.chunks.append(early)
    got = asyncio.run(rest_to_the_end(wrapper))[1]
    assert (got.prompt_tokens, got.completion_tokens, got.total_tokens) == (11, 9, 20)


class _FailingRest(RestOfTheUpstream):
    @property
    def completion_stream(self) -> Any:
        async def gen() -> Any:
            raise ValueError("upstream broke")
            yield  # pragma: no cover
        return gen()


class _MappingRest(_FailingRest):
    def _log_stream_failure_and_raise(self, e: Exception) -> None:
        raise RuntimeError(f"mapped: {e}")


@pytest.mark.parametrize("wrapper,raised", [(_MappingRest([]), "RuntimeError('mapped: upstream broke')"),
                                            (_FailingRest([]), "ValueError('upstream broke')")])
def test_a_failure_in_the_rest_is_raised_as_litellms_own_read_raises_it(wrapper: Any, raised: str) -> None:
    """Through litellm's own failure path (mapped to its exception types, the failure logged) when
    the wrapper has one; as it came otherwise."""
    from loopspec.providers.litellm_provider import rest_to_the_end

    with pytest.raises(Exception) as info:
        asyncio.run(rest_to_the_end(wrapper))[1]
    assert repr(info.value) == raised


class _Calculator:
    """Stand-in for litellm's logging object: its cost calculator answers ``answer`` (or raises it),
    and records the responses it was asked to price."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[Any] = []

    def response_cost_calculator(self, result: Any) -> Any:
        self.asked.append(result)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize("answer,cost", [(2.5e-05, 2.5e-05), (0.0, None), (None, None), (ValueError("unknown model"), None)],
                         ids=["priced", "zero", "none", "raises"])
def test_the_usage_is_priced_as_litellms_rebuild_prices_it(answer: Any, cost: Any) -> None:
    """The cost litellm's calculator gives, on a response carrying the usage chunk's hidden params
    (the upstream's own model name): kept when positive, as litellm's rebuild keeps it; none
    otherwise, and a calculator that fails leaves the cost unknown rather than the read failed."""
    from loopspec.providers.litellm_provider import rest_to_the_end

    import_litellm()
    usage = _usage_chunk(5, 7)
    usage._hidden_params = {"provider_response_model": "gpt-4o-2024-08-06"}
    wrapper = RestOfTheUpstream([usage])
    wrapper.logging_obj = _Calculator(answer)
    got = asyncio.run(rest_to_the_end(wrapper))[1]
    assert getattr(got, "cost", None) == cost
    (asked,) = wrapper.logging_obj.asked
    assert asked._hidden_params["provider_response_model"] == "gpt-4o-2024-08-06" and asked.usage.prompt_tokens == 5


def test_a_cost_the_provider_reported_is_kept_without_asking_litellms_calculator() -> None:
    """OpenRouter puts its own cost in the usage: that figure stands, as in litellm's rebuild."""
    from loopspec.providers.litellm_provider import rest_to_the_end

    import_litellm()
    usage = _usage_chunk(5, 7)
    usage.usage.cost = 0.000669
    wrapper = RestOfTheUpstream([usage])
    wrapper.logging_obj = _Calculator(1.0)
    assert asyncio.run(rest_to_the_end(wrapper))[1].cost == 0.000669 and wrapper.logging_obj.asked == []


def _after_the_finish(name: str, extra: str) -> str:
    """A recorded stream with ``extra`` (an SSE data payload) sent right after its finish reason."""
    events = _events((STREAMS / name).read_text())
    i = _finish_index(events) + 1
    return "\n\n".join(events[:i] + [f"data: {extra}"] + events[i:]) + "\n\n"


TEXT_CHUNK = ('{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","choices":'
              '[{"index":0,"delta":{"content":" (late)"},"finish_reason":null}]}')
TEXT_AND_USAGE = ('{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","choices":'
                  '[{"index":0,"delta":{"content":" (late)"},"finish_reason":null}],'
                  '"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}')


@pytest.mark.parametrize("extra", [TEXT_CHUNK, TEXT_AND_USAGE], ids=["text", "text-and-usage"])
def test_what_litellm_hands_out_after_the_finish_reason_is_handed_out(srv, listeners, extra: str) -> None:
    """An upstream that sends text after its finish reason (no recorded one does): litellm hands it
    out, and so does loopspec's read of the rest, before the usage, which counts as litellm counts it."""
    reference, ours = both_ways(srv, listeners, Reply(sse=_after_the_finish("openai_stream_text.sse", extra)),
                                "openai/gpt-4o-mini")
    assert ours == reference
    assert reference[0].endswith(" (late)"), reference


def test_the_rest_is_read_past_a_usage_chunk_to_the_upstreams_end() -> None:
    """A usage chunk is not the end: one sent after it (a running total) is the one litellm reports."""
    from loopspec.providers.litellm_provider import rest_to_the_end

    import_litellm()
    handed, usage = asyncio.run(rest_to_the_end(RestOfTheUpstream([_usage_chunk(5, 7), _usage_chunk(6, 8)])))
    assert handed == [] and (usage.prompt_tokens, usage.completion_tokens) == (6, 8)


def test_a_stream_closed_while_the_rest_is_handed_out_hands_out_nothing_more(srv, listeners) -> None:
    """Closing is the end, whatever the rest of the upstream still had to hand out (here the usage,
    read with late text before it)."""
    srv.push(Reply(sse=_after_the_finish("openai_stream_text.sse", TEXT_CHUNK)))

    async def go() -> list[Any]:
        stream = await LiteLLMProvider().open(ModelRequest("openai/gpt-4o-mini", [{"role": "user", "content": "hi"}],
                                                           api_base=srv.base_url, api_key="sk-test", timeout=5.0))
        got = []
        async for d in stream:
            got.append(d)
            if d.text == " (late)":
                await stream.aclose()
        return got

    got = asyncio.run(go())
    assert got[-1].text == " (late)" and all(d.usage is None for d in got)
