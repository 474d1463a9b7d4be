"""The JSON of a counterexample (loopspec/verify/counterexample.py), written against the survivors
of its mutation run: what ``check --json`` and ``--counterexample OUT.json`` write for a run, key by
key, for the checker's own lasso and loop demonstration and for the optional keys' edge cases."""

from __future__ import annotations

from loopspec import load_policy
from loopspec.verify import CexStep, Counterexample, check_policy

from _paths import ROOT
from test_check import CALL, HALTS, NUDGE_LOOP as NUDGE, TOOLS, policy, stream



def test_a_lasso_from_the_checker_names_where_its_cycle_starts() -> None:
    r = check_policy(policy(CALL, stream(empty="nudge"), TOOLS, NUDGE, HALTS))
    cex = r.properties["halts"].counterexample
    assert cex is not None
    assert cex.to_json() == {
        "steps": [
            {"state": "ask", "event": "opened", "attrs": {}, "to": "read", "transition": "ask --opened[0]--> read"},
            {"state": "read", "event": "empty", "attrs": {"finish_reason": ""}, "to": "nudge", "transition": "read --empty[0]--> nudge"},
            {"state": "nudge", "event": "done", "attrs": {}, "to": "again", "transition": "nudge --done[0]--> again"},
            {"state": "again", "event": "done", "attrs": {}, "to": "nudge", "transition": "again --done[0]--> nudge"},
        ],
        "end": "nudge",
        "concrete": True,
        "loop_start": 2,
        "note": "the run repeats from loop_start forever",
    }


def test_a_loop_demonstration_names_the_transition_and_its_own_bound() -> None:
    r = check_policy(load_policy(str(ROOT / "docs" / "examples" / "retry.yaml")), strict=True)
    cex = r.properties["no_backstop_only_loops"].counterexample
    assert cex is not None
    data = cex.to_json()
    assert data["fires"] == {"transition": "tools --ok[0]--> ask", "at_most": 1}
    assert [(s["state"], s["event"], s["to"], s["transition"]) for s in data["steps"][:3]] == [
        ("ask", "opened", "read", "ask --opened[0]--> read"),
        ("read", "tool_calls", "tools", "read --tool_calls[0]--> tools"),
        ("tools", "ok", "ask", "tools --ok[0]--> ask"),
    ]
    assert sorted(data) == ["concrete", "end", "fires", "note", "steps"]


def test_a_loop_from_the_first_step_keeps_loop_start_zero_and_a_bare_run_has_three_keys() -> None:
    s = CexStep("ask", "opened", {"n": 1}, "read", None, ("cost",))
    assert s.to_json() == {"state": "ask", "event": "opened", "attrs": {"n": 1}, "to": "read", "transition": None, "measured": ["cost"]}
    looped = Counterexample([s], loop_start=0, concrete=False)
    assert looped.to_json() == {"steps": [s.to_json()], "end": "read", "concrete": False, "loop_start": 0}
    assert Counterexample([]).to_json() == {"steps": [], "end": None, "concrete": True}
