"""Both replay transports agree on every valid cassette, whatever the client stack costs.

Over HTTP only the recording says where a stream stalls (docs/cassettes.md, "Two transports, one
result"): the time litellm spends on a 3.9 MB reply or a long stream is never a stall, and a
recorded stall is a stall even when the client is too busy to time it. The server's half of this
is tested on the wire (``LoopbackServer(stall_timeout=...)``), the whole on full turns.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from loopspec import Consumers, InProcessProvider, Turn, VirtualClock, load_policy
from loopspec.replay.http import run_over_http
from loopspec.replay.interactions import CompletionResponse, Interaction, StreamResponse
from loopspec.replay.server import LoopbackServer
from loopspec.replay.synth import reply_chunks

from _paths import DEFAULT_POLICY

POLICY = load_policy(str(DEFAULT_POLICY))
USER = [{"role": "user", "content": "Summarise the log."}]
BIG = "The log says nothing new. " * 150_000  # 3.9 MB in one chunk, as issue #14 saw it
LONG = 2_000  # data events; litellm spends about 1 ms on each over HTTP
TINY_SCALE = 1e-6
"""A 60 s stall timeout is 60 us of wall time: a client-side stall timer would fire inside litellm
on every chunk, so a turn that completes at this scale proves no timer counts litellm's time."""


def summary(result: Any) -> tuple[Any, ...]:
    return (result.outcome, [s.event for s in result.trace], result.usage.model_calls, len(result.response))


def in_process(script: list[Interaction], **options: Any) -> Any:
    turn = Turn(POLICY, InProcessProvider(script), model="replay", clock=VirtualClock(), **options)
    return asyncio.run(turn.run(USER))


def over_http(loop: asyncio.AbstractEventLoop, script: list[Interaction], scale: float, **options: Any) -> Any:
    result, server = loop.run_until_complete(run_over_http(POLICY, script, USER, time_scale=scale, **options))
    assert len(server.requests) == result.usage.model_calls
    return result


# -- full turns ------------------------------------------------------------------------------------

BIG_COMPLETION = CompletionResponse({
    "id": "c", "object": "chat.completion", "created": 0, "model": "replay",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": BIG}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 600_000, "total_tokens": 600_012},
})


@pytest.mark.parametrize(
    "script",
    [
        pytest.param([StreamResponse(chunks=reply_chunks(BIG, piece=len(BIG)))], id="3.9 MB one-chunk stream"),
        pytest.param([BIG_COMPLETION], id="3.9 MB completion"),
        pytest.param([StreamResponse(chunks=reply_chunks("ab" * LONG, piece=2))], id="2,000-event stream"),
    ],
)
def test_litellm_time_is_never_a_stall(script: list[Interaction], loop: asyncio.AbstractEventLoop) -> None:
    http = over_http(loop, script, TINY_SCALE)
    assert summary(http) == summary(in_process(script))
    assert http.outcome == "completed" and [s.event for s in http.trace] == ["opened", "text"]


def test_a_pause_short_of_the_stall_timeout_is_waited_out(loop: asyncio.AbstractEventLoop) -> None:
    """59 s of a 60 s stall timeout, on a long stream: a gap, not a stall, on both transports."""
    script: list[Interaction] = [StreamResponse(chunks=reply_chunks("ab" * 300, piece=2), stall_after=150, stall_seconds=59)]
    http = over_http(loop, script, 0.001)
    assert summary(http) == summary(in_process(script))
    assert http.outcome == "completed"


def busy_client(seconds: float) -> Consumers:
    """A client that blocks its event loop on every streamed piece (a loaded machine, a slow UI)."""
    return Consumers(on_delta=lambda text: time.sleep(seconds))


@pytest.mark.parametrize("stall_seconds", [60, 300])
def test_a_recorded_stall_is_a_stall_however_busy_the_client(stall_seconds: float, loop: asyncio.AbstractEventLoop) -> None:
    """The client blocks for twice the scaled stall timeout on each piece; meanwhile the server
    serves the stall and would serve the rest. A client timer started after the block finds the
    rest already there and misses the stall; the server's drop cannot be missed."""
    text = reply_chunks("The capital is London.", piece=4)
    script: list[Interaction] = [
        StreamResponse(chunks=text, stall_after=3, stall_seconds=stall_seconds),
        StreamResponse(chunks=text),
        StreamResponse(chunks=reply_chunks("London.")),
    ]
    scale = 0.002  # the stall timeout is 0.12 s of wall time
    http = over_http(loop, script, scale, consumers=busy_client(2 * 60 * scale))
    local = in_process(script, consumers=busy_client(0))
    assert summary(http) == summary(local)
    assert [s.event for s in http.trace][:2] == ["opened", "stalled"]
    assert http.trace[1].attrs == local.trace[1].attrs


# -- the server's half, on the wire ---------------------------------------------------------------


def read_until_drop(resp: StreamResponse, stall_timeout: float) -> tuple[bytes, bool, set[int]]:
    """The bytes a client reads, whether the stream ended by a drop, and the requests noted."""
    got: list[bytes] = []
    dropped = False
    with LoopbackServer([resp], time_scale=0.001, stall_timeout=stall_timeout) as server:
        with httpx.stream("POST", server.api_base + "/chat/completions", json={"stream": True}, timeout=5) as r:
            try:
                for part in r.iter_raw():
                    got.append(part)
            except httpx.RemoteProtocolError:
                dropped = True
        return b"".join(got), dropped, set(server.stalled)


