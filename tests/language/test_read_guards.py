"""What the policy reader makes of a ``when:``: the guard forms as written, and ``max`` as the
counter's own cap. A hand-planted bug swapping ``all`` and ``any``, and one reading ``max`` as one
less, got past every test of the language, the interpreter, replay and the CLI."""

from __future__ import annotations

import pytest

from loopspec import load_policy_text
from loopspec.language.model import AllOf, AnyOf, Config, CounterCmp, Event, Not

from _policy_text import handles

POLICY = (
    "loopspec: 1\ninitial: ask\ncounters:\n  tries: {max: 3}\n"
    "backstops:\n  model_calls: {max: 5, exhausted: out}\n  tool_batches: {max: 2, exhausted: out}\nstates:\n"
    "  ask:\n    kind: call\n    on: "
    + handles("call", "out", opened="read", rate_limit="[{when: WHEN, do: [{increment: tries}], to: ask}, out]") + "\n"
    "  read:\n    kind: stream\n    on: " + handles("stream", "out", text="done") + "\n"
    '  done: {kind: halt, outcome: completed, message: "{response}"}\n'
    '  out: {kind: halt, outcome: backstop, message: "stopped"}\n'
)


def guard(when: str):  # type: ignore[no-untyped-def]
    p = load_policy_text(POLICY.replace("WHEN", when), "guards.yaml")
    return p, p.states["ask"].transitions["rate_limit"][0].guard


def holds(when: str, tries: int, retry_after: float) -> bool:
    p, g = guard(when)
    counters = list(p.initial_config().counters)
    counters[p.counter_index("tries")] = tries
    return g.evaluate(p, Config("ask", tuple(counters), frozenset()), Event("rate_limit", {"retry_after": retry_after}))


@pytest.mark.parametrize("form, kind", [("all", AllOf), ("any", AnyOf)])
def test_all_and_any_read_as_written(form: str, kind: type) -> None:
    when = f"{{{form}: [{{counter: tries, lt: 2}}, {{attr: retry_after, le: 10}}]}}"
    _p, g = guard(when)
    assert type(g) is kind and len(g.parts) == 2
    # both hold, one holds, neither holds
    assert [holds(when, t, r) for t, r in ((0, 5), (0, 50), (2, 5), (2, 50))] == (
        [True, False, False, False] if form == "all" else [True, True, True, False]
    )


@pytest.mark.parametrize("op, below, at", [("lt", True, False), ("ge", False, True), ("eq", False, True)])
def test_max_is_the_counters_own_cap(op: str, below: bool, at: bool) -> None:
    when = f"{{counter: tries, {op}: max}}"
    _p, g = guard(when)
    assert isinstance(g, CounterCmp) and (g.counter, g.op, g.value) == ("tries", op, 3)
    assert (holds(when, 2, 0), holds(when, 3, 0)) == (below, at)


def test_not_reads_its_one_guard() -> None:
    _p, g = guard("{not: {counter: tries, ge: max}}")
    assert isinstance(g, Not) and isinstance(g.part, CounterCmp) and g.part.value == 3
