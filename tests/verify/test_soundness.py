"""Soundness of ``loopspec check`` against an exhaustive concrete reference (tests/_soundness.py).

A false "proven" is the worst defect the checker can ship, so these tests hold its verdicts against
an explorer that shares no code with it: generated policies, concrete events richer than the guard
constants, every reachable configuration through ``Policy.step``. FALSE PROVEN means check passes
``halts`` but a run loops, or passes ``events_handled`` but a run ends in policy_error, or reports a
worst-case model-call / tool-batch bound below the exact worst case.

The generated tests must pass: any false PROVEN they find is a defect to fix, then to record as a
minimal policy in tests/verify/soundness_cases/. A recorded case whose header names ``wrong-default`` or
``wrong-elim`` is a known defect, run as a strict xfail; the cases recorded so far (event cases
that were samples, the backstop escape) are fixed and kept as regression cases.

Checks run in two modes: ``default`` (``check_policy`` as the CLI runs it; small policies are also
enumerated in full) and ``elim`` (``enumerate_limit=0``: counter elimination alone, the method that
decides a policy as large as machines/default.yaml).
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, assume, example, given, note, settings, target

import _soundness as S
from loopspec import load_policy, load_policy_text

CASES = Path(__file__).parent / "soundness_cases"
CASE_FILES = sorted(CASES.glob("*.yaml"))

def _false_proven(c: S.Comparison, kinds: tuple[str, ...], typed_only: bool = True) -> list[S.Finding]:
    return [f for f in c.findings if f.kind in kinds and not (typed_only and f.absent_only)]


def _explain(text: str, c: S.Comparison, bad: list[S.Finding]) -> str:
    return "\n".join([f"[{c.mode}] {f.kind}: {f.detail}" for f in bad] + ["policy:", text])


# --------------------------------------------------------------------------- generated policies

# Each test first runs the recorded minimal policies of tests/verify/soundness_cases/ that show its defect
# (@example), so it fails on today's checker deterministically; once those are fixed, the generated
# search goes on looking for the next defect.
#
# Shrinking a failing policy takes Hypothesis tens of seconds; under the ci profile (where these
# tests are an expected failure anyway) it is left out. Run with HYPOTHESIS_PROFILE=dev or nightly
# to get the minimal policy printed.
_PHASES = (
    {"phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]}
    if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci"
    else {}
)


def _case_text(name: str) -> str:
    return (CASES / f"{name}.yaml").read_text()


def _generated(text: str, kinds: tuple[str, ...], modes: tuple[str, ...] = ("default", "elim")) -> None:
    """Check one generated policy in every mode against one reference run; fail on ``kinds``."""
    note(text)
    policy = load_policy_text(text, "generated.yaml")
    ref = S.explore(policy, absent=False)
    assume(ref.skipped is None)
    bad: list[str] = []
    claims = 0
    for mode in modes:
        c = S.compare(policy, mode=mode, absent=False, ref=ref)
        found = _false_proven(c, kinds + ("checker_crash",))
        bad += [f"[{mode}] {f.kind}: {f.detail}" for f in found]
        claims += sum(1 for f in c.findings if f.kind.startswith("false_claim"))
    # steer Hypothesis towards policies whose blind spots show in the structure report (a
    # transition the checker calls dead fires): that is where a false proof hides
    target(float(claims), label="structure claims the reference refutes")
    assert not bad, "\n".join(bad + ["policy:", text])


@settings(**_PHASES)
@given(text=S.policies())
@example(text=_case_text("list_eq_constant_hides_loop"))
@example(text=_case_text("backstop_escape_call_loop"))
def test_check_never_proves_a_policy_that_loops(text: str) -> None:
    _generated(text, ("false_proven_halts",))


@settings(**_PHASES)
@given(text=S.policies())
@example(text=_case_text("float_between_constants_bound"))
@example(text=_case_text("backstop_escape_call_bound"))
def test_check_never_reports_a_bound_below_the_exact_worst_case(text: str) -> None:
    _generated(text, ("false_proven_bound",))


@settings(**_PHASES)
@given(text=S.policies())
@example(text=_case_text("str_two_needles_unhandled"))
def test_check_never_misses_an_unhandled_event(text: str) -> None:
    _generated(text, ("false_proven_events",), modes=("default",))


# --------------------------------------------------------------------------- recorded cases


def _header(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    key = None
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        m = re.match(r"# ([a-z][a-z -]*):\s?(.*)$", line)
        if m and not line.startswith("#   "):
            key = m.group(1)
            out[key] = m.group(2).strip()
        elif key is not None:
            out[key] += " " + line.lstrip("# ").strip()
    return out


def _case_params(modes: tuple[str, ...]) -> list[Any]:
    params = []
    for path in CASE_FILES:
        h = _header(path)
        for mode in modes:
            wrong = h.get(f"wrong-{mode}", "").split()
            marks = []
            if wrong:
                marks.append(pytest.mark.xfail(strict=True, reason=f"{' '.join(wrong)}: {h.get('why', '')}"))
            params.append(pytest.param(path, mode, id=f"{path.stem}-{mode}", marks=marks))
    return params


def test_every_case_is_documented() -> None:
    assert len(CASE_FILES) >= 6
    for path in CASE_FILES:
        h = _header(path)
        for key in ("soundness case", "reference", "wrong-default", "wrong-elim", "why"):
            assert key in h, f"{path.name}: header line '# {key}:' missing"


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.stem)
def test_case_reference_verdict(path: Path) -> None:
    """The reference explorer confirms what each case's header claims about the policy."""
    h = _header(path)
    ref = S.explore(load_policy(str(path)), absent=h.get("domain") == "absent")
    assert ref.skipped is None
    words = h["reference"].split()
    assert words[0] in ("loops", "halts")
    assert ref.loops == (words[0] == "loops"), S.format_lasso(ref)
    if ref.loops:
        assert S.replays_as_cycle(load_policy(str(path)), [(s, e, a) for s, e, a, _ in ref.lasso], ref.loop_start)
        return
    assert bool(ref.policy_errors) == ("policy_error" in words)
    for w in words[1:]:
        if "=" in w:
            name, value = w.split("=")
            assert ref.worst[name] == int(value), (name, ref.worst)


