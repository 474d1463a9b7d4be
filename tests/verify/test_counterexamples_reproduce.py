"""Every counterexample `loopspec check --counterexample` writes replays to the same failure.

Policies are mutated from machines/default.yaml by operators that each break one property (an
empty or '{response}'-only or '{message}'-only halt message, a tool batch after tools were
disabled, tools re-enabled on a loop edge, a mid-tool-call stub that completes, a length cut routed
to tool execution, tool calls routed through an escalation, a retry loop left to a backstop, a
missing event handler, a loop without a model call), make attributes matter (guards on an
error's message, status and retry_after, a reply's length, a stream's break cause, a guardrail's
verdict), or put the witness behind backstop redirects. For every property check fails, the cassette it writes must replay under the same policy,
in-process and over HTTP through litellm, to verdict "fail" with a failure naming that property
(or the max_fires / halts expectation it states), and take exactly the recorded decisions.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from loopspec import Policy, SpecError, load_policy_text
from loopspec.engine.interpreter import Turn
from loopspec.replay.cassette import Cassette, load_cassette
from loopspec.replay.harness import replay
from loopspec.replay.inproc import InProcessProvider
from loopspec.replay.interactions import ErrorResponse
from loopspec.language.yamlsource import load_yaml_text
from loopspec.verify.checker import check_policy
from loopspec.verify.to_cassette import counterexample_cassettes, write_counterexamples

from _paths import DEFAULT_POLICY


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


BASE: dict[str, Any] = _plain(load_yaml_text(DEFAULT_POLICY.read_text(), str(DEFAULT_POLICY)))
ENUMERATION = 20_000
"""Smaller than the CLI's: a mutant that does not halt is too large to enumerate either way."""

# --------------------------------------------------------------------------- mutation operators

Mutation = Callable[[dict[str, Any]], None]
MUTATIONS: dict[str, Mutation] = {}


def mutation(f: Mutation) -> Mutation:
    MUTATIONS[f.__name__] = f
    return f


def _on(d: dict[str, Any], state: str) -> dict[str, Any]:
    return d["states"][state]["on"]  # type: ignore[no-any-return]


def _halt(d: dict[str, Any], name: str, message: str, outcome: str = "provider_error") -> None:
    d["states"][name] = {"kind": "halt", "outcome": outcome, "message": message}


def _first(d: dict[str, Any], state: str, event: str, branch: dict[str, Any]) -> None:
    """Put ``branch`` before the transitions of ``state`` on ``event``."""
    on = _on(d, state)
    old = on.get(event, [])
    on[event] = [branch] + (old if isinstance(old, list) else [old])


def _retry(d: dict[str, Any], event: str) -> dict[str, Any]:
    """call_model's retry branch on ``event`` (the one that backs off), wherever it stands."""
    return next(b for b in _on(d, "call_model")[event] if isinstance(b, dict) and "do" in b)


@mutation
def empty_message(d: dict[str, Any]) -> None:
    d["states"]["halt_provider_error"]["message"] = ""


@mutation
def response_only_truncated(d: dict[str, Any]) -> None:
    """Reached by length cuts only: empty when the cut reply had no visible text."""
    d["states"]["halt_truncated"]["message"] = "{response}"


@mutation
def response_only_guardrail(d: dict[str, Any]) -> None:
    """Reached by a guardrail after a batch: empty when the reply that made the calls had no text."""
    d["states"]["halt_guardrail"]["message"] = "{response}"


@mutation
def message_only_completed(d: dict[str, Any]) -> None:
    """A text event carries no message: '{message}' renders empty."""
    d["states"]["halt_completed"]["message"] = "{message}"


@mutation
def no_tools_disabled_branch(d: dict[str, Any]) -> None:
    branches = _on(d, "read_stream")["tool_calls"]
    branches.remove(next(b for b in branches if isinstance(b, dict) and b.get("when") == {"flag": "tools_disabled"}))


@mutation
def enable_tools_on_retry(d: dict[str, Any]) -> None:
    _retry(d, "rate_limit")["do"].append("enable_tools")


@mutation
def stub_completes(d: dict[str, Any]) -> None:
    _on(d, "make_stub")["mid_tool_call"] = "halt_completed"


@mutation
def length_runs_tools(d: dict[str, Any]) -> None:
    _on(d, "read_stream")["length"][0] = {"when": {"attr": "has_tool_calls"}, "do": [{"increment": "continuations"}], "to": "run_tools"}


@mutation
def tools_through_escalation(d: dict[str, Any]) -> None:
    d["states"]["review_calls"] = {"kind": "escalate", "apply": [{"append": "nudge_empty"}], "on": {"done": "run_tools", "failed": "halt_empty"}}
    branch = _on(d, "read_stream")["tool_calls"][-1]
    branch["to"] = "review_calls"
    branch.pop("bounded_by", None)


