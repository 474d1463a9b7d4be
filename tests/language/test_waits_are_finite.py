"""Every wait a policy states is finite seconds: a NaN or infinite timeout, deadline or delay would
make the engine wait forever (NaN compares false with everything, so `now >= deadline` never
holds), and `check` could not bound the turn's wall time."""

from __future__ import annotations

import pytest

from loopspec import DiagnosticError, load_policy_text

from _paths import DEFAULT_POLICY

TEXT = DEFAULT_POLICY.read_text()


@pytest.mark.parametrize(
    "old,new,where",
    [
        ("  stall_timeout: 60 ", "  stall_timeout: .inf ", "settings.stall_timeout"),
        ("  stall_timeout: 60 ", "  stall_timeout: .nan ", "settings.stall_timeout"),
        ("  request_timeout: 120 ", "  request_timeout: .nan ", "settings.request_timeout"),
        ("  request_timeout: 120 ", "  request_timeout: 86401 ", "settings.request_timeout"),
        ("  # turn_deadline: 900", "  turn_deadline: .nan", "settings.turn_deadline"),
        ("  # turn_deadline: 900", "  turn_deadline: .inf", "settings.turn_deadline"),
        ("  tool_timeout: 600 ", "  tool_timeout: .nan ", "settings.tool_timeout"),
        ("  tool_batch_timeout: 900 ", "  tool_batch_timeout: .inf ", "settings.tool_batch_timeout"),
        ("  rate_limit: [30, 60]", "  rate_limit: [.nan, 60]", "backoff.rate_limit[0]"),
        ("  rate_limit: [30, 60]", "  rate_limit: [30, .inf]", "backoff.rate_limit[1]"),
    ],
)
def test_a_wait_that_is_not_finite_seconds_is_refused_where_it_is_written(old: str, new: str, where: str) -> None:
    assert old in TEXT
    with pytest.raises(DiagnosticError) as info:
        load_policy_text(TEXT.replace(old, new, 1), "p.yaml")
    [d] = info.value.diagnostics
    assert d.path == where and "seconds" in d.message, d
    lines = TEXT.replace(old, new, 1).splitlines()
    assert d.pos is not None and new.strip() in lines[d.pos.line - 1], d.format()


def test_the_longest_stated_wait_is_accepted() -> None:
    policy = load_policy_text(TEXT.replace("  # turn_deadline: 900", "  turn_deadline: 86400"), "p.yaml")
    assert policy.settings.turn_deadline == 86400
