"""What writing a turn's journal costs per step, measured side by side in one run.

Each round appends one step-sized entry (the shape a turn writes before each effect: the step, the
request summary, the counters; about 1.5 KB of JSON) to three stores, interleaved so that the
machine's load falls on all of them alike:

- an in-memory list (the baseline: building and encoding the entry, no storage);
- SQLite, WAL, ``synchronous=NORMAL`` (the default: survives the process being killed);
- SQLite, WAL, ``synchronous=FULL`` (also survives a power loss: an fsync per entry).

Target (issue #15): the default costs at most 1 ms per step over the baseline. Prints the median
and a 95 % confidence interval of the median (order statistics), per store.

    python bench/journal_cost.py [--steps 2000]
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
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


if __name__ == "__main__":
    main()