@mutation
def retry_without_counter(d: dict[str, Any]) -> None:
    """The rate-limit retry no longer counts: only the model-call backstop ends it."""
    _retry(d, "rate_limit")["do"] = [{"backoff": "rate_limit", "attempt": "rate_limit_retries"}]


@mutation
def empty_retry_reset_by_tools(d: dict[str, Any]) -> None:
    """netclaw #1346: only the streak counts empty replies, and a tool batch resets it."""
    retry = next(b for b in _on(d, "read_stream")["empty"] if {"increment": "empty_total"} in b.get("do", []))
    retry["do"] = [a for a in retry["do"] if a != {"increment": "empty_total"}]


@mutation
def no_auth_handler(d: dict[str, Any]) -> None:
    del _on(d, "call_model")["auth"]


@mutation
def heal_loops_forever(d: dict[str, Any]) -> None:
    """An escalation that re-enters itself: no model call, no counter."""
    _on(d, "heal_effort")["done"] = "heal_effort"


@mutation
def quota_halt_is_empty(d: dict[str, Any]) -> None:
    _first(d, "call_model", "rate_limit", {"when": {"attr": "message", "contains": "quota"}, "to": "halt_quota"})
    _halt(d, "halt_quota", "", "rate_limited")


@mutation
def long_wait_halt_says_code(d: dict[str, Any]) -> None:
    """'{code}' is empty unless the provider sent one; the witness needs retry_after > 60."""
    _first(d, "call_model", "rate_limit", {"when": {"attr": "retry_after", "gt": 60}, "to": "halt_wait"})
    _halt(d, "halt_wait", "{code}", "rate_limited")


@mutation
def wait_too_long_halt_says_code(d: dict[str, Any]) -> None:
    """default.yaml's own wait_too_long halt, made to show only '{code}': the witness needs a 429
    whose Retry-After passes backoff.max_wait, which only the engine's judgement marks."""
    d["states"]["halt_rate_limited_long"]["message"] = "{code}"


@mutation
def overload_status_guards(d: dict[str, Any]) -> None:
    """A 503 halts with the (empty) reply; other 5xx are retried."""
    _on(d, "call_model")["transient"] = [
        {"when": {"attr": "status", "eq": 503}, "to": "halt_overloaded"},
        {"when": {"attr": "status", "lt": 503}, "do": [{"increment": "transient_retries"}], "to": "call_model"},
        "halt_provider_error",
    ]
    _halt(d, "halt_overloaded", "{response}")


@mutation
def long_text_halts_with_message(d: dict[str, Any]) -> None:
    """Only a reply longer than 100 characters reaches the halt whose '{message}' is empty."""
    _first(d, "read_stream", "text", {"when": {"attr": "chars", "gt": 100}, "to": "halt_long"})
    _halt(d, "halt_long", "{message}", "completed")


@mutation
def thinking_cut_halts(d: dict[str, Any]) -> None:
    _first(d, "read_stream", "length", {"when": {"attr": "thinking_only"}, "to": "halt_thinking"})
    _halt(d, "halt_thinking", "{response}", "truncated")


@mutation
def disconnect_halts_with_code(d: dict[str, Any]) -> None:
    _first(d, "read_stream", "broken", {"when": {"attr": "cause", "eq": "disconnect"}, "to": "halt_dropped"})
    _halt(d, "halt_dropped", "{code}")


@mutation
def corrected_guardrail_halts(d: dict[str, Any]) -> None:
    """same_tool_failure is configured 'correct': the witness needs that verdict, after 4 failures."""
    _first(d, "run_tools", "same_tool_failure", {"when": {"attr": "verdict", "eq": "correct"}, "to": "halt_corrected"})
    _halt(d, "halt_corrected", "{message}", "guardrail")


def _small_backstops(d: dict[str, Any]) -> None:
    """Backstops a run reaches in a few steps, so that counterexamples go through their redirects."""
    d["backstops"]["model_calls"].update(max=4, warn_at=3)
    d["backstops"]["tool_batches"].update(max=2, warn_at=1)


@mutation
def backstop_halt_silent(d: dict[str, Any]) -> None:
    """The model-call backstop's halt says nothing: reached only through a backstop redirect."""
    _small_backstops(d)
    d["states"]["halt_backstop"]["message"] = ""


@mutation
def tool_budget_exhausts_into_a_call(d: dict[str, Any]) -> None:
    """A spent tool budget redirects into a call state, which the model-call backstop redirects again."""
    _small_backstops(d)
    d["backstops"]["tool_batches"]["exhausted"] = "call_model"
    d["states"]["halt_backstop"]["message"] = ""


