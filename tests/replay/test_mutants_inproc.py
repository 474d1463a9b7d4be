"""Tests against the mutants of ``replay/inproc.py`` that the suite let live (a mutation analysis by
hand: each bug planted in the in-process transport, seen to survive the replay and engine tests,
and killed by a test here). Each test names the plant it kills in its docstring."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from loopspec import InProcessProvider, ModelRequest
from loopspec.providers.base import ProviderError
from loopspec.replay.inproc import RecordedHTTPError, recorded_error


def request(tools: bool = False) -> ModelRequest:
    spec = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    return ModelRequest(model="replay", messages=[{"role": "user", "content": "hi"}], tools=spec if tools else None)


def open_error(provider: InProcessProvider, tools: bool = False) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        asyncio.run(provider.open(request(tools)))
    return info.value


def test_a_recorded_error_body_becomes_json_text() -> None:
    """Plant I02: a dict body rendered with ``str()`` (Python's repr, not the JSON litellm shows)."""
    body = {"error": {"message": "nope", "type": "invalid_request_error"}}
    err = recorded_error(400, body, {})
    assert str(err) == json.dumps(body) and json.loads(str(err)) == body
    assert str(recorded_error(400, "plain text", {})) == "plain text"
