"""What a turn in flight holds: its own state, never a copy of what its policy compiled once.

Issue #14 measured about 120 KB per turn with 1,000 turns in flight, nearly all of it the triggers
``transitions`` binds to every model added to a machine. bench/turn_memory.py prints the figure
side by side with a baseline; this test holds the line at 30 KB, measured the same way (tracemalloc
counts allocations, so the figure is deterministic and does not move with the allocator).
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

from loopspec import Turn, VirtualClock, load_policy
from loopspec.engine.machine import TurnModel, machine_for
from loopspec.providers.base import ModelRequest
from loopspec.wire.deltas import Delta

from _paths import DEFAULT_POLICY

POLICY = load_policy(str(DEFAULT_POLICY))
USER = [{"role": "user", "content": "What is the capital of the UK?"}]
N = 200


class _Gated:
    """Every stream waits for the gate before its one chunk: the turns are all in flight."""

    def __init__(self) -> None:
        self.waiting = 0
        self.gate = asyncio.Event()

    def stream(self) -> "_Stream":
        return _Stream(self)


class _Stream:
    def __init__(self, owner: _Gated) -> None:
        self.owner, self.done = owner, False

    def __aiter__(self) -> "_Stream":
        return self

    async def __anext__(self) -> Delta:
        if self.done:
            raise StopAsyncIteration
        self.owner.waiting += 1
        await self.owner.gate.wait()
        self.done = True
        return Delta(text="London.", finish_reason="stop")

    async def aclose(self) -> None:
        self.done = True


class _Provider:
    def __init__(self, gated: _Gated) -> None:
        self.gated = gated

    async def open(self, request: ModelRequest) -> _Stream:
        return self.gated.stream()


async def _held_per_turn(n: int) -> float:
    gated = _Gated()
    warm = _Gated()
    warm.gate.set()
    await Turn(POLICY, _Provider(warm), model="replay", clock=VirtualClock()).run(USER)
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    runs = [asyncio.ensure_future(Turn(POLICY, _Provider(gated), model="replay", clock=VirtualClock()).run(USER)) for _ in range(n)]
    while gated.waiting < n:
        await asyncio.sleep(0)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - start
    gated.gate.set()
    results = await asyncio.gather(*runs)
    assert all(r.outcome == "completed" for r in results)
    return held / n


def test_a_turn_in_flight_holds_at_most_30_kb() -> None:
    tracemalloc.start()
    try:
        per_turn = asyncio.run(_held_per_turn(N))
    finally:
        tracemalloc.stop()
    assert per_turn <= 30 * 1024, f"{per_turn / 1024:.1f} KB per turn in flight"


def test_a_turn_model_binds_nothing_to_the_shared_machine() -> None:
    """The machine is the policy's, shared by every turn: a model is only its state."""
    model = TurnModel.acquire(POLICY)
    try:
        assert machine_for(POLICY).models == []
        assert not hasattr(model, "__dict__"), "a model holds its state, not one bound trigger per move"
        model.trigger("call_model:opened:0")
        assert model.state == "read_stream"
    finally:
        model.release()