@mutation
def approval_halt_says_response(d: dict[str, Any]) -> None:
    d["states"]["halt_approval"]["message"] = "{response}"


def load(d: dict[str, Any], name: str) -> Policy:
    d["name"] = name
    return load_policy_text(yaml.safe_dump(d, sort_keys=False), f"{name}.yaml")  # an action is named by its first key


def mutate(names: tuple[str, ...]) -> Policy:
    d = copy.deepcopy(BASE)
    for n in names:
        MUTATIONS[n](d)
    return load(d, "mutant-" + "-".join(names))


# --------------------------------------------------------------------------- the check


def _expected_failure(prop: str, cassette: Cassette) -> str:
    if cassette.expect.max_fires:
        return "fired"
    return f"property {prop} fails"


def _replay(cassette: Cassette, policy: Policy, transport: str, loop: asyncio.AbstractEventLoop) -> Any:
    return loop.run_until_complete(replay(cassette, policy, transport=transport))  # type: ignore[arg-type]


def reproduce(
    names: tuple[str, ...],
    tmp: Path,
    loop: asyncio.AbstractEventLoop,
    http: Callable[[str], bool] = lambda prop: True,
    all_real: bool = True,
) -> dict[str, Any]:
    """Check the mutant, write its counterexamples, replay each one; return the failing properties.

    With ``all_real`` every failing property must have a cassette. Otherwise a property whose only
    witnesses need something no provider or tool can say (a combination of operators can make a
    finding of the over-approximating check unreachable for real) may have none, but then its
    counterexample must say so rather than come with a cassette that lies."""
    policy = mutate(names)
    result = check_policy(policy, strict=True, enumerate_limit=ENUMERATION)
    failing = {n: p for n, p in result.properties.items() if not p.passed}
    paths = write_counterexamples(policy, result, str(tmp) + "/")
    by_prop = {load_cassette(p).source["property"]: load_cassette(p) for p in paths}
    for prop, p in failing.items():
        cex = p.counterexample
        assert cex is not None, (names, prop, p.reason)
        if not all_real and prop not in by_prop:
            assert not cex.concrete and "no cassette reproduces it" in cex.note, (names, prop, cex.note)
            continue
        assert prop in by_prop, (names, prop, cex.note)
        assert cex.concrete, (names, prop, cex.note)
        cassette = by_prop[prop]
        assert cassette.trace, "the decision trace is stored with the cassette"
        for transport in ("inproc", "http") if http(prop) else ("inproc",):
            report = _replay(cassette, policy, transport, loop)
            why = (names, prop, transport, report.failures)
            assert report.verdict == "fail", why
            assert report.diverged_at is None and report.divergence is None, why
            assert any(_expected_failure(prop, cassette) in f for f in report.failures), why
            assert [(s.state, s.event, s.target) for s in report.result.trace] == [
                (s.state, s.event, s.target) for s in cassette.trace
            ], why
    return failing


SLOW_OVER_HTTP = {"no_tools_disabled_branch": {"no_backstop_only_loops"}}
"""Runs too long to replay over HTTP on every CI run (sixty tool batches); in-process only."""

EXPECTED: dict[str, set[str]] = {
    "empty_message": {"halt_message"},
    "response_only_truncated": {"halt_message"},
    "response_only_guardrail": {"halt_message"},
    "message_only_completed": {"halt_message"},
    # the tool_budget_spent branch still ends the turn after tools_spent, so no loop is left
    "no_tools_disabled_branch": {"tools_stay_disabled"},
    "enable_tools_on_retry": {"tools_stay_disabled"},
    "stub_completes": {"stub_not_silent", "halt_message"},
    "length_runs_tools": {"no_partial_tool_exec"},
    "tools_through_escalation": {"history_valid", "no_backstop_only_loops"},
    "retry_without_counter": {"no_backstop_only_loops"},
    "empty_retry_reset_by_tools": {"no_backstop_only_loops"},
    "no_auth_handler": {"events_handled"},
    "heal_loops_forever": {"halts"},
    "quota_halt_is_empty": {"halt_message"},
    "long_wait_halt_says_code": {"halt_message"},
    "wait_too_long_halt_says_code": {"halt_message"},
    "overload_status_guards": {"halt_message"},
    "long_text_halts_with_message": {"halt_message"},
    "thinking_cut_halts": {"halt_message"},
    "disconnect_halts_with_code": {"halt_message"},
    "corrected_guardrail_halts": {"halt_message"},
    "backstop_halt_silent": {"halt_message"},
    "tool_budget_exhausts_into_a_call": {"halt_message", "no_backstop_only_loops"},
    "approval_halt_says_response": {"halt_message"},
}