@pytest.mark.parametrize("path, mode", _case_params(("default", "elim")))
def test_check_on_recorded_case(path: Path, mode: str) -> None:
    """No false PROVEN on the recorded policies. Each known defect is a strict xfail: flip it once fixed."""
    h = _header(path)
    c = S.compare(load_policy(str(path)), mode=mode, absent=h.get("domain") == "absent")
    bad = _false_proven(c, ("false_proven_halts", "false_proven_bound", "false_proven_events", "checker_crash"), typed_only=False)
    assert not bad, _explain(path.name, c, bad)


# --------------------------------------------------------------------------- the harness itself


def test_generator_builds_valid_policies_without_rejection() -> None:
    from loopspec import validate_text

    for seed in range(40):
        policy, diags = validate_text(S.random_policy(seed), "g.yaml")
        assert policy is not None, [d.format() for d in diags]


def test_generator_uses_every_guard_form_and_backstop_target_kind() -> None:
    texts = "\n".join(S.random_policy(seed) for seed in range(150))
    for form in ("eq:", "ne:", "in:", "contains:", "lt:", "le:", "gt:", "ge:", "any:", "all:", "not:",
                 "counter:", "flag:", "is: false", "max", "reset:", "by:", "wrap_up:", "bounded_by:",
                 "warn_at:", "apply:"):
        assert form in texts, form
    kinds = set()
    for seed in range(150):
        p = load_policy_text(S.random_policy(seed), "g.yaml")
        kinds.add(p.states[p.backstops["tool_batches"].exhausted].kind)
    assert kinds == {"halt", "call", "stream", "continue", "escalate", "stub"}


def test_domain_reduction_changes_nothing() -> None:
    """Keeping one event per truth vector of the attribute tests gives the same exploration."""
    rnd = random.Random(7)
    for _ in range(12):
        policy = load_policy_text(S.random_policy(rnd.randrange(10**6)), "g.yaml")
        a = S.explore(policy, absent=True, limit=4000)
        b = S.explore(policy, absent=True, limit=4000, dedup=False)
        assert (a.configs, a.loops, a.worst, a.by_outcome, a.skipped is None) == (
            b.configs, b.loops, b.worst, b.by_outcome, b.skipped is None,
        )


