"""What a provider is handed: copies of the history's messages, unless it says it leaves them as
they are (``leaves_messages_unchanged``, as the in-process replay provider does), in which case
the turn saves a copy of every message per call. Either way the history the turn returns is the
conversation as it happened."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loopspec import BadMessages, InProcessProvider, LoopspecError, Turn, VirtualClock, load_policy
from loopspec.engine.history import history_problems
from loopspec.providers.base import ModelRequest
from loopspec.replay.synth import reply

from _paths import DEFAULT_POLICY

POLICY = load_policy(str(DEFAULT_POLICY))
USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi twice."}]


class MeddlingProvider:
    """A provider (a test double) that rewrites every message it is sent, as a careless client
    library might, before answering from recorded replies."""

    def __init__(self, replies: list[Any]) -> None:
        self.inner = InProcessProvider(replies)

    async def open(self, request: ModelRequest) -> Any:
        for m in request.messages:
            m["content"] = "MEDDLED"
            m["extra"] = True
        return await self.inner.open(request)


def run(turn: Turn) -> Any:
    return asyncio.run(turn.run(list(USER)))


def test_a_provider_that_rewrites_its_request_cannot_rewrite_the_history() -> None:
    provider = MeddlingProvider([reply("hi"), reply("hi again")])
    result = run(Turn(POLICY, provider, model="replay", clock=VirtualClock()))
    assert [m["content"] for m in result.messages] == ["Be brief.", "Say hi twice.", "hi"]
    assert all("extra" not in m for m in result.messages)
    assert history_problems(result.messages) == []


def test_the_in_process_provider_is_handed_the_history_itself_and_the_history_stays_whole() -> None:
    """No per-message copies for the replay provider: each request's messages are the history's
    own dicts, and what it recorded reads as what was sent at the time."""
    provider = InProcessProvider([reply(tool_calls=[("lookup", {})]), reply("done")])
    from loopspec import ToolRegistry

    tools = ToolRegistry()
    tools.register(lambda: "found", name="lookup", parameters={"type": "object", "properties": {}})
    result = run(Turn(POLICY, provider, model="replay", tools=tools, clock=VirtualClock()))
    first, second = (r.messages for r in provider.requests)
    assert [m["role"] for m in first] == ["system", "user"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool"]
    assert all(a is b for a, b in zip(second, result.messages)), "the history's own dicts were sent"
    assert first[1] is second[1] and first is not second
    assert [m["content"] for m in result.messages][-1] == "done"
    assert history_problems(result.messages) == []


def test_a_compacted_working_copy_is_copied_or_shared_as_asked() -> None:
    """Compaction keeps the same promise: copies by default (changing them leaves the history as it
    was), the history's own dicts when the provider only reads them (the note is new either way)."""
    from loopspec.engine.history import Trajectory

    history = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}] + [
        {"role": "assistant" if i % 2 else "user", "content": f"m{i}"} for i in range(8)
    ]
    t = Trajectory([dict(m) for m in history], keep_last=2, compaction_level=1)
    copied = t.working_copy()
    assert len(copied) < len(history) and "compacted" in copied[2]["content"]
    for m in copied:
        m["content"] = "MEDDLED"
    assert t.messages == history
    shared = t.working_copy(copy=False)
    kept = [m for m in shared if "compacted" not in m["content"]]
    assert all(any(m is h for h in t.messages) for m in kept) and len(kept) == len(shared) - 1


USER_ASKS = {"role": "user", "content": "x"}


@pytest.mark.parametrize("messages, says", [
    ("Say hi", "messages must be a list of message dicts (got str)"),
    ({"role": "user", "content": "x"}, "messages must be a list of message dicts (got dict)"),
    (5, "messages must be a list of message dicts (got int)"),
    ([USER_ASKS, "x"], "messages[1] must be a dict with a 'role' (got str)"),
    ([{"content": "x"}], "messages[0]['role'] must be a string such as 'user' or 'assistant' (got None)"),
    ([USER_ASKS, {"role": "assistant", "tool_calls": 5}], "messages[1]['tool_calls'] must be a list of tool calls (got int)"),
    ([USER_ASKS, {"role": "assistant", "tool_calls": "call_1"}],
     "messages[1]['tool_calls'] must be a list of tool calls (got str)"),
    ([USER_ASKS, {"role": "assistant", "tool_calls": [{"id": "a"}, 7]}], "messages[1]['tool_calls'][1] must be a dict (got int)"),
])
def test_messages_no_provider_would_take_are_refused_by_name_before_anything_is_sent(messages: Any, says: str) -> None:
    """Opening messages of the wrong shape raise BadMessages (a LoopspecError and a TypeError)
    naming the message and field, before the first request: not a TypeError from deep inside."""
    provider = InProcessProvider([reply("Hi.")])
    turn = Turn(POLICY, provider, model="replay", clock=VirtualClock())
    with pytest.raises(BadMessages) as info:
        asyncio.run(turn.run(messages))
    assert str(info.value) == says
    assert isinstance(info.value, LoopspecError) and isinstance(info.value, TypeError)
    assert provider.unconsumed == 1, "a request was sent"


def test_tuples_and_a_null_tool_calls_field_are_messages_too() -> None:
    messages = ({"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "tool_calls": None},
                {"role": "user", "content": "z"})
    result = asyncio.run(Turn(POLICY, InProcessProvider([reply("Hi.")]), model="replay", clock=VirtualClock()).run(messages))
    assert result.outcome == "completed"
