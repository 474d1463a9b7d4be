"""Tool results as the interpreter builds them, and the scripted tool batches that make a tool
guardrail (repeated failure, failure streak, no progress, doom loop) fire."""

from __future__ import annotations

import json
from typing import Iterator, Sequence

from loopspec.engine.tools import ToolCall, ToolResult

from .event_options import Result


def last_index(calls: Sequence[str], tool: str) -> int:
    """The position of the last call of ``tool`` in ``calls``."""
    return max(i for i, t in enumerate(calls) if t == tool)


def tool_result(r: Result) -> ToolResult:
    """A result as the interpreter builds it from a recorded one (errors are raised as RuntimeError)."""
    content = r.content or ""
    return ToolResult(ToolCall("call", r.tool, r.args), content if r.ok else f"Error: RuntimeError: {content}", r.ok)


def guard_scripts(tool: str, threshold: int, max_period: int) -> list[tuple[list[Result], Result]]:
    """Candidate (inserted calls of ``tool``, its call in the final batch), shortest first: the
    realiser keeps the first that fires its detector with nothing firing before, so the order is
    what makes a witness the shortest. Ties keep the order of :func:`_candidates`."""
    return sorted(_candidates(tool, threshold, max_period), key=lambda c: len(c[0]))


def _in_runs(item: Result, count: int, run: int) -> list[Result]:
    """``count`` copies of ``item`` in runs of at most ``run``, split by distinct successes: a
    break ends a cycle of period 1 and a failure streak. The short run comes first, so the call
    that fires closes a full one."""
    out: list[Result] = []
    first = count % run or run
    sizes = [first] + [run] * ((count - first) // run)
    for i, size in enumerate(sizes):
        if i:
            out.append(Result(item.tool, True, f"scripted result {i - 1}", json.dumps({"other": i - 1})))
        out += [item] * size
    return out


def _candidates(tool: str, threshold: int, max_period: int) -> Iterator[tuple[list[Result], Result]]:
    same_fail = Result(tool, False, "the same failure")
    same_ok = Result(tool, True, "the same result")
    for k in range(threshold + 1):
        for run in range(k + 1, 0, -1):  # unbroken first, then broken as often as a cycle or a streak needs
            yield _in_runs(same_fail, k + 1, run)[:-1], same_fail  # repeated_exact_failure
            yield _in_runs(same_ok, k + 1, run)[:-1], same_ok  # no_progress (unbroken: a doom loop of period 1)
        streak = [Result(tool, False, f"scripted failure {i}", json.dumps({"attempt": i})) for i in range(k)]
        yield streak, Result(tool, False, "the last failure")  # same_tool_failure
    for p in range(2, max_period + 1):
        cycle = [Result(tool, True, f"cycle result {j}", json.dumps({"step": j})) for j in range(p - 1)] + [same_ok]
        for r in range(1, threshold + 2):
            seq = cycle * r
            yield seq[:-1], seq[-1]  # doom_loop of period p
