"""Retry-After, decided once: a backoff waits the schedule's delay, lengthened by Retry-After up to
the policy's backoff.max_wait and never past it; a longer ask is the rate_limit event's
``wait_too_long``, which default.yaml halts on with the asked wait in the message."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loopspec import InProcessProvider, Turn, VirtualClock, load_policy, load_policy_text
from loopspec.language.diagnostics import SpecError
from loopspec.replay.interactions import ErrorResponse, StreamResponse
from loopspec.replay.synth import reply_chunks

from _paths import DEFAULT_POLICY, MACHINES

DEFAULT = load_policy(str(DEFAULT_POLICY))
ANSWER = StreamResponse(chunks=tuple(reply_chunks("done")))


def rate_limited(retry_after: str) -> ErrorResponse:
    body = {"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}}
    return ErrorResponse(429, body, {"retry-after": retry_after})


def play(policy: Any, interactions: list[Any]) -> tuple[Any, float]:
    clock = VirtualClock()
    turn = Turn(policy, InProcessProvider(interactions), model="replay", clock=clock)
    result = asyncio.run(turn.run([{"role": "user", "content": "go"}]))
    return result, clock.now()


def with_max_wait(seconds: float) -> Any:
    text = DEFAULT_POLICY.read_text().replace("  max_wait: 60 ", f"  max_wait: {seconds} ", 1)
    assert f"max_wait: {seconds}" in text
    return load_policy_text(text)


@pytest.mark.parametrize("asked", ["3600", "inf", "61"])
def test_a_retry_after_past_max_wait_halts_at_once_and_says_how_long_was_asked(asked: str) -> None:
    result, slept = play(DEFAULT, [rate_limited(asked), ANSWER])
    assert result.outcome == "rate_limited" and result.halt_state == "halt_rate_limited_long"
    assert slept == 0.0, "no backoff was waited"
    assert f"asks to wait {asked} seconds" in result.message and "(60 s)" in result.message
    assert result.trace[0].attrs["wait_too_long"] is True


@pytest.mark.parametrize(("asked", "waited"), [("45", 45.0), ("10", 30.0), ("60", 60.0), ("0", 30.0)])
def test_a_retry_after_within_max_wait_lengthens_the_schedule(asked: str, waited: float) -> None:
    """rate_limit's schedule starts at 30 s: the wait is max(30, Retry-After)."""
    result, slept = play(DEFAULT, [rate_limited(asked), ANSWER])
    assert result.outcome == "completed"
    assert slept == waited
    assert result.trace[0].attrs["wait_too_long"] is False


def test_max_wait_is_the_policys_to_raise() -> None:
    result, slept = play(with_max_wait(120), [rate_limited("90"), ANSWER])
    assert result.outcome == "completed" and slept == 90.0


def test_a_policy_that_ignores_wait_too_long_still_never_waits_past_max_wait() -> None:
    """A pre-fix policy retries every 429; the hour it is asked for is cut to max_wait (60 s)."""
    hermes = load_policy(str(MACHINES / "hermes_pre_30813.yaml"))
    result, slept = play(hermes, [rate_limited("3600"), ANSWER])
    assert result.outcome == "completed"
    assert slept <= hermes.settings.max_wait == 60.0


@pytest.mark.parametrize("bad", ["0", "-5", "x", "86401", "true"])
def test_an_invalid_max_wait_is_an_error_at_its_place(bad: str) -> None:
    text = DEFAULT_POLICY.read_text().replace("  max_wait: 60 ", f"  max_wait: {bad} ", 1)
    with pytest.raises(SpecError) as err:
        load_policy_text(text, "p.yaml")
    line = next(i for i, l in enumerate(text.splitlines(), 1) if l.startswith(f"  max_wait: {bad}"))
    assert any(d.pos is not None and d.pos.line == line and "max_wait" in d.message for d in err.value.diagnostics)
