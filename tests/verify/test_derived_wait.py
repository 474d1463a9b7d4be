"""``wait_too_long`` is derived, not free: the interpreter sets it to ``retry_after >
backoff.max_wait`` on every call event, and the checker judges a guard on it as that test on
``retry_after``. An edge that needs the two to disagree can never fire; one that needs them to
agree must be found."""

from __future__ import annotations

import pytest

from loopspec import load_policy_text
from loopspec.verify import check_policy

from _policy_text import handles

POLICY = """\
loopspec: 1
initial: ask
backoff: {max_wait: 60, wait: [1]}
backstops:
  model_calls: {max: 1000, exhausted: out}
  tool_batches: {max: 3, exhausted: out}
states:
  ask:
    kind: call
    on: CALL_EVENTS
  done: {kind: halt, outcome: completed, message: "done"}
  out: {kind: halt, outcome: backstop, message: "stopped"}
  fail: {kind: halt, outcome: provider_error, message: "failed"}
""".replace("CALL_EVENTS", handles("call", "fail", opened="done", rate_limit="[{when: GUARD, do: [{backoff: wait}], to: ask}, fail]"))


def halts(guard: str) -> bool:
    """No loop that only the model-call backstop ends (the retry edge has no counter of its own)."""
    policy = load_policy_text(POLICY.replace("GUARD", guard))
    return check_policy(policy, strict=True).backstop_only_loops == []


@pytest.mark.parametrize(
    "guard",
    [
        "{all: [{attr: wait_too_long}, {attr: retry_after, lt: 10}]}",
        "{all: [{attr: wait_too_long, eq: false}, {attr: retry_after, gt: 100}]}",
        "{all: [{not: {attr: wait_too_long}}, {attr: retry_after, ge: 61}]}",
    ],
)
def test_a_retry_loop_that_needs_wait_too_long_to_disagree_with_retry_after_never_fires(guard: str) -> None:
    """Only the backstop would end these loops, but no provider answer can take them: the turn
    halts at the first 429 (the guard is false, fail is taken)."""
    assert halts(guard)


@pytest.mark.parametrize(
    "guard",
    [
        "{all: [{attr: wait_too_long}, {attr: retry_after, gt: 100}]}",
        "{all: [{attr: wait_too_long, eq: false}, {attr: retry_after, lt: 10}]}",
        "{attr: wait_too_long}",
        "{not: {attr: wait_too_long}}",
    ],
)
def test_a_retry_loop_whose_guard_a_provider_can_satisfy_is_found(guard: str) -> None:
    assert not halts(guard)


@pytest.mark.parametrize(
    ("guard", "dead"),
    [
        ("{attr: wait_too_long, in: [true, false]}", "ask --rate_limit[1]--> fail"),  # holds on every 429
        ("{attr: wait_too_long, in: []}", "ask --rate_limit[0]--> done"),  # holds on none
        ("{attr: wait_too_long, eq: false}", None),  # holds when retry_after <= max_wait, a real choice
    ],
)
def test_a_test_on_wait_too_long_that_ignores_its_value_is_judged_as_it_is(guard: str, dead: str | None) -> None:
    """A test on ``wait_too_long`` whose answer does not depend on the value is always (or never)
    true, not a test on ``retry_after``: the transition behind an always-true one is shadowed, and
    an always-false one is itself dead. A test that does depend on it leaves both reachable."""
    text = POLICY.replace("[{when: GUARD, do: [{backoff: wait}], to: ask}, fail]", "[{when: " + guard + ", to: done}, fail]")
    structure = check_policy(load_policy_text(text), strict=True).to_json()["structure"]
    assert [d["transition"] for d in structure["shadowed_transitions"]] == ([dead] if dead else [])
