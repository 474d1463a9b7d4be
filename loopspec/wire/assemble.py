"""Fold a stream of Deltas into one reply.

Written here rather than borrowed from ``litellm.stream_chunk_builder``: that helper interleaves
choices for n>1 and drops signature-only reasoning chunks (docs/providers.md), and the
replay path must not need litellm at all. The assembler also knows, at any moment, whether the
stream is inside a tool call, which is what the partial-stream stub needs after a stall.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loopspec.wire.deltas import Delta, Usage

__all__ = ["AssembledToolCall", "AssembledReply", "ReplyAssembler"]

_OPEN = "<think>"
_CLOSE = "</think>"


@dataclass(frozen=True)
class AssembledToolCall:
    """One complete tool call as the model wrote it (arguments unparsed)."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True)
class AssembledReply:
    """Everything one response said; input of :func:`loopspec.wire.classify.classify_reply`."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[AssembledToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    thinking_blocks: list[dict] = field(default_factory=list)


def _partial_suffix(s: str, tag: str) -> int:
    """Length of the longest suffix of ``s`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(s)), 0, -1):
        if s.endswith(tag[:n]):
            return n
    return 0


class ReplyAssembler:
    """Accumulates Deltas; :meth:`result` may be called at any time (also after a stall)."""

    __slots__ = (
        "_text",
        "_reasoning",
        "_calls",
        "_order",
        "_finish",
        "_usage",
        "_blocks",
        "_cur_thinking",
        "_cur_signature",
        "_in_think",
        "_pending",
        "_in_tool_call",
        "_chars",
    )

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._calls: dict[int, list] = {}  # index -> [id, name, [argument parts]]
        self._order: list[int] = []
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._blocks: list[dict] = []
        self._cur_thinking: list[str] = []
        self._cur_signature: str | None = None
        self._in_think = False
        self._pending = ""  # a possible half-received <think>/</think> tag
        self._in_tool_call = False
        self._chars = 0

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, delta: Delta | None) -> None:
        """Add one Delta (None is accepted and ignored, as chunk conversion may return it)."""
        if delta is None:
            return
        if delta.text:
            self._feed_text(delta.text)
            self._in_tool_call = False
        if delta.reasoning:
            self._reasoning.append(delta.reasoning)
            self._in_tool_call = False
        if delta.tool_calls:
            calls = self._calls
            for frag in delta.tool_calls:
                slot = calls.get(frag.index)
                if slot is None:
                    calls[frag.index] = [frag.id or None, frag.name or None, [frag.arguments]]
                    self._order.append(frag.index)
                else:
                    if slot[0] is None and frag.id:
                        slot[0] = frag.id
                    if slot[1] is None and frag.name:
                        slot[1] = frag.name
                    if frag.arguments:
                        slot[2].append(frag.arguments)
            self._in_tool_call = True
        if delta.thinking_blocks:
            self._feed_thinking(delta.thinking_blocks)
        if delta.finish_reason:
            self._finish = delta.finish_reason
            self._in_tool_call = False
        if delta.usage is not None:
            self._usage = delta.usage

    def _feed_text(self, s: str) -> None:
        if not self._pending and not self._in_think and "<" not in s:
            self._text.append(s)  # fast path: no tag can start here
            self._chars += len(s)
            return
        s = self._pending + s
        self._pending = ""
        while s:
            tag = _CLOSE if self._in_think else _OPEN
            i = s.find(tag)
            if i >= 0:
                self._emit(s[:i])
                self._in_think = not self._in_think
                s = s[i + len(tag):]
                continue
            keep = _partial_suffix(s, tag)
            if keep:
                self._pending = s[-keep:]
                s = s[:-keep]
            self._emit(s)
            break

    def _emit(self, s: str) -> None:
        if not s:
            return
        if self._in_think:
            self._reasoning.append(s)
        else:
            self._text.append(s)
            self._chars += len(s)

    def _feed_thinking(self, blocks: tuple[dict, ...]) -> None:
        # Same merge as Anthropic expects on replay: thinking text accumulates until a signature
        # closes the block; redacted blocks stand alone.
        for b in blocks:
            if b.get("type") == "redacted_thinking":
                self._flush_thinking()
                if b.get("data"):
                    self._blocks.append({"type": "redacted_thinking", "data": b["data"]})
                continue
            t = b.get("thinking")
            if t:
                self._cur_thinking.append(t)
            sig = b.get("signature")
            if sig:
                self._cur_signature = sig
                self._flush_thinking()

    def _flush_thinking(self) -> None:
        if self._cur_signature:
            self._blocks.append(
                {
                    "type": "thinking",
                    "thinking": "".join(self._cur_thinking),
                    "signature": self._cur_signature,
                }
            )
        self._cur_thinking = []
        self._cur_signature = None

    # -- reading -----------------------------------------------------------------------------

    @property
    def in_tool_call(self) -> bool:
        """True when the last fragment seen was tool-call arguments and no finish_reason has
        confirmed the call complete (a stall now means a cut tool call)."""
        return self._in_tool_call

    @property
    def chars(self) -> int:
        """Characters of visible text so far (reasoning and tags excluded)."""
        return self._chars

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def finish_reason(self) -> str | None:
        return self._finish

    def cut_tool_names(self) -> list[str]:
        """Names of the tool calls a partial stub must drop: every call seen, in index order,
        while no finish_reason has confirmed them (none of them may run from a partial stream)."""
        if self._finish is not None:
            return []
        return [self._calls[i][1] or "" for i in sorted(self._order)]

    def result(self) -> AssembledReply:
        """A snapshot of the reply so far. An unterminated ``<think>`` leaves everything after it
        in ``reasoning``; a half tag at the very end is flushed to the current channel."""
        text = self._text
        reasoning = self._reasoning
        if self._pending:
            text = list(text)
            reasoning = list(reasoning)
            (reasoning if self._in_think else text).append(self._pending)
        # Unsigned thinking is left out: Anthropic rejects it on replay (litellm drops it too);
        # its text is still in ``reasoning``.
        blocks = list(self._blocks)
        calls = [
            AssembledToolCall(i, self._calls[i][0], self._calls[i][1], "".join(self._calls[i][2]))
            for i in sorted(self._order)
        ]
        return AssembledReply(
            text="".join(text),
            reasoning="".join(reasoning),
            tool_calls=calls,
            finish_reason=self._finish,
            usage=self._usage,
            thinking_blocks=blocks,
        )
