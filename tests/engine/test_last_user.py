"""A history finds its last user message by reading only what was added since it last looked;
whatever happens to the history, the answer must be the plain search's, and every request a turn
records must name the last user message it really sent."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from loopspec import InProcessProvider, Turn, VirtualClock, load_policy
from loopspec.engine.history import Trajectory
from loopspec.engine.tools import ToolCall, ToolResult
from loopspec.replay.synth import reply

from _paths import ROOT

operations = st.lists(st.sampled_from(["user", "empty_user", "assistant", "tools", "new_list", "relabel", "truncate", "look"]), max_size=30)


def _plain(messages: list[dict[str, Any]]) -> str:
    return str(next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), ""))


@given(operations)
def test_the_last_user_message_is_the_plain_searchs_whatever_the_history_went_through(ops: list[str]) -> None:
    """Messages added by every kind of round, the message list replaced or cut short in place, and
    lookups in between: each lookup answers what searching the whole history from the end does."""
    history = Trajectory([{"role": "system", "content": "s"}])
    for k, op in enumerate(ops):
        if op == "user":
            history.add_user(f"u{k}")
        elif op == "empty_user":
            history.messages.append({"role": "user", "content": None})
        elif op == "assistant":
            history.add_assistant_text(f"a{k}")
        elif op == "tools":
            call = ToolCall(f"c{k}", "f", "{}")
            history.add_tool_round("", [call], [ToolResult(call, "r", True)])
        elif op == "new_list":
            history.messages = [dict(m) for m in history.messages[: len(history.messages) // 2]]
        elif op == "relabel":  # a new list as long as the old, its user messages now the assistant's
            history.messages = [dict(m, role="assistant") if m.get("role") == "user" else dict(m) for m in history.messages]
        elif op == "truncate":
            del history.messages[len(history.messages) // 2:]
        assert history.last_user_content() == _plain(history.messages), (k, op)


def test_every_recorded_request_names_the_last_user_message_it_sent() -> None:
    """Across a turn whose continuation prompts add user messages and whose compacted request
    (after a context overflow) keeps none of them but the compaction note: the record of each
    request is the plain search of that request's own messages."""
    import asyncio

    from loopspec import ToolRegistry
    from loopspec.replay.interactions import ErrorResponse

    policy = load_policy(str(ROOT / "machines" / "default.yaml"))
    tools = ToolRegistry()
    tools.register(lambda i: f"r{i}", name="f", parameters={"type": "object", "properties": {"i": {"type": "integer"}}})
    overflow = ErrorResponse(400, {"error": {"message": "context_length_exceeded: too long", "code": "context_length_exceeded"}}, {})
    rounds = [reply(tool_calls=[("f", {"i": i})]) for i in range(4)]
    provider = InProcessProvider([reply("x" * 50, finish="length"), *rounds, overflow, reply("done")])
    turn = Turn(policy, provider, model="replay", tools=tools, clock=VirtualClock())
    result = asyncio.run(turn.run([{"role": "user", "content": "first"}]))
    sent = [_plain(r.messages) for r in provider.requests]
    assert [r.last_user for r in result.requests] == sent
    assert sent[0] == "first" and "compacted" in sent[-1], (result.outcome, sent)


def test_a_request_record_holds_what_the_request_carried() -> None:
    """``record_of`` searching a request itself (a compacted one): no user message, or one with
    no content, records "" ; and each other field is the request's own."""
    from loopspec import ModelRequest
    from loopspec.engine.requests import record_of

    spec = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": None}, {"role": "assistant", "content": "a"}]
    request = ModelRequest(model="m", messages=msgs, tools=spec, tool_choice="auto", max_tokens=7, reasoning_effort="low")
    record = record_of(request)
    assert (record.model, record.tools, record.tool_choice, record.last_user) == ("m", ["f"], "auto", "")
    assert (record.message_count, record.reasoning_effort, record.max_tokens) == (3, "low", 7)
    assert record_of(ModelRequest(model="m", messages=msgs[:1])).last_user == ""
    assert record_of(request, last_user="known").last_user == "known"
