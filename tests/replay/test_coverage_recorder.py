"""What the recorder keeps of a failed call and of the tools it watches: an ``error:`` interaction
whose status is a real HTTP error status, whose body is the provider's own when it has one, and
which keeps only the retry headers; and every tool outcome, a result, an error or a cancellation,
in call order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loopspec.engine.tools import ToolRegistry
from loopspec.language.alphabet import Event
from loopspec.replay.recorder import RecordingTools, _error_interaction


class Upstream(Exception):
    def __init__(self, message: str, **attrs: Any) -> None:
        super().__init__(message)
        for k, v in attrs.items():
            setattr(self, k, v)


EVENT = Event("rate_limit", {"status": 429, "message": "slow down", "code": "", "retry_after": 0.0})


@pytest.mark.parametrize("status, kept", [(503, 503), ("502", 502), ("soon", 500), (200, 500), (None, 429)])
def test_the_status_is_a_real_error_status(status: Any, kept: int) -> None:
    assert _error_interaction(Upstream("x", status_code=status), EVENT).status == kept


def test_the_providers_own_body_is_kept_and_otherwise_rebuilt() -> None:
    own = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
    assert _error_interaction(Upstream("x", body=own), EVENT).body == {"error": own}
    rebuilt = _error_interaction(Upstream("x", body={"detail": "no message key"}), EVENT)
    assert rebuilt.body == {"error": {"message": "slow down", "code": "rate_limit"}}


def test_only_retry_headers_are_kept() -> None:
    headers = {"Retry-After": "3", "X-RateLimit-Reset-Requests": "1s", "Set-Cookie": "secret", "x-request-id": "r"}
    got = _error_interaction(Upstream("x", litellm_response_headers=headers), EVENT)
    assert got.headers == {"retry-after": "3", "x-ratelimit-reset-requests": "1s"}
    assert _error_interaction(Upstream("x", litellm_response_headers=["not", "a", "mapping"]), EVENT).headers == {}


def test_every_tool_outcome_is_kept_in_call_order() -> None:
    reg = ToolRegistry()

    @reg.register
    def read_file(path: str) -> dict[str, str]:
        return {"path": path}

    @reg.register
    async def fail() -> None:
        raise RuntimeError()

    @reg.register
    async def hang() -> None:
        raise asyncio.CancelledError()

    rec = RecordingTools(reg)

    async def run() -> None:
        assert await rec.registry.tools["read_file"].fn(path="a") == {"path": "a"}
        with pytest.raises(RuntimeError):
            await rec.registry.tools["fail"].fn()
        with pytest.raises(asyncio.CancelledError):
            await rec.registry.tools["hang"].fn()

    asyncio.run(run())
    assert [(o.tool, o.result, o.error) for o in rec.outcomes] == [
        ("read_file", '{"path": "a"}', None),
        ("fail", None, "RuntimeError"),  # an error without a message is named by its type
    ], "a cancelled call has no outcome to replay"