def test_checkers_cases_realise_every_outcome_the_reference_domain_does() -> None:
    """From any configuration, every outcome (transition taken, tool-call fate, configuration
    entered) that some concrete event of the reference domain produces, the checker's own cases
    for that configuration produce too: its cases are a partition by outcome, never a sample."""
    from loopspec.language.alphabet import KINDS
    from loopspec.language.model import Config
    from loopspec.verify.abstraction import build_analysis

    def outcome(step: Any) -> tuple[Any, ...]:
        return (id(step.transition), step.after, step.fate, step.calls)

    rng = random.Random(7)
    for seed in range(40):
        policy = load_policy_text(S.random_policy(seed), "g.yaml")
        an = build_analysis(policy)
        flags = sorted(policy.flags)
        for name, state in policy.states.items():
            if state.kind == "halt":
                continue
            for _ in range(3):
                counters = tuple(rng.randint(0, c.max) for c in policy.counters)
                cfg = Config(name, counters, frozenset(f for f in flags if rng.random() < 0.5))
                for ev in KINDS[state.kind].event_names:
                    mine = {outcome(policy.step(cfg, e)) for e in S.event_domain(policy, name, ev)}
                    theirs = {outcome(st) for st in an.steps_at(cfg, ev)}
                    assert mine <= theirs, (seed, name, ev, cfg)


def test_domain_is_richer_than_the_guard_constants() -> None:
    text = (CASES / "str_between_constants_hides_loop.yaml").read_text()
    policy = load_policy_text(text, "c.yaml")
    messages = {e.attrs.get("message") for e in S.event_domain(policy, "read", "broken", dedup=False)}
    assert any(isinstance(m, str) and "a" < m < "ab" for m in messages)
    text = (CASES / "list_contains_two_items_bound.yaml").read_text()
    policy = load_policy_text(text, "c.yaml")
    tools = [e.attrs.get("tools") for e in S.event_domain(policy, "read", "tool_calls")]
    assert any(t and "a" in t and "b" in t for t in tools)


def test_reference_counts_real_calls_and_they_never_pass_the_cap() -> None:
    """The reference counts entries into call states, not the counter; since redirects re-apply the
    backstops, the two agree even when tool_batches.exhausted is a call state."""
    ref = S.explore(load_policy(str(CASES / "backstop_escape_call_bound.yaml")))
    assert ref.worst["model_calls"] == ref.worst_counter["model_calls"] == 2


def test_reference_on_a_policy_it_can_count_by_hand() -> None:
    """Two retries on rate_limit (c1 max 2), tools twice (tool_batches max 2): 1 + 2 + 2 calls."""
    text = """
loopspec: 1
initial: ask
counters: {c1: {max: 2}}
backstops:
  model_calls: {max: 9, exhausted: stop}
  tool_batches: {max: 2, exhausted: stop}
states:
  ask:
    kind: call
    on: {opened: read, rate_limit: [{do: [{increment: c1}], to: ask}, fail], transient: fail, timeout: fail,
         context_overflow: fail, auth: fail, bad_request: fail, effort_unsupported: fail,
         thinking_signature_invalid: fail, cancelled: stop}
  read:
    kind: stream
    on: {text: done, tool_calls: tools, length: fail, empty: fail, thinking_only: fail, malformed_args: fail,
         unknown_tool: fail, stalled: fail, broken: fail, cancelled: fail}
  tools:
    kind: tool_exec
    on: {ok: ask, failed: ask, repeated_exact_failure: ask, same_tool_failure: ask, no_progress: ask,
         doom_loop: ask, approval_required: stop, timeout: ask, cancelled: stop}
  done: {kind: halt, outcome: completed, message: done}
  stop: {kind: halt, outcome: backstop, message: stopped}
  fail: {kind: halt, outcome: provider_error, message: failed}
"""
    ref = S.explore(load_policy_text(text, "hand.yaml"))
    assert ref.halts and not ref.policy_errors
    assert ref.worst == {"model_calls": 5, "tool_batches": 2}
    assert ref.by_outcome["completed"] == {"model_calls": 5, "tool_batches": 2}
    # the third entry into tools is redirected to stop, after the third call made from tools
    assert ref.by_outcome["backstop"] == {"model_calls": 5, "tool_batches": 2}


def test_reference_loops_replay_as_real_cycles() -> None:
    """Every loop the reference reports is a run that, replayed step by step, comes back."""
    loops = 0
    for seed in range(40):
        policy = load_policy_text(S.random_policy(seed), "g.yaml")
        ref = S.explore(policy, absent=True)
        if ref.loops:
            loops += 1
            assert S.replays_as_cycle(policy, [(s, e, a) for s, e, a, _ in ref.lasso], ref.loop_start), seed
    assert loops >= 5


def test_reference_skips_a_space_too_large_to_explore() -> None:
    from _paths import DEFAULT_POLICY

    ref = S.explore(load_policy(str(DEFAULT_POLICY)), limit=2000)
    assert ref.skipped is not None and "2000" in ref.skipped
