"""How ``check_policy`` scales with counters and states; prints a table, the log-log slopes and the
20-counter time against their targets.

    python bench/check_scaling.py [--counters 2,4,8,12,16,20,24] [--states 10,50,100,200,400]

Three generated families, checked side by side in one run:

- ``inc-edge k``: one retry edge increments k counters at once (the event cases used to be a product
  over those counters: 3^k model steps);
- ``guarded k``: k transitions on one event, each guarded by its own counter and an attribute
  (``{all: [{counter: c_i, lt: max}, {attr: status, eq: 400+i}]}``), each a retry bounded by it;
- ``one-guard k``: one transition whose single guard reads k counters (``any`` of k ``all`` pairs),
  incrementing one of them;
- ``states n``: n states, a ring of escalations with a counter-bounded retry on each.

Targets: the log-log slope of time against counters (2 to 24) is at most 3 for each counter family,
and a 20-counter policy checks in at most 5 s, in every counter family. Every generated policy must be proven (a failed proof
would time the counterexample search instead). Not a unit test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SLOPE_TARGET = 3.0
TWENTY_TARGET_S = 5.0

HEAD = """\
loopspec: 1
name: {name}
initial: ask
templates:
  more: "more"
counters:
{counters}
backstops:
  model_calls: {{max: 90, exhausted: out}}
  tool_batches: {{max: 60, exhausted: out}}
states:
"""

CALL_EVENTS = ("rate_limit", "transient", "timeout", "context_overflow", "auth", "bad_request",
               "effort_unsupported", "thinking_signature_invalid", "cancelled")
STREAM_EVENTS = ("tool_calls", "length", "empty", "thinking_only", "malformed_args", "unknown_tool",
                 "stalled", "broken", "cancelled")
TAIL = """\
  tools:
    kind: tool_exec
    on:
      ok: ask
      failed: ask
      repeated_exact_failure: fail
      same_tool_failure: fail
      no_progress: fail
      doom_loop: fail
      approval_required: fail
      timeout: fail
      cancelled: fail
  done: {kind: halt, outcome: completed, message: "{response}"}
  out: {kind: halt, outcome: backstop, message: "stopped"}
  fail: {kind: halt, outcome: provider_error, message: "failed: {message}"}
