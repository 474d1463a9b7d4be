"""Optional events (``interrupted_tool``) exist for the checker exactly where a state handles them:
a handled one is explored like any other event, an unhandled one is its fallback and adds nothing."""

from __future__ import annotations

from loopspec import Policy, load_policy_text
from loopspec.language.config import Config
from loopspec.language.alphabet import Event
from loopspec.verify import check_policy

from _paths import DEFAULT_POLICY

TEXT = DEFAULT_POLICY.read_text()
HANDLED = next(ln for ln in TEXT.splitlines(keepends=True) if ln.lstrip().startswith("interrupted_tool:"))
SILENT_HALT = '  halt_silent:\n    kind: halt\n    outcome: completed\n    message: "{response}"\n'


def variant(handler: str | None) -> str:
    text = TEXT.replace(HANDLED, "" if handler is None else f"      interrupted_tool: {handler}\n", 1)
    return text + SILENT_HALT


def test_an_interrupted_tool_handled_badly_is_found_by_the_checker() -> None:
    """A halt reached only through interrupted_tool, whose message can be empty (the reply before a
    tool batch may have no text): halt_message must fail, so the
    checker explores the optional event in a state that handles it."""
    report = check_policy(load_policy_text(variant("halt_silent"), "default.yaml"))
    found = report.properties["halt_message"]
    assert found.status == "fail" and found.counterexample is not None
    assert "interrupted_tool" in [s.event for s in found.counterexample.steps], found.reason


def test_an_unhandled_interrupted_tool_is_its_fallback_and_proves_like_before() -> None:
    policy = load_policy_text(variant(None), "default.yaml")
    report = check_policy(policy)
    assert report.properties["events_handled"].status == "pass"
    assert report.properties["halt_message"].status == "pass"  # halt_silent is unreachable
    step = policy.step(_at(policy, "run_tools"), Event("interrupted_tool", {"tools": ["t"]}))
    assert step.event.name == "failed" and step.after.state == "call_model"


def _at(policy: Policy, state: str) -> Config:
    cfg = policy.initial_config()
    return Config(state, cfg.counters, cfg.flags)