def test_every_operator_is_listed() -> None:
    assert set(EXPECTED) == set(MUTATIONS)


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_mutation_fails_its_property_and_its_cassettes_reproduce(
    name: str, tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    failing = reproduce((name,), tmp_path, loop, http=lambda prop: prop not in SLOW_OVER_HTTP.get(name, ()))
    assert EXPECTED[name] <= set(failing), sorted(failing)


@settings(
    max_examples=max(2, settings.default.max_examples // 12),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(names=st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=2, max_size=3, unique=True))
@example(names=["backstop_halt_silent", "no_tools_disabled_branch"])  # the loop demo passes a wrap_up redirect
def test_combined_mutations_reproduce_in_process(
    names: list[str], tmp_path_factory: pytest.TempPathFactory, loop: asyncio.AbstractEventLoop
) -> None:
    """Property: whatever operators are combined, every cassette check writes reproduces its
    property's failure (in-process here; each operator's own test replays over HTTP as well), and a
    failure no cassette can reproduce is said to be so."""
    try:
        mutate(tuple(names))
    except (SpecError, KeyError, IndexError, TypeError):
        assume(False)  # two operators that edit the same transitions
    reproduce(tuple(names), tmp_path_factory.mktemp("cex"), loop, http=lambda prop: False, all_real=False)


# --------------------------------------------------------------------------- what is not a failure


def test_message_that_only_errors_reach_is_never_empty() -> None:
    """'{message}' on a halt reached only by call errors and broken streams: the classifier always
    says why, so check finds nothing (it used to flag it, and the cassette replayed PASS)."""
    d = copy.deepcopy(BASE)
    d["states"]["halt_provider_error"]["message"] = "{message}"
    result = check_policy(load(d, "errors-say-why"), strict=True)
    assert result.properties["halt_message"].passed, result.properties["halt_message"].reason


def test_witness_the_classifier_cannot_emit_is_not_written(tmp_path: Path) -> None:
    """A rate_limit always has status 429, so a halt behind `status ne 429` is unreachable for real:
    check still reports the adversary's run, but writes no cassette for it and says why."""
    d = copy.deepcopy(BASE)
    _first(d, "call_model", "rate_limit", {"when": {"attr": "status", "ne": 429}, "to": "halt_odd"})
    _halt(d, "halt_odd", "", "rate_limited")
    policy = load(d, "odd")
    result = check_policy(policy, strict=True)
    assert result.failed == ["halt_message"]
    assert write_counterexamples(policy, result, str(tmp_path) + "/") == []
    cex = result.properties["halt_message"].counterexample
    assert cex is not None and not cex.concrete
    assert "no cassette reproduces it" in cex.note and "rate_limit" in cex.note


def test_a_turn_that_never_halts_ends_at_the_step_limit(loop: asyncio.AbstractEventLoop) -> None:
    policy = mutate(("heal_loops_forever",))
    provider = InProcessProvider([ErrorResponse(400, {"error": {"message": "Unsupported parameter: 'reasoning_effort'"}})])
    result = loop.run_until_complete(Turn(policy, provider, model="m", max_steps=50).run([{"role": "user", "content": "hi"}]))
    assert result.outcome == "policy_error" and len(result.steps) == 50
    assert result.message == "the turn took more than 50 decisions without halting; run loopspec check"


def test_counterexample_cassettes_can_be_built_inside_an_event_loop() -> None:
    """counterexample_cassettes replays each cassette to check it; it also works from async code."""
    policy = mutate(("empty_message",))
    result = check_policy(policy, strict=True)

    async def build() -> dict[str, Cassette]:
        return counterexample_cassettes(policy, result)

    assert set(asyncio.run(build())) == {"halt_message"}


def test_cli_says_why_no_cassette_was_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The text report and stderr name the reason a failing property got no cassette."""
    from loopspec.cli import main as cli_main

    d = copy.deepcopy(BASE)
    _first(d, "call_model", "rate_limit", {"when": {"attr": "status", "ne": 429}, "to": "halt_odd"})
    _halt(d, "halt_odd", "", "rate_limited")
    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    out_dir = tmp_path / "cx"
    assert cli_main(["check", "--strict", str(path), "--counterexample", str(out_dir) + "/"]) == 1
    out, err = capsys.readouterr()
    assert "no replayable run: no cassette is written" in out
    assert "no counterexample cassette for halt_message:" in err and "rate_limit" in err
    assert not out_dir.exists() or not any(out_dir.iterdir())