"""


def _call(over: dict[str, str]) -> str:
    lines = ["  ask:\n    kind: call\n    on:\n      opened: read\n"]
    lines += [f"      {e}: {over.get(e, 'fail')}\n" for e in CALL_EVENTS]
    return "".join(lines)


def _stream(over: dict[str, str]) -> str:
    lines = ["  read:\n    kind: stream\n    on:\n      text: done\n"]
    default = {"tool_calls": "{to: tools, bounded_by: tool_batches}", "malformed_args": "{do: [drop_tool_calls], to: fail}",
               "unknown_tool": "{do: [drop_tool_calls], to: fail}"}
    lines += [f"      {e}: {over.get(e, default.get(e, 'fail'))}\n" for e in STREAM_EVENTS]
    return "".join(lines)


def _counters(k: int, cap: int = 2) -> str:
    return "".join(f"  c{i}: {{max: {cap}}}\n" for i in range(k))


def inc_edge(k: int) -> str:
    incs = ", ".join(f"{{increment: c{i}}}" for i in range(k))
    empty = f"[{{do: [{incs}, {{append: more}}], to: ask}}, fail]"
    return HEAD.format(name=f"inc_edge_{k}", counters=_counters(k)) + _call({}) + _stream({"empty": empty}) + TAIL


def guarded(k: int) -> str:
    rows = [
        f"{{when: {{all: [{{counter: c{i}, lt: max}}, {{attr: status, eq: {400 + i}}}]}}, do: [{{increment: c{i}}}], to: ask}}"
        for i in range(k)
    ]
    rate_limit = "[" + ", ".join(rows) + ", fail]"
    return HEAD.format(name=f"guarded_{k}", counters=_counters(k)) + _call({"rate_limit": rate_limit}) + _stream({}) + TAIL


def one_guard(k: int) -> str:
    pairs = [f"{{all: [{{counter: c{i}, lt: max}}, {{counter: c{(i + 1) % k}, ne: 1}}]}}" for i in range(k)]
    rate_limit = f"[{{when: {{any: [{', '.join(pairs)}]}}, do: [{{increment: c0}}], to: ask}}, fail]"
    return HEAD.format(name=f"one_guard_{k}", counters=_counters(k)) + _call({"rate_limit": rate_limit}) + _stream({}) + TAIL


def states(n: int) -> str:
    ring = max(1, n - 6)  # ask, read, tools and three halts
    body = []
    for i in range(ring):
        nxt = f"s{i + 1}" if i + 1 < ring else "ask"
        body.append(
            f"  s{i}:\n    kind: escalate\n    apply: [compact]\n    on:\n      done: {nxt}\n"
            f"      failed: [{{when: {{counter: tries, lt: max}}, do: [{{increment: tries}}], to: s{i}}}, fail]\n"
        )
    head = HEAD.format(name=f"states_{n}", counters="  tries: {max: 3}\n")
    return head + _call({}) + _stream({"empty": "s0"}) + "".join(body) + TAIL


def time_check(text: str) -> tuple[float, bool, int]:
    from loopspec import load_policy_text
    from loopspec.verify import check_policy

    policy = load_policy_text(text, "bench.yaml")
    t0 = time.perf_counter()
    r = check_policy(policy)
    return time.perf_counter() - t0, bool(r.proven), int(r.exploration["model_steps"])


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(time) against log(size)."""
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(max(t, 1e-6)) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counters", default="2,4,8,12,16,20,24")
    ap.add_argument("--states", default="10,50,100,200,400")
    args = ap.parse_args()
    ks = [int(x) for x in args.counters.split(",") if x]
    ns = [int(x) for x in args.states.split(",") if x]

    ok = True
    families = (("inc-edge", inc_edge), ("guarded", guarded), ("one-guard", one_guard))
    series: dict[str, list[tuple[int, float]]] = {fam: [] for fam, _ in families}
    print(f"{'size':>6}" + "".join(f"  {fam + ' s':>12} {'steps':>7}" for fam, _ in families))
    for k in ks:
        row = [f"{k:>6}"]
        for fam, gen in families:
            sec, proven, steps = time_check(gen(k))
            ok &= proven
            series[fam].append((k, sec))
            row.append(f"{sec:>12.3f}{'' if proven else '!'} {steps:>7}")
        print("  ".join(row), flush=True)
    print(f"\n{'states':>6}  {'time s':>10} {'steps':>7}")
    state_points = []
    for n in ns:
        sec, proven, steps = time_check(states(n))
        ok &= proven
        state_points.append((n, sec))
        print(f"{n:>6}  {sec:>10.3f}{'' if proven else '!'} {steps:>7}", flush=True)
    if not ok:
        print("\n! a generated policy was not proven: its time includes counterexample search")

    print()
    for fam, pts in series.items():
        if len(pts) >= 2:
            s = slope(pts)
            ok &= s <= SLOPE_TARGET
            print(f"{fam}: log-log slope of time vs counters ({pts[0][0]} to {pts[-1][0]}): {s:.2f} (target <= {SLOPE_TARGET:.0f})")
        twenty = [t for k, t in pts if k == 20]
        if twenty:
            ok &= twenty[0] <= TWENTY_TARGET_S
            print(f"{fam}: 20 counters in {twenty[0]:.3f} s (target <= {TWENTY_TARGET_S:.0f} s)")
    if len(state_points) >= 2:
        print(f"states: log-log slope of time vs states ({state_points[0][0]} to {state_points[-1][0]}): {slope(state_points):.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
