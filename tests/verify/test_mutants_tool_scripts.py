"""The guardrail scripts the realiser tries (``loopspec/verify/tool_scripts.py``) find the
shortest run that fires each loop detector, checked against a search of every short run.

The realiser plays ``guard_scripts``' candidates in order and keeps the first that fires the
detector it wants (and nothing before it). A broken candidate is then covered by a later, longer
one, so a test that only asks "does some script fire it" cannot tell. This one asks for the
length: for each detector setting, the script the realiser keeps has exactly as many batches before
the firing one as the shortest run a breadth-first search over the detectors' own state finds."""

from __future__ import annotations

import json
import re
from typing import Iterator

import pytest

from loopspec import load_policy_text
from loopspec.engine.guardrails import GuardrailState
from loopspec.verify.event_options import Result
from loopspec.verify.realiser import Realiser
from loopspec.verify.tool_scripts import tool_result

from _paths import DEFAULT_POLICY

DEFAULT_TEXT = DEFAULT_POLICY.read_text()
CODES = ("repeated_exact_failure", "same_tool_failure", "no_progress", "doom_loop")
TOOL = "probe"


def policy_with(settings: dict[str, tuple[int, str]], max_period: int):  # type: ignore[no-untyped-def]
    """default.yaml with each detector's threshold and verdict set (``allow``: it never fires)."""
    text = DEFAULT_TEXT
    for code, (threshold, verdict) in settings.items():
        extra = f", max_period: {max_period}" if code == "doom_loop" else ""
        text, n = re.subn(rf"  {code}: \{{[^}}]*\}}", f"  {code}: {{threshold: {threshold}, verdict: {verdict}{extra}}}", text)
        assert n == 1, code
    return load_policy_text(text)


def alphabet(max_period: int) -> list[Result]:
    """Results of one tool: enough distinct answers for a cycle of the longest period and one more,
    each as a success and as a failure (the two read differently to the detectors)."""
    return [Result(TOOL, ok, f"answer {i}", "{}") for i in range(max_period + 1) for ok in (True, False)]


def fires(state: GuardrailState, results: list[Result]) -> object:
    return state.observe([tool_result(r) for r in results])


def key_of(state: GuardrailState) -> tuple[object, ...]:
    return (tuple(state.signatures), tuple(sorted(state.failures.items())), tuple(sorted(state.tool_fail_streak.items())),
            tuple(sorted(state.repeats.items())))


def shortest_by_search(policy, code: str, period: int, limit: int) -> int | None:  # type: ignore[no-untyped-def]
    """The fewest one-call batches before a batch whose one call fires ``code`` (naming the tool,
    with ``period`` for doom_loop) with nothing firing earlier: breadth first over the detectors'
    states, each batch any result of the alphabet. Answers are interchangeable, so a run only ever
    adds the next unused one (a run and its renaming lead to states alike)."""
    symbols = alphabet(max(1, policy.guardrails["doom_loop"].max_period) + 1)
    frontier = [(GuardrailState(policy.guardrails), 0)]
    for n in range(limit + 1):
        nxt = []
        seen: set[tuple[object, ...]] = set()
        for state, used in frontier:
            for r in symbols[: 2 * min(used + 1, len(symbols) // 2)]:
                s = state.copy()
                ev = fires(s, [r])
                if ev is not None and ev.name == code and ev.attrs.get("tool") == TOOL and (
                        code != "doom_loop" or ev.attrs.get("period") == period):
                    return n
                if ev is not None:
                    continue  # something fired before the batch that should
                key = key_of(s)
                if key not in seen:
                    seen.add(key)
                    nxt.append((s, max(used, int(r.content.split()[-1]) + 1)))  # type: ignore[union-attr]
        frontier = nxt
    return None


def settings_cases() -> Iterator[tuple[str, int, int, str, int]]:
    """(which detectors are on, threshold, max_period, target, period)."""
    for threshold in (1, 2, 3, 4):
        for max_period in ((1, 2, 3) if threshold < 3 else (1, 2)):
            for target in CODES if threshold < 4 else CODES[:3]:  # a doom loop four times over: too long a search
                periods = range(1, max_period + 1) if target == "doom_loop" else (0,)
                for period in periods:
                    yield "alone", threshold, max_period, target, period
                    yield "all", threshold, max_period, target, period


def cases() -> list[object]:
    """Every setting; the one whose search takes seconds (a cycle of period 2 three times over,
    every detector on) is marked slow."""
    return [pytest.param(*c, marks=pytest.mark.slow) if c == ("all", 3, 2, "doom_loop", 2) else c for c in settings_cases()]


@pytest.mark.parametrize("on,threshold,max_period,target,period", cases())
def test_the_realiser_finds_the_shortest_run_that_fires_each_detector(
        on: str, threshold: int, max_period: int, target: str, period: int) -> None:
    """Shortest first: the script kept has as many batches before the firing one as the shortest
    run of all (or there is none, and the search finds none either)."""
    settings = {code: (threshold, "halt" if (on == "all" or code == target) else "allow") for code in CODES}
    policy = policy_with(settings, max_period)
    limit = threshold * max(1, max_period) + 1
    expected = shortest_by_search(policy, target, period, limit)
    got = Realiser(policy).guard_script(target, TOOL, period, [TOOL], [])
    if expected is None:
        assert got is None
        return
    assert got is not None, f"no script fires {target} (period {period}); a run of {expected} batches before it does"
    inserted, last = got
    assert len(inserted) == expected, f"the script takes {len(inserted)} batches before the firing one; {expected} do"
    state = GuardrailState(policy.guardrails)
    assert all(fires(state, [r]) is None for r in inserted)
    ev = fires(state, last)
    assert ev is not None and ev.name == target and ev.attrs["tool"] == TOOL
