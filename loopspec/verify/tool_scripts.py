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


def guard_scripts(tool: str, threshold: int, max_period: int) -> Iterator[tuple[list[Result], Result]]:
    """Candidate (inserted calls of ``tool``, its call in the final batch), shortest first."""
    same_fail = Result(tool, False, "the same failure")
    same_ok = Result(tool, True, "the same result")
    for k in range(threshold + 1):
        yield [same_fail] * k, same_fail  # repeated_exact_failure
        streak = [Result(tool, False, f"scripted failure {i}", json.dumps({"attempt": i})) for i in range(k)]
        yield streak, Result(tool, False, "the last failure")  # same_tool_failure
        yield [same_ok] * k, same_ok  # no_progress, doom_loop of period 1
        mixed: list[Result] = []
        for i in range(k):
            mixed += [same_ok, Result(tool, True, f"scripted result {i}", json.dumps({"other": i}))]
        yield mixed, same_ok  # no_progress without a cycle
        mixed = []
        for i in range(k):
            mixed += [same_fail, Result(tool, True, f"scripted result {i}", json.dumps({"other": i}))]
        yield mixed, same_fail  # repeated_exact_failure without a cycle or a failure streak
    for p in range(2, max_period + 1):
        cycle = [Result(tool, True, f"cycle result {j}", json.dumps({"step": j})) for j in range(p - 1)] + [same_ok]
        for r in range(1, threshold + 2):
            seq = cycle * r
            yield seq[:-1], seq[-1]  # doom_loop of period p
