"""The message history of a turn, and the working copy each call sends.

The trajectory is append-only and never truncated: compaction builds a smaller *copy* for the
next request (hermes-agent's agent_loop keeps the full trajectory for debugging and reward).
Tool calls enter the trajectory only together with their answers, so it is valid at every halt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from loopspec.language.errors import LoopspecError
from loopspec.wire.assemble import AssembledReply
from .tools import ToolCall, ToolResult


class BadMessages(LoopspecError, TypeError):
    """The messages a turn was given are not a list of chat messages it could send."""


def check_messages(messages: Any) -> None:
    """Raise :class:`BadMessages`, naming the message and field, for opening messages no provider
    would take: not a list, a message that is not a dict, a role that is not a string, or
    ``tool_calls`` that is not a list of dicts. Checked before the turn's first effect, so a bad
    call costs nothing and loses nothing."""
    if not isinstance(messages, (list, tuple)):  # a str, a dict or a generator is not a message list
        raise BadMessages(f"messages must be a list of message dicts (got {type(messages).__name__})")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise BadMessages(f"messages[{i}] must be a dict with a 'role' (got {type(m).__name__})")
        role = m.get("role")
        if not isinstance(role, str):
            raise BadMessages(f"messages[{i}]['role'] must be a string such as 'user' or 'assistant' (got {role!r})")
        calls = m.get("tool_calls")
        if calls is None:
            continue
        if not isinstance(calls, (list, tuple)):
            raise BadMessages(f"messages[{i}]['tool_calls'] must be a list of tool calls (got {type(calls).__name__})")
        for j, tc in enumerate(calls):
            if not isinstance(tc, Mapping):
                raise BadMessages(f"messages[{i}]['tool_calls'][{j}] must be a dict (got {type(tc).__name__})")


def tool_calls_of(reply: AssembledReply, taken: set[str] | frozenset[str] = frozenset(),
                  taken_below: dict[str, int] | None = None) -> list[ToolCall]:
    """Complete tool calls, each with an id that no id in ``taken`` nor another call of the reply
    has: the provider's own id when it is fresh, else a deterministic one (``call_{index}``, or
    ``{id}_{n}`` with the first free ``n``). Providers may send no ids, and replayed replies repeat
    theirs every round; a live provider rejects a history whose ids repeat.

    ``taken_below`` (id -> n) is where the search for an id's first free ``n`` may start: every
    smaller ``n`` is known to be in ``taken``, a set that only grows. It is kept up to date here,
    so a history whose replies repeat one id for a hundred rounds does not search a hundred."""
    used: set[str] = set()  # this reply's ids; ``taken`` is read, never copied (it grows every round)
    calls = []
    for c in reply.tool_calls:
        base = c.id or f"call_{c.index}"
        n = 1 if taken_below is None else taken_below.get(base, 1)
        cid = _numbered(base, n)
        while cid in taken:
            n += 1
            cid = f"{base}_{n}"
        if taken_below is not None:
            taken_below[base] = n
        while cid in used or cid in taken:
            n += 1
            cid = f"{base}_{n}"
        used.add(cid)
        calls.append(ToolCall(id=cid, name=c.name or "", arguments=c.arguments or "{}"))
    return calls


def _numbered(base: str, n: int) -> str:
    return base if n == 1 else f"{base}_{n}"


@dataclass
class Trajectory:
    messages: list[dict[str, Any]] = field(default_factory=list)
    compaction_level: int = 0
    keep_last: int = 6
    strip_thinking: bool = False
    call_ids: set[str] = field(default_factory=set)
    """Every tool call id in the history: a new call gets none of them (:func:`tool_calls_of`).
    It only grows (an id leaves the history never)."""
    _taken_below: tuple[set[str], dict[str, int]] | None = field(default=None, init=False, repr=False, compare=False)
    """Where :func:`tool_calls_of` may start its search for each id, for the ``call_ids`` set it was
    learnt from (a history handed a new set starts over)."""

    def __post_init__(self) -> None:
        for m in self.messages:
            for tc in m.get("tool_calls") or []:
                if isinstance(tc, dict) and isinstance(tc.get("id"), str):
                    self.call_ids.add(tc["id"])

    _user_scan: tuple[list[dict[str, Any]], int, int | None] | None = field(default=None, init=False, repr=False, compare=False)
    """(the message list scanned, how far, the index of the last user message in it)."""

    def last_user_content(self) -> str:
        """The content of the history's last user message ("" when there is none), as a request
        sent without compaction ends its user part: found by reading only the messages added since
        the last time (the history only grows), not the whole history at every call."""
        msgs = self.messages
        scanned, last = 0, None
        if self._user_scan is not None and self._user_scan[0] is msgs and self._user_scan[1] <= len(msgs):
            _, scanned, last = self._user_scan
        for i in range(scanned, len(msgs)):
            if msgs[i].get("role") == "user":
                last = i
        self._user_scan = (msgs, len(msgs), last)
        return "" if last is None else str(msgs[last].get("content") or "")

    def calls_of(self, reply: AssembledReply) -> list[ToolCall]:
        """The reply's complete tool calls, with ids unique in this history."""
        if self._taken_below is None or self._taken_below[0] is not self.call_ids:
            self._taken_below = (self.call_ids, {})
        return tool_calls_of(reply, self.call_ids, self._taken_below[1])

    def add_user(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})

    def add_assistant_text(self, text: str) -> None:
        if text:
            self.messages.append({"role": "assistant", "content": text})

    def add_tool_round(self, text: str, calls: list[ToolCall], results: list[ToolResult]) -> None:
        """An assistant message with its tool calls and exactly one answer per call, in order."""
        assert [r.call.id for r in results] == [c.id for c in calls], "every call answered exactly once"
        self.call_ids.update(c.id for c in calls)
        self.messages.append(
            {
                "role": "assistant",
                "content": text or None,
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ],
            }
        )
        for r in results:
            self.messages.append({"role": "tool", "tool_call_id": r.call.id, "content": r.content})

    # -- the working copy -------------------------------------------------------------------

    def working_copy(self, *, copy: bool = True) -> list[dict[str, Any]]:
        """What the next call sends: compacted if asked, thinking stripped if asked.

        Each message is copied (not deep-copied: nested parts are never mutated here, and a deep
        copy per call was the largest cost loopspec added to a turn), so a provider that changes
        what it was sent cannot change the history. ``copy=False`` hands out the history's own
        message dicts (a new list), for a provider known to leave them as they are: the copies were
        a tenth of replaying a long cassette."""
        msgs = self._compacted(self.compaction_level, copy)
        if self.strip_thinking:
            msgs = [{k: v for k, v in m.items() if k not in ("thinking_blocks", "reasoning_content")} for m in msgs]
        return msgs

    def compact(self) -> bool:
        """Raise the compaction level; False when that would not make the copy any smaller."""
        before = len(self._compacted(self.compaction_level, copy=False))
        after = len(self._compacted(self.compaction_level + 1, copy=False))
        if after >= before:
            return False
        self.compaction_level += 1
        return True

    def _compacted(self, level: int, copy: bool) -> list[dict[str, Any]]:
        msgs = self.messages
        if level <= 0:
            # plain dicts (the turn made them so): copy() is the fast path
            return [m.copy() for m in msgs] if copy else list(msgs)
        head = [m for m in msgs[:2] if m.get("role") in ("system", "user")]
        keep = max(1, self.keep_last // level)
        start = max(len(head), len(msgs) - keep)
        # never start the kept tail on a tool result: its assistant call would be cut off
        while start < len(msgs) and msgs[start].get("role") == "tool":
            start += 1
        dropped = start - len(head)
        note = []
        if dropped > 0:
            note = [{"role": "user", "content": f"[{dropped} earlier messages were compacted to fit the context window]"}]
        kept = head + note + msgs[start:]
        return [m.copy() for m in kept] if copy else kept


def history_problems(messages: list[dict[str, Any]]) -> list[str]:
    """Why a history is invalid: a tool call not answered exactly once, an orphan tool result, or a
    tool call id used twice (a live provider rejects it)."""
    problems: list[str] = []
    pending: dict[str, int] = {}
    for i, m in enumerate(messages):
        if m.get("role") == "assistant":
            for tc in m.get("tool_calls") or []:
                if tc["id"] in pending:
                    problems.append(f"message {i}: tool call id {tc['id']!r} is used by an earlier call")
                pending[tc["id"]] = 0
        elif m.get("role") == "tool":
            cid = m.get("tool_call_id")
            if cid not in pending:
                problems.append(f"message {i}: tool result for unknown call {cid!r}")
            else:
                pending[cid] += 1
    for cid, n in pending.items():
        if n != 1:
            problems.append(f"tool call {cid!r} answered {n} times")
    return problems
