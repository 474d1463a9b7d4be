"""Tests against the mutants of ``replay/inproc.py`` that the suite let live (a mutation analysis by
hand: each bug planted in the in-process transport, seen to survive the replay and engine tests,
and killed by a test here). Each test names the plant it kills in its docstring."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from loopspec import InProcessProvider, ModelRequest
from loopspec.providers.base import ProviderError
from loopspec.replay.inproc import RecordedHTTPError, recorded_error


def request(tools: bool = False) -> ModelRequest:
    spec = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    return ModelRequest(model="replay", messages=[{"role": "user", "content": "hi"}], tools=spec if tools else None)


def open_error(provider: InProcessProvider, tools: bool = False) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        asyncio.run(provider.open(request(tools)))
    return info.value


def test_a_recorded_error_body_becomes_json_text() -> None:
    """Plant I02: a dict body rendered with ``str()`` (Python's repr, not the JSON litellm shows)."""
    body = {"error": {"message": "nope", "type": "invalid_request_error"}}
    err = recorded_error(400, body, {})
    assert str(err) == json.dumps(body) and json.loads(str(err)) == body
    assert str(recorded_error(400, "plain text", {})) == "plain text"


def test_a_closed_stream_yields_nothing_more() -> None:
    """Plant I10: ``aclose`` left the position where it was, so a closed stream went on playing."""
    from loopspec.replay.interactions import Pause, StreamResponse
    from loopspec.replay.synth import reply_chunks

    async def go() -> tuple[Any, list[Any], float]:
        resp = StreamResponse(chunks=tuple(reply_chunks("Hello there, world.")), pauses=(Pause(2, 5.0),))
        stream = await InProcessProvider([resp]).open(request())
        first = await stream.__anext__()
        await stream.aclose()
        return first, [d async for d in stream], stream.next_pause()

    first, rest, pause = asyncio.run(go())
    assert first is None and rest == [] and pause == 0.0  # the role chunk carries nothing


def test_an_unparseable_event_breaks_the_stream_with_its_cause_on_every_replay() -> None:
    """Plant I11: the fresh exception raised for a recorded break lost the ``__cause__`` (the JSON
    error behind "unparseable SSE data")."""
    from loopspec.providers.base import StreamBroken
    from loopspec.replay.interactions import StreamResponse

    resp = StreamResponse(sse='data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\ndata: {not json\n\n')

    async def go() -> StreamBroken:
        stream = await InProcessProvider([resp]).open(request())
        with pytest.raises(StreamBroken) as info:
            async for _ in stream:
                pass
        return info.value

    first, second = asyncio.run(go()), asyncio.run(go())
    assert first is not second, "each replay raises its own exception"
    for broken in (first, second):
        assert broken.event.attrs["cause"] == "provider_error" and isinstance(broken.__cause__, ValueError)


def pauses_of(resp: Any) -> list[float]:
    """The pause before each item of the recorded stream, as the virtual clock reads them."""

    async def go() -> list[float]:
        stream = await InProcessProvider([resp]).open(request())
        out = [stream.next_pause()]
        async for _ in stream:
            out.append(stream.next_pause())
        return out

    return asyncio.run(go())


def test_a_pause_in_a_raw_sse_stream_comes_once_where_it_was_recorded() -> None:
    """Plant I16: the pause was not reset after the event it precedes, so every later event of a
    raw SSE stream waited as long again."""
    from loopspec.replay.interactions import Pause, StreamResponse
    from loopspec.replay.synth import reply_chunks

    chunks = tuple(reply_chunks("Hello there, world."))
    sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    for resp in (StreamResponse(sse=sse, pauses=(Pause(2, 5.0),)), StreamResponse(chunks=chunks, pauses=(Pause(2, 5.0),))):
        got = pauses_of(resp)
        assert got[2] == 5.0 and sum(got) == 5.0 and len(got) == len(chunks) + 1, got


def items_before_break(resp: Any) -> tuple[int, str | None]:
    """How many items a recorded stream plays, and the cause of the break that ends it (if any)."""
    from loopspec.providers.base import StreamBroken

    async def go() -> tuple[int, str | None]:
        stream = await InProcessProvider([resp]).open(request())
        n = 0
        try:
            async for _ in stream:
                n += 1
        except StreamBroken as exc:
            return n, exc.event.attrs["cause"]
        return n, None

    return asyncio.run(go())


@pytest.mark.parametrize("after", [0, 1, 2, 5, -1])
def test_a_disconnect_after_k_events_plays_exactly_k_on_both_renderings(after: int) -> None:
    """Plant I19: a chunk stream's disconnect came one chunk late (``k > disconnect_after``).
    Plant I23: a disconnect after the last chunk (-1 here: after all of them) was dropped."""
    from loopspec.replay.interactions import StreamResponse
    from loopspec.replay.synth import reply_chunks

    chunks = tuple(reply_chunks("Hello there, world."))
    sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    after = len(chunks) if after < 0 else after
    assert items_before_break(StreamResponse(chunks=chunks, disconnect_after=after)) == (after, "disconnect")
    assert items_before_break(StreamResponse(sse=sse, disconnect_after=after)) == (after, "disconnect")


def test_divergence_is_where_the_policy_first_asked_for_more_than_was_recorded() -> None:
    """Plant I27: ``unconsumed`` went negative once the policy asked for more calls than were
    recorded. Plant I29: ``diverged_at`` moved on to each later extra call instead of keeping the
    first."""
    from loopspec.replay.synth import reply

    provider = InProcessProvider([reply("Hi.")])
    assert provider.unconsumed == 1 and provider.diverged_at is None
    asyncio.run(provider.open(request()))
    assert provider.unconsumed == 0 and provider.diverged_at is None
    errors = [open_error(provider) for _ in range(2)]
    assert provider.unconsumed == 0 and provider.diverged_at == 1 and len(provider.requests) == 3
    assert {(e.event.name, e.event.get("status"), e.event.get("code")) for e in errors} == {("bad_request", 409, "loopspec_diverged")}
    assert [e.event.get("message") for e in errors] == [
        '{"error": {"type": "loopspec_diverged", "code": "loopspec_diverged", "message": '
        f'"cassette has 1 recorded model responses; the policy asked for call {n}"}}}}' for n in (2, 3)
    ]


def pauses_to_break(resp: Any) -> list[float]:
    """The pause before each item of a recorded stream, the item that breaks it included."""
    from loopspec.providers.base import StreamBroken

    async def go() -> list[float]:
        stream = await InProcessProvider([resp]).open(request())
        out: list[float] = []
        while True:
            out.append(stream.next_pause())
            try:
                await stream.__anext__()
            except (StopAsyncIteration, StreamBroken):
                return out

    return asyncio.run(go())


@pytest.mark.parametrize("after", [0, 2])
def test_a_stall_before_a_disconnect_is_waited_out_first_on_both_renderings(after: int) -> None:
    """Plant I15 (raw SSE) and I24 (chunks): the pause recorded before a disconnect was dropped,
    so the stream broke at once instead of stalling first."""
    from loopspec.replay.interactions import StreamResponse
    from loopspec.replay.synth import reply_chunks

    chunks = tuple(reply_chunks("Hello there, world."))
    sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    for resp in (StreamResponse(chunks=chunks, stall_after=after, stall_seconds=7.0, disconnect_after=after),
                 StreamResponse(sse=sse, stall_after=after, stall_seconds=7.0, disconnect_after=after)):
        assert pauses_to_break(resp) == [0.0] * after + [7.0]
        assert items_before_break(resp) == (after, "disconnect")


def test_the_items_of_a_stream_broken_in_band_end_at_the_break() -> None:
    """Plant I17 (raw SSE) and I22 (chunks): after an in-band error the items went on with the
    events recorded after it (the checker reads streams through ``stream_items``)."""
    from loopspec.replay.inproc import stream_items
    from loopspec.replay.interactions import StreamResponse

    ok = {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    bad = {"error": {"message": "overloaded", "type": "server_error"}}
    sse = "".join(f"data: {json.dumps(c)}\n\n" for c in (ok, bad, ok, ok)) + "data: [DONE]\n\n"
    for resp in (StreamResponse(sse=sse), StreamResponse(chunks=(ok, bad, ok, ok))):
        items = stream_items(resp)
        assert len(items) == 2 and items[0].delta is not None and items[-1].broken is not None, items


def test_every_item_of_a_chunk_stream_carries_its_pause_and_a_trailing_stall_stalls() -> None:
    """Plants of ``_items_for_chunks`` (2026-12-02): the pause before an in-band error became None
    (a virtual clock cannot compare it), the disconnect's message was reworded, and the stall
    recorded after the last chunk was read at the wrong position and dropped."""
    from loopspec.replay.inproc import stream_items
    from loopspec.replay.interactions import Pause, StreamResponse

    ok = {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    bad = {"error": {"message": "overloaded", "type": "server_error"}}
    broken = stream_items(StreamResponse(chunks=(ok, bad), pauses=(Pause(1, 3.0),)))
    assert [i.pause for i in broken] == [0.0, 3.0] and broken[-1].broken is not None
    cut = stream_items(StreamResponse(chunks=(ok, ok), disconnect_after=1))
    assert cut[-1].broken is not None and cut[-1].broken.event.attrs["message"] == "connection dropped mid-stream"
    trailing = stream_items(StreamResponse(chunks=(ok, ok), stall_after=2, stall_seconds=9.0))
    assert [(i.pause, i.delta) for i in trailing][-1] == (9.0, None) and len(trailing) == 3
    assert len(stream_items(StreamResponse(chunks=(ok, ok)))) == 2, "no stall recorded: no trailing item"


def test_the_provider_keeps_every_request_it_was_sent_in_order() -> None:
    """``requests`` is the replay's record of what the turn asked (``expect.requests`` and the
    journal's resume read it): the request objects themselves, one per open, a refused one too."""
    from loopspec.replay.synth import reply

    provider = InProcessProvider([reply("one")])
    first, second = request(), request(tools=True)
    asyncio.run(provider.open(first))
    with pytest.raises(ProviderError):
        asyncio.run(provider.open(second))  # past the recording: diverged
    assert provider.requests == [first, second] and provider.requests[0] is first
    assert provider.diverged_at == 1 and provider.unconsumed == 0


def test_a_stream_that_broke_is_over() -> None:
    """After the break is raised, the stream is exhausted: reading on ends it, it does not fail
    again or play the chunks after the break."""
    from loopspec.providers.base import StreamBroken
    from loopspec.replay.interactions import StreamResponse
    from loopspec.replay.synth import reply_chunks

    async def go() -> list[Any]:
        stream = await InProcessProvider([StreamResponse(chunks=tuple(reply_chunks("Hello there, world.")), disconnect_after=1)]).open(request())
        await stream.__anext__()
        with pytest.raises(StreamBroken):
            await stream.__anext__()
        return [d async for d in stream]

    assert asyncio.run(go()) == []
