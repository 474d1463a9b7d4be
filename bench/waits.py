"""Time the two waits of loopspec issue #14 in real time: concurrent turns running a blocking sync
tool, and a Retry-After far past the turn's deadline.

    python bench/waits.py [-n TURNS] [--tool-seconds S]

Sync tools run in threads, so TURNS turns each running a tool that blocks for S seconds take about
S in all (on the event loop they took TURNS x S). A 3600 s Retry-After under ``turn_deadline: 2``
(with ``max_wait: 3600``, so the backoff would honour it) ends the turn after about 2 s, cancelled,
with one request sent.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loopspec import InProcessProvider, ToolRegistry, Turn, load_policy_text  # noqa: E402
from loopspec.replay.interactions import ErrorResponse  # noqa: E402
from loopspec.replay.synth import reply  # noqa: E402

DEFAULT = (ROOT / "machines" / "default.yaml").read_text()
USER = [{"role": "user", "content": "go"}]


def concurrent_sync_tools(turns: int, seconds: float) -> float:
    def blocking() -> str:
        time.sleep(seconds)
        return "done"

    async def main() -> float:
        policy = load_policy_text(DEFAULT)
        all_turns = []
        for _ in range(turns):
            reg = ToolRegistry()
            reg.register(blocking, name="blocking", parameters={"type": "object"})
            provider = InProcessProvider([reply(tool_calls=[("blocking", {})]), reply("ok")])
            all_turns.append(Turn(policy, provider, model="replay", tools=reg))
        start = time.perf_counter()
        await asyncio.gather(*(t.run(USER) for t in all_turns))
        return time.perf_counter() - start

    return asyncio.run(main())


def retry_after_past_the_deadline() -> tuple[float, str, int]:
    text = DEFAULT.replace("  max_wait: 60 ", "  max_wait: 3600 ", 1).replace("settings:\n", "settings:\n  turn_deadline: 2\n", 1)
    limited = ErrorResponse(429, {"error": {"message": "slow down", "type": "requests"}}, {"retry-after": "3600"})
    provider = InProcessProvider([limited, reply("late")])
    start = time.perf_counter()
    result = asyncio.run(Turn(load_policy_text(text), provider, model="replay").run(USER))
    return time.perf_counter() - start, result.outcome, result.usage.model_calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--turns", type=int, default=10)
    ap.add_argument("--tool-seconds", type=float, default=0.2)
    args = ap.parse_args()
    took = concurrent_sync_tools(args.turns, args.tool_seconds)
    print(f"{args.turns} turns x {args.tool_seconds:g} s sync tool: {took:.3f} s "
          f"(serial would be {args.turns * args.tool_seconds:.3f} s)")
    took, outcome, calls = retry_after_past_the_deadline()
    print(f"Retry-After 3600 s, turn_deadline 2 s: {took:.3f} s, outcome {outcome}, {calls} request(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
