"""What writing a turn's journal costs per step, measured side by side in one run, twice over.

1. The store alone. Each round appends one step-sized entry (the shape a turn writes before each effect: the step, the
request summary, the counters; about 1.5 KB of JSON) to three stores, interleaved so that the
machine's load falls on all of them alike:

- an in-memory list (the baseline: building and encoding the entry, no storage);
- SQLite, WAL, ``synchronous=NORMAL`` (the default: survives the process being killed);
- SQLite, WAL, ``synchronous=FULL`` (also survives a power loss: an fsync per entry).

Target (issue #15): the default costs at most 1 ms per step over the baseline. Prints the median
and a 95 % confidence interval of the median (order statistics), per store.

2. Whole turns, as the interpreter runs them: the turn ``bench/interpreter_overhead.py`` times
   (default.yaml, a tool call then the answer: 5 decisions), replayed in process on a virtual clock
   so that only loopspec's own work is timed, three ways in rotating order each round: plain (what
   the interpreter's overhead target is measured on: no journal, no tracing), with the journal
   (SQLite, WAL, ``synchronous=NORMAL``, on disk; redaction and the checkpoints included), and with
   OpenTelemetry tracing (the SDK, an in-memory exporter). Each round gives one ratio per observer
   against the plain turn of the same round; the report is the median ratio with its 95 % interval,
   and the added cost per decision, side by side.

    python bench/journal_cost.py [--steps 2000] [--turns 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loopspec.journal import SqliteJournal  # noqa: E402

from _stats import median_ci  # noqa: E402


def step_entry(i: int) -> dict[str, Any]:
    """An entry the size of a real step record: state, event and attributes, counters, the request."""
    return {
        "state": "read_stream",
        "event": {"name": "tool_calls", "attrs": {"tools": ["get_capital"], "count": 1, "chars": 0, "finish_reason": "tool_calls"}},
        "transition": "read_stream --tool_calls[2]--> run_tools",
        "after": {"state": "run_tools", "counters": [i % 90, 0, 1, 0, 0, 0, 2, 0, 0, 1, 0, 0, 0, 0], "flags": ["tools_offered"]},
        "request": {"model": "openai/gpt-4o-mini", "messages": 12 + i % 5, "tools": ["get_capital", "search", "read_file"],
                    "max_tokens": 4096, "tool_choice": "auto"},
        "messages": [{"role": "tool", "tool_call_id": f"call_{i}", "content": "London " * 120}],
    }


class ListStore:
    """The baseline: the same encoding, kept in memory."""

    def __init__(self) -> None:
        self.rows: list[str] = []

    def append(self, turn_id: str, kind: str, body: dict[str, Any]) -> int:
        self.rows.append(json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False))
        return len(self.rows) - 1


STREAMS = ROOT / "fixtures" / "streams"
USER = [{"role": "user", "content": "What is the capital of the UK?"}]


async def turn_times(turns: int, tmp: Path) -> tuple[dict[str, list[float]], int]:
    """Seconds per turn of each way of running it (rounds interleaved, the order rotating), and the
    decisions per turn."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy
    from loopspec.engine.tracing import OpenTelemetryTracing
    from loopspec.replay.interactions import StreamResponse

    policy = load_policy(str(ROOT / "machines" / "default.yaml"))
    answers = [StreamResponse(sse=(STREAMS / n).read_text()) for n in ("openai_stream_tool_call_single.sse", "openai_stream_text.sse")]
    tools = ToolRegistry()
    tools.register(lambda country: "London", name="get_capital",
                   parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    journal = SqliteJournal(tmp / "turns.db")

    def plain() -> Turn:
        return Turn(policy, InProcessProvider(answers), model="openai/x", tools=tools, clock=VirtualClock())

    def journaled() -> Turn:
        return Turn(policy, InProcessProvider(answers), model="openai/x", tools=tools, clock=VirtualClock(), journal=journal)

    def traced() -> Turn:
        exporter.clear()
        return Turn(policy, InProcessProvider(answers), model="openai/x", tools=tools, clock=VirtualClock(),
                    observers=[OpenTelemetryTracing(provider)])

    ways = {"plain (no journal, no tracing)": plain, "journal on": journaled, "tracing on": traced}
    times: dict[str, list[float]] = {name: [] for name in ways}
    steps = len((await plain().run(USER)).trace)
    for make in ways.values():  # warm every path once
        await make().run(USER)
    names = list(ways)
    for i in range(turns):
        for name in names[i % 3:] + names[: i % 3]:
            turn = ways[name]()
            t = time.perf_counter()
            await turn.run(USER)
            times[name].append(time.perf_counter() - t)
    journal.close()
    return times, steps


def report_turns(times: dict[str, list[float]], steps: int) -> None:
    names = list(times)
    base = times[names[0]]
    print(f"whole turns ({len(base)} interleaved rounds, {steps} decisions per turn, in process, virtual clock):")
    med, lo, hi = median_ci(base)
    print(f"  {names[0]:32} median {med * 1e3:7.3f} ms per turn (95 % CI {lo * 1e3:.3f}-{hi * 1e3:.3f})")
    for name in names[1:]:
        ratio, rlo, rhi = median_ci([x / b for x, b in zip(times[name], base)])
        add, alo, ahi = median_ci([(x - b) / steps for x, b in zip(times[name], base)])
        print(f"  {name:32} median {statistics.median(times[name]) * 1e3:7.3f} ms per turn; ratio to plain "
              f"{ratio:.2f}x (95 % CI {rlo:.2f}-{rhi:.2f}); adds {add * 1e3:.3f} ms per decision "
              f"(95 % CI {alo * 1e3:.3f}-{ahi * 1e3:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--turns", type=int, default=300, help="interleaved rounds of whole turns (0: skip that part)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stores: dict[str, Any] = {
            "in memory (baseline)": ListStore(),
            "sqlite WAL, synchronous=NORMAL": SqliteJournal(Path(tmp) / "normal.db"),
            "sqlite WAL, synchronous=FULL": SqliteJournal(Path(tmp) / "full.db", synchronous="FULL"),
        }
        times: dict[str, list[float]] = {name: [] for name in stores}
        names = list(stores)
        for i in range(args.steps):
            order = names if i % 2 == 0 else list(reversed(names))
            for name in order:
                body = step_entry(i)
                t = time.perf_counter()
                stores[name].append("bench-turn", "step", body)
                times[name].append(time.perf_counter() - t)
        size = len(json.dumps(step_entry(0)))
        print(f"journal cost per step ({args.steps} steps, entries of {size} bytes, interleaved):")
        base = statistics.median(times[names[0]])
        for name in names:
            med, lo, hi = median_ci(times[name])
            print(f"  {name:32} median {med * 1e6:8.1f} us  (95 % CI {lo * 1e6:.1f}-{hi * 1e6:.1f} us)")
        pairs = [n - b for n, b in zip(times[names[1]], times[names[0]])]
        med, lo, hi = median_ci(pairs)
        print(f"default journal over the baseline: median {med * 1e3:.3f} ms per step (95 % CI {lo * 1e3:.3f}-{hi * 1e3:.3f} ms); "
              f"target <= 1 ms: {'met' if hi <= 1e-3 else 'NOT met'}")
        print(f"  (the baseline itself: {base * 1e6:.1f} us per step)")
        for store in stores.values():
            if isinstance(store, SqliteJournal):
                store.close()
        if args.turns:
            report_turns(*asyncio.run(turn_times(args.turns, Path(tmp))))


if __name__ == "__main__":
    main()
