"""Policies for the property tests: the default one and two variants of it with small backstops.

A generated world rarely keeps a turn going for the default's 90 model calls, so its backstops are
almost never reached. The variants change only the backstops' sizes (which one runs out first), so
the same properties are exercised where the backstops bite.
"""

from __future__ import annotations

from functools import lru_cache

from loopspec import load_policy_text
from loopspec.language.model import Policy

from _paths import DEFAULT_POLICY


def with_backstops(model_calls: int, tool_batches: int) -> str:
    """default.yaml's text with the two backstops resized (their warnings at three quarters)."""
    text = DEFAULT_POLICY.read_text()
    for old, new in (("max: 90\n    warn_at: 68", model_calls), ("max: 60\n    warn_at: 45", tool_batches)):
        assert old in text, f"default.yaml no longer declares {old!r}; update tests/_policies.py"
        text = text.replace(old, f"max: {new}\n    warn_at: {new * 3 // 4}")
    return text


@lru_cache(maxsize=None)
def property_policies() -> dict[str, Policy]:
    """name -> compiled policy: the default, one whose model calls run out first, one whose tool
    batches run out first."""
    return {
        "default": load_policy_text(DEFAULT_POLICY.read_text(), str(DEFAULT_POLICY)),
        "calls_first": load_policy_text(with_backstops(16, 30), "default-calls-first.yaml"),
        "tools_first": load_policy_text(with_backstops(24, 12), "default-tools-first.yaml"),
    }
