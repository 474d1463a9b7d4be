"""Memory per turn in flight: N concurrent turns, each waiting for its first chunk, side by side
with a baseline of N bare requests waiting the same way, in one run.

A turn in flight holds its own configuration, trajectory, trace, request record and the model the
``transitions`` machine moves; whatever a policy compiles once (states, guards, templates, the
machine itself) must be shared, not copied per turn. Measured with tracemalloc (Python
allocations that stay live while the turns wait), so the figure does not move with the allocator.
Target (issue #14): at most 30 KB per turn in flight, above the baseline.

    python bench/turn_memory.py [--turns 1000] [--top 0]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tracemalloc
from pathlib import Path
from typing import Any, Awaitable, Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loopspec import ToolRegistry, Turn, load_policy  # noqa: E402
from loopspec.engine.clock import VirtualClock  # noqa: E402
from loopspec.providers.base import ModelRequest  # noqa: E402
from loopspec.wire.deltas import Delta  # noqa: E402

POLICY = load_policy(str(ROOT / "machines" / "default.yaml"))
USER = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of the UK?"}]
PARAMS = {"type": "object", "properties": {"country": {"type": "string"}}}


class Gate:
    """Counts the streams waiting for their first chunk; releases them all at once."""

    def __init__(self, n: int) -> None:
        self.n, self.waiting = n, 0
        self.all_waiting = asyncio.Event()
        self.open = asyncio.Event()

    async def wait(self) -> None:
        self.waiting += 1
        if self.waiting == self.n:
            self.all_waiting.set()
        await self.open.wait()


class GatedStream:
    """A response whose first chunk comes when the gate opens: a turn in flight."""

    def __init__(self, gate: Gate) -> None:
        self.gate, self.done = gate, False

    def __aiter__(self) -> "GatedStream":
        return self

    async def __anext__(self) -> Delta:
        if self.done:
            raise StopAsyncIteration
        await self.gate.wait()
        self.done = True
        return Delta(text="London.", finish_reason="stop")

    async def aclose(self) -> None:
        self.done = True


class GatedProvider:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def open(self, request: ModelRequest) -> GatedStream:
        return GatedStream(self.gate)


def registry() -> ToolRegistry:
    reg = ToolRegistry()
    reg.register(lambda country: "London", name="get_capital", parameters=PARAMS)
    return reg


async def a_turn(gate: Gate, tools: ToolRegistry) -> None:
    turn = Turn(POLICY, GatedProvider(gate), model="replay", tools=tools, clock=VirtualClock())
    result = await turn.run(USER)
    assert result.outcome == "completed", result.outcome


async def a_bare_request(gate: Gate, tools: ToolRegistry) -> None:
    """The baseline: what any agent loop holds for one request in flight (its messages, the
    request, the open stream), without loopspec."""
    messages = [dict(m) for m in USER]
    request = ModelRequest(model="replay", messages=messages, tools=tools.schemas())
    stream = await GatedProvider(gate).open(request)
    async for _ in stream:
        pass


async def in_flight(n: int, make: Callable[[Gate, ToolRegistry], Awaitable[None]], top: int) -> float:
    """Bytes held per task while ``n`` of them wait for their first chunk."""
    tools = registry()
    for _ in range(2):  # warm up: the policy's machine, caches, lazy imports
        warm = Gate(1)
        task = asyncio.ensure_future(make(warm, tools))
        await warm.all_waiting.wait()
        warm.open.set()
        await task
    gc.collect()
    gate = Gate(n)
    before = tracemalloc.take_snapshot() if top else None
    start = tracemalloc.get_traced_memory()[0]
    tasks = [asyncio.ensure_future(make(gate, tools)) for _ in range(n)]
    await gate.all_waiting.wait()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - start
    if before is not None:
        for stat in tracemalloc.take_snapshot().compare_to(before, "lineno")[:top]:
            print(f"    {stat.size_diff / n:8.0f} B/turn  {stat.traceback}")
    gate.open.set()
    await asyncio.gather(*tasks)
    return held / n


def measure(n: int, top: int) -> dict[str, float]:
    tracemalloc.start(25 if top else 1)
    try:
        out: dict[str, Any] = {}
        for name, make in (("baseline", a_bare_request), ("turn", a_turn)):
            out[name] = asyncio.run(in_flight(n, make, top if name == "turn" else 0))
        return out
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--top", type=int, default=0, help="print the N allocation sites holding the most per turn")
    args = parser.parse_args()
    kb = {k: v / 1024 for k, v in measure(args.turns, args.top).items()}
    added = kb["turn"] - kb["baseline"]
    print(f"memory per request in flight ({args.turns} concurrent, default.yaml, tracemalloc):")
    print(f"  bare request (baseline)  {kb['baseline']:8.1f} KB")
    print(f"  loopspec turn            {kb['turn']:8.1f} KB")
    print(f"  added by the turn        {added:8.1f} KB   (target <= 30 KB: {'OK' if added <= 30 else 'OVER'})")


if __name__ == "__main__":
    main()