CHUNKS = reply_chunks("one two three four", piece=4)  # role, 5 pieces, finish: 7 data events


@pytest.mark.parametrize("after", [0, 3, len(CHUNKS)])
def test_the_server_drops_a_recorded_stall_before_the_next_event(after: int) -> None:
    body, dropped, stalled = read_until_drop(StreamResponse(chunks=CHUNKS, stall_after=after, stall_seconds=60, keepalive=25), 60)
    assert dropped and stalled == {0}
    assert body.count(b"data: {") == after and b"[DONE]" not in body
    assert body.count(b": ping") == 2, "the pings of the stall are served before the drop"


def test_a_pause_shorter_than_the_stall_timeout_is_served_whole() -> None:
    body, dropped, stalled = read_until_drop(StreamResponse(chunks=CHUNKS, stall_after=3, stall_seconds=59.9), 60)
    assert not dropped and stalled == set()
    assert body.count(b"data: {") == len(CHUNKS) and b"[DONE]" in body


def test_without_a_stall_timeout_a_stall_is_only_a_pause() -> None:
    body, dropped, stalled = read_until_drop(StreamResponse(chunks=CHUNKS, stall_after=3, stall_seconds=300), 60.0 * 10)
    assert not dropped and stalled == set() and b"[DONE]" in body


def test_pauses_that_add_up_at_one_point_are_judged_together() -> None:
    """Two waits at one event, neither a stall alone: in-process adds them up, so does the server."""
    from loopspec.replay.interactions import Pause

    resp = StreamResponse(chunks=CHUNKS, pauses=(Pause(2, 40.0), Pause(2, 30.0)))
    body, dropped, stalled = read_until_drop(resp, 60)
    assert dropped and stalled == {0} and body.count(b"data: {") == 2


def test_a_served_stream_that_never_answers_is_still_a_stall() -> None:
    """No recorded stall, but the client stack never yields: the clock's safety net ends the read
    (a broken client must not hang a replay), and a stream that is not served keeps its timer."""
    from loopspec.engine.clock import StallTimeout
    from loopspec.replay.http import LoopbackClock

    class Silent:
        stalls_served = True

        async def __anext__(self) -> Any:
            await asyncio.Event().wait()

    class Unserved(Silent):
        stalls_served = False

    clock = LoopbackClock(1e-6, min_open=0.001)
    for stream in (Silent(), Unserved()):
        with pytest.raises(StallTimeout):
            asyncio.run(clock.next_chunk(stream, 60))


def test_the_turn_time_over_http_is_the_recorded_time_however_busy_the_client(loop: asyncio.AbstractEventLoop) -> None:
    """A 20 s gap and a stall behind pings: 20 + 60 s of turn time on both transports. Wall time
    from the last chunk would undercount the gap the server served while the client was busy."""
    from loopspec.replay.http import LoopbackClock, run_guarded_over_http
    from loopspec.replay.interactions import Pause
    from loopspec.replay.turn_time import TurnTime

    chunks = reply_chunks("The suite is still running, please wait for it.")
    script: list[Interaction] = [
        StreamResponse(chunks=chunks, pauses=(Pause(2, 20.0, 5.0), Pause(4, 90.0, 30.0))),
        StreamResponse(chunks=reply_chunks("All green.")),
    ]
    scale = 0.002
    clock = TurnTime(LoopbackClock(scale))
    result, _server, crash = loop.run_until_complete(
        run_guarded_over_http(POLICY, script, USER, time_scale=scale, clock=clock, consumers=busy_client(30 * scale))
    )
    virtual = VirtualClock()
    local = asyncio.run(Turn(POLICY, InProcessProvider(script), model="replay", clock=virtual).run(USER))
    assert crash is None and summary(result) == summary(local)
    assert clock.elapsed == virtual.now() == 80.0


@pytest.mark.parametrize("then", ["drop", "more events"])
def test_a_stall_is_a_stall_even_when_its_pings_add_up_to_a_hair_less(then: str) -> None:
    """0.6 s served as pings every 0.1 s adds up to a hair under 0.6 in floating point; in-process
    the pause is 0.6, a stall at a 0.6 s timeout. What comes next (the recording's drop, or more
    events) is never served: the client gave up first."""
    faults: dict[str, Any] = {"disconnect_after": 3} if then == "drop" else {}
    resp = StreamResponse(chunks=CHUNKS, stall_after=3, stall_seconds=0.6, keepalive=0.1, **faults)
    body, dropped, stalled = read_until_drop(resp, 0.6)
    assert dropped and stalled == {0} and body.count(b"data: {") == 3


def test_waits_on_both_sides_of_done_add_up_to_a_stall() -> None:
    """``[DONE]`` carries no payload, so the in-process transport adds the waits before and after
    it into one: 40 + 40 s is a stall at the end of the stream, and the server stops before [DONE]."""
    from loopspec.replay.interactions import Pause

    sse = 'data: {"choices":[{"index":0,"delta":{"content":"Hi."},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    resp = StreamResponse(sse=sse, pauses=(Pause(1, 40.0), Pause(2, 40.0)))
    body, dropped, stalled = read_until_drop(resp, 60)
    assert dropped and stalled == {0}
    assert body.count(b"data: {") == 1 and b"[DONE]" not in body
