"""The ``approvals:`` section: rules on a call's arguments, first match wins, every mistake a
``file:line:col`` diagnostic; and ml-intern's approval policy written as such rules decides what
ml-intern's code decides."""

from __future__ import annotations

import pytest

from loopspec import SpecError, load_policy, load_policy_text
from loopspec.language.approvals import ArgTest

from _paths import ROOT

EXAMPLE = ROOT / "docs" / "examples" / "ml_intern_approvals.yaml"
BASE = EXAMPLE.read_text().split("approvals:\n", 1)[0]
STATES = "states:\n" + EXAMPLE.read_text().split("\nstates:\n", 1)[1]


def with_approvals(section: str) -> str:
    return BASE + section + STATES


@pytest.mark.parametrize("tool,args,level", [
    ("hf_jobs", {"operation": "scheduled run", "hardware_flavor": "a10g-small"}, "person"),
    ("hf_jobs", {"operation": "scheduled uv"}, "person"),
    ("hf_jobs", {"operation": "run", "hardware_flavor": "cpu-basic"}, "ask"),
    ("hf_jobs", {"operation": "uv", "hardware_flavor": "a100-large"}, "ask"),
    ("hf_jobs", {"operation": "ps"}, "none"),
    ("hf_jobs", {"operation": "logs"}, "none"),
    ("sandbox_create", {}, "none"),
    ("sandbox_create", {"hardware": None}, "none"),
    ("sandbox_create", {"hardware": "cpu-basic"}, "none"),
    ("sandbox_create", {"hardware": "t4-small"}, "ask"),
    ("hf_private_repos", {"operation": "upload_file"}, "ask"),
    ("hf_private_repos", {"operation": "create_repo"}, "ask"),
    ("hf_private_repos", {"operation": "list"}, "none"),
    ("hf_repo_files", {"operation": "delete"}, "ask"),
    ("hf_repo_files", {"operation": "read"}, "none"),
    ("hf_repo_git", {"operation": "merge_pr"}, "ask"),
    ("hf_repo_git", {"operation": "create_pr"}, "none"),
    ("web_search", {"query": "x"}, "none"),
])
def test_ml_interns_approval_policy_as_rules_decides_as_its_code_does(tool: str, args: dict, level: str) -> None:
    """The table is ml-intern's _base_needs_approval and _approval_decision (agent/core/agent_loop.py)
    read with its defaults confirm_cpu_jobs=True and auto_file_upload=False."""
    rules = load_policy(str(EXAMPLE)).approvals
    assert rules.level(tool, args) == level


def test_no_rule_leaves_a_registered_needs_approval_tool_asking() -> None:
    rules = load_policy(str(EXAMPLE)).approvals
    assert rules.level("web_search", {}, registered=True) == "ask"
    assert rules.level("hf_jobs", {"operation": "ps"}, registered=True) == "ask", "no rule matched"
    explicit = load_policy_text(with_approvals(
        "approvals:\n  rules:\n    - tool: hf_jobs\n      when: {arg: operation, eq: ps}\n      approval: none\n"), "p.yaml").approvals
    assert explicit.level("hf_jobs", {"operation": "ps"}, registered=True) == "none", "a rule that matches decides"


@pytest.mark.parametrize("test,args,holds", [
    (ArgTest("n", "gt", 3), {"n": 4}, True),
    (ArgTest("n", "gt", 3), {"n": "4"}, False),
    (ArgTest("n", "gt", 3), {"n": True}, False),
    (ArgTest("n", "eq", 1), {"n": True}, False),
    (ArgTest("n", "ne", 1), {}, False),
    (ArgTest("n", "ne", 1, default=2), {}, True),
    (ArgTest("n", "in", (1, 2)), {"n": 2}, True),
    (ArgTest("n", "truthy"), {"n": ""}, False),
    (ArgTest("s", "contains", "rm"), {"s": "rm -rf"}, True),
    (ArgTest("s", "contains", "rm"), {"s": 5}, False),
    (ArgTest("s", "startswith", "scheduled "), {"s": "scheduled"}, False),
    (ArgTest("n", "le", 1.5), {"n": float("nan")}, False),
])
def test_an_argument_test_holds_only_on_values_it_was_written_for(test: ArgTest, args: dict, holds: bool) -> None:
    assert test.holds(args) is holds


@pytest.mark.parametrize("section,where,message", [
    ("approvals:\n  rules:\n    - tool: x\n      approval: maybe\n", "approvals.rules[0].approval", "approval must be one of none, ask, person"),
    ("approvals:\n  rules:\n    - approval: ask\n", "approvals.rules[0].tool", "an approval rule names its tool"),
    ("approvals:\n  rules:\n    - tool: x\n      approval: ask\n      when: {arg: n, lt: many}\n", "approvals.rules[0].when.lt", "compares with a number"),
    ("approvals:\n  rules:\n    - tool: x\n      approval: ask\n      when: {arg: n, eq: 1, ne: 2}\n", "approvals.rules[0].when", "at most one comparison"),
    ("approvals:\n  rules:\n    - tool: x\n      approval: ask\n      when: {args: n}\n", "approvals.rules[0].when", "exactly one of: all, any, not, arg"),
    ("approvals:\n  spending_cap: -1\n", "approvals.spending_cap", "spending_cap must be a finite number of at least 0"),
    ("approvals:\n  spending_cap: .inf\n", "approvals.spending_cap", "spending_cap must be a finite number"),
    ("approvals:\n  auto_approve: yes please\n", "approvals.auto_approve", "auto_approve must be true or false"),
    ("approvals:\n  rule: []\n", "approvals.rule", "unknown key 'rule'"),
])
def test_every_mistake_in_approvals_is_a_diagnostic_at_its_place(section: str, where: str, message: str) -> None:
    text = with_approvals(section)
    with pytest.raises(SpecError) as info:
        load_policy_text(text, "p.yaml")
    found = [d for d in info.value.diagnostics if d.path == where]
    assert found and message in found[0].message, [str(d) for d in info.value.diagnostics]
    line = text.splitlines()[found[0].pos.line - 1]
    assert where.rsplit(".", 1)[-1].split("[")[0] in line or "- " in line or "when" in line, line
