"""A raw SSE response is parsed once per process and shared by every replay of it.

Sharing is only safe if nothing a replay does reaches the shared items: two replays of one
cassette must end alike, and a broken stream must raise a new exception each time (a raised
instance carries the traceback and context of every raise)."""

from __future__ import annotations

import asyncio

from loopspec import InProcessProvider, Turn, VirtualClock, load_policy
from loopspec.providers.base import ModelRequest, StreamBroken
from loopspec.replay.inproc import stream_items
from loopspec.replay.interactions import StreamResponse
from loopspec.replay.synth import reply_chunks

from _paths import DEFAULT_POLICY

POLICY = load_policy(str(DEFAULT_POLICY))


def _sse(chunks: list[dict[str, object]]) -> str:
    import json

    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def test_equal_sse_responses_share_one_parse_and_other_faults_do_not() -> None:
    text = _sse(reply_chunks("hello there", piece=3))
    a, b = StreamResponse(sse=text), StreamResponse(sse=str(text))
    assert stream_items(a) is stream_items(b)
    cut = StreamResponse(sse=text, disconnect_after=1)
    assert stream_items(cut) is not stream_items(a)
    assert [i.broken is not None for i in stream_items(cut)] == [False, True]


def _open_and_drain(resp: StreamResponse) -> StreamBroken:
    async def go() -> StreamBroken:
        provider = InProcessProvider([resp])
        stream = await provider.open(ModelRequest(model="m", messages=[{"role": "user", "content": "hi"}]))
        try:
            async for _ in stream:
                pass
        except StreamBroken as exc:
            return exc
        raise AssertionError("the stream did not break")

    return asyncio.run(go())


def test_a_shared_broken_stream_raises_a_new_exception_each_time() -> None:
    resp = StreamResponse(sse=_sse(reply_chunks("partial answer", piece=4)), disconnect_after=2)
    first, second = _open_and_drain(resp), _open_and_drain(resp)
    assert first is not second
    assert first.event == second.event and first.event.get("cause") == "disconnect"


def test_two_replays_of_one_sse_response_end_alike() -> None:
    resp = StreamResponse(sse=_sse(reply_chunks("the same answer twice", piece=4)))

    def once() -> tuple[str, list[dict[str, object]]]:
        turn = Turn(POLICY, InProcessProvider([resp]), model="replay", clock=VirtualClock())
        result = asyncio.run(turn.run([{"role": "user", "content": "hi"}]))
        return result.outcome, result.messages

    first = once()
    assert first[0] == "completed" and first[1][-1]["content"] == "the same answer twice"
    assert once() == first
