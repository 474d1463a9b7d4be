"""The text report of ``loopspec check`` names what the structure check finds besides the
properties: unreachable states and shadowed transitions, each on its own line, and only those
(a fallback that only an event without the attribute reaches is not called shadowed)."""

from __future__ import annotations

from loopspec.verify import check_policy

from test_check import CALL, HALTS, TOOLS, policy, stream

# rate_limit[0] takes every status, so rate_limit[1] can never fire; rate_limit[2] still catches a
# rate_limit without a status, on which every comparison is false
SHADOWED = (
    "      rate_limit: [{when: {any: [{attr: status, ge: 0}, {attr: status, lt: 0}]}, to: fail},"
    " {when: {attr: status, gt: 5}, to: ask}, {to: fail}]\n"
)
ORPHAN = "  orphan: {kind: halt, outcome: completed, message: unreachable}\n"


def test_unreachable_states_and_shadowed_transitions_are_reported() -> None:
    call = CALL.replace("      rate_limit: fail\n", SHADOWED)
    r = check_policy(policy(call, stream(), TOOLS, HALTS, ORPHAN))
    assert r.proven, "structure findings are warnings, not failed properties"
    lines = r.format_text().splitlines()
    assert "unreachable states: orphan" in lines
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert warnings == [
        "warning: ask --rate_limit[1]--> ask: shadowed: an earlier transition always matches first (ask --rate_limit[0]--> fail)"
    ]
    shadowed = r.structure.to_json()["shadowed_transitions"]
    assert [s["transition"] for s in shadowed] == ["ask --rate_limit[1]--> ask"]
    assert shadowed[0]["shadowed_by"] == ["ask --rate_limit[0]--> fail"]
