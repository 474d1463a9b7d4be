"""The abstraction's caches (loopspec/verify/abstraction.py), written against the survivors of
planting its mutants: what the check asks of the analysis over and over is worked out once."""

from __future__ import annotations

from loopspec import load_policy
from loopspec.verify.abstraction import build_analysis

from _paths import DEFAULT_POLICY


def test_each_state_and_event_is_compiled_once() -> None:
    """The selection of a state's transitions for an event (compiled guards, cap checks) is kept:
    asking again returns the same one, for every state and event of the default policy, and a
    different pair gets its own."""
    an = build_analysis(load_policy(str(DEFAULT_POLICY)))
    pairs = [(name, ev) for name, st in an.policy.states.items() for ev in st.transitions]
    first = {pair: an.selection(*pair) for pair in pairs}
    assert len(pairs) > 20
    assert all(an.selection(*pair) is first[pair] for pair in pairs)
    assert len({id(sel) for sel in first.values()}) == len(pairs)
