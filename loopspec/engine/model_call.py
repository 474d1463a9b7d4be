"""The ``call``, ``stream`` and ``stub`` effects: open a model call, read its stream into a reply,
and make a stub of a stream that stalled.

A :class:`ModelCall` holds what one call leaves behind for the rest of the turn: the open stream,
the assembler of the last stream read, the last reply and the text streamed to the consumers. The
turn builds the request and decides when to stop reading; everything between the provider and the
event the classifier makes of the reply is here.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from loopspec.language.alphabet import Event
from loopspec.providers.base import ModelRequest, Provider, ProviderError, StreamBroken
from loopspec.wire.assemble import AssembledReply, ReplyAssembler
from loopspec.wire.classify import classify_reply

from .clock import Clock, DeadlinePassed, StallTimeout, bounded
from .consumers import Consumers
from .results import TurnUsage
from .tools import ToolRegistry


class ModelCall:
    """The model call in flight, and the reply it last produced."""

    def __init__(self, provider: Provider, clock: Clock, consumers: Consumers, usage: TurnUsage) -> None:
        self.provider = provider
        self.clock = clock
        self.consumers = consumers
        self.usage = usage
        """Where the token counts of every reply read are added up."""
        self.stream: Any = None
        """The opened response stream, until it is read to the end, breaks or is closed."""
        self.assembler: ReplyAssembler | None = None
        self.reply = AssembledReply()
        self.streamed = ""
        """The visible text of the last stream read, as the consumers received it."""
        self.streamed_kept = False
        """Whether the history holds ``streamed``: the turn kept the reply it belongs to. A stream
        cut by a cancel, the deadline or a broken connection leaves text the consumers saw and no
        reply that keeps it, which the halt then writes to the history."""
        self.deadline: float | None = None
        """The turn's deadline in clock time: no wait here outlasts it (:class:`DeadlinePassed`)."""

    async def open(self, request: ModelRequest, timeout: float) -> Event:
        """Send ``request``: ``opened``, or the event of the provider's error or of a timeout.
        Raises :class:`DeadlinePassed` when the turn's deadline comes before the response opens."""
        self.reply = AssembledReply()
        self.streamed, self.streamed_kept = "", False
        wait, by_deadline = bounded(self.clock, timeout, self.deadline)
        assert wait is not None
        try:
            self.stream = await self.clock.within(self.provider.open(request), wait)
        except ProviderError as exc:
            return exc.event
        except StallTimeout:
            if by_deadline:
                raise DeadlinePassed() from None
            return Event("timeout", {"status": 408, "message": "no response within the request timeout", "retry_after": 0.0, "code": ""})
        return Event("opened", {})

    async def consume(self, tools: ToolRegistry, stall_timeout: float, stop: Callable[[], bool]) -> Event:
        """Read the open stream to its end, streaming visible text to the consumers, and classify the
        reply against ``tools``; ``stalled`` or the stream's error event if it does not end. ``stop`` is asked before
        each chunk: when it says so the read is cancelled (``CancelledError``). A chunk that would come
        after the turn's deadline is not waited for (:class:`DeadlinePassed`)."""
        stream, asm = self.stream, ReplyAssembler()
        self.assembler = asm
        if stream is None:
            # a stream state entered with no response open (a stub's mid_text back to the stream:
            # the validator warns, LS402): nothing to read, which the policy hears as a broken stream
            self.streamed, self.reply = "", asm.result()
            return StreamBroken.make(
                "disconnect", "no response is open: a stream state was entered other than by a call's 'opened'"
            ).event
        streamed: list[str] = []
        deliver = self.consumers.on_delta is not None  # no consumer of text: nothing to hand each chunk to
        wait, by_deadline = stall_timeout, False  # without a deadline every chunk waits as long
        try:
            while True:
                if stop():
                    raise asyncio.CancelledError()
                if self.deadline is not None:
                    left, by_deadline = bounded(self.clock, stall_timeout, self.deadline)
                    assert left is not None
                    wait = left
                try:
                    delta = await self.clock.next_chunk(stream, wait)
                except StopAsyncIteration:
                    break
                except StallTimeout:
                    if not by_deadline:
                        raise
                    await self.close()
                    raise DeadlinePassed() from None
                asm.feed(delta)
                if delta is not None and delta.text:
                    streamed.append(delta.text)
                    if deliver:
                        await self._deliver(delta.text)
        except StallTimeout:
            await self.close()
            self.reply = asm.result()
            return Event("stalled", {"chars": asm.chars, "mid_tool_call": asm.in_tool_call})
        except StreamBroken as exc:
            self.stream = None
            self.reply = asm.result()
            self._count_usage(self.reply)
            return exc.with_chars(asm.chars).event
        finally:
            # what the consumers saw, however the read ended (a cancel and the deadline included)
            self.streamed = "".join(streamed)
        self.stream = None
        self.reply = asm.result()
        self._count_usage(self.reply)
        return classify_reply(self.reply, tools.schemas())

    async def _deliver(self, text: str) -> None:
        """Stream ``text`` to the consumers; a consumer that holds the turn past its deadline is a
        wait like the others (:class:`DeadlinePassed`)."""
        if self.deadline is None:
            await self.consumers.emit("on_delta", text)
            return
        left, _ = bounded(self.clock, None, self.deadline)
        assert left is not None
        try:
            await self.clock.within(self.consumers.emit("on_delta", text), left)
        except StallTimeout:
            await self.close()
            raise DeadlinePassed() from None

    def _count_usage(self, reply: AssembledReply) -> None:
        if reply.usage is not None:
            self.usage.prompt_tokens += reply.usage.prompt_tokens
            self.usage.completion_tokens += reply.usage.completion_tokens
            self.usage.reasoning_tokens += reply.usage.reasoning_tokens
        if reply.usage is None or reply.usage.cost is None:
            self.usage.cost_unknown = True
        else:
            self.usage.cost += reply.usage.cost

    async def close(self) -> None:
        """Close the open stream, if any; a stream that fails to close is dropped all the same."""
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                await stream.aclose()
            except Exception:
                pass

    def stub(self) -> Event:
        """A partial-stream stub: the text that arrived is kept; partial tool calls never run."""
        asm = self.assembler or ReplyAssembler()
        reply = asm.result()
        self.reply = AssembledReply(text=reply.text)  # read for its text only: the stub in the history, the halt's response
        cut = asm.cut_tool_names()
        if asm.in_tool_call or reply.tool_calls:
            return Event("mid_tool_call", {"chars": asm.chars, "cut_tools": cut})
        return Event("mid_text", {"chars": asm.chars})
