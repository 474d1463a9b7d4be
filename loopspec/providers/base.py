"""Provider contract: what the interpreter's ``call`` and ``stream`` effects talk to.

A provider opens a response (errors before the first chunk raise :class:`ProviderError`) and
returns a :class:`ResponseStream` of :class:`~loopspec.wire.deltas.Delta` (errors after it
opened raise :class:`StreamBroken`). Both exceptions carry the already-classified
:class:`~loopspec.language.alphabet.Event`, so the interpreter never inspects provider exceptions.
"""

from __future__ import annotations

from loopspec.language.errors import LoopspecError

from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Protocol, runtime_checkable

from loopspec.wire.deltas import Delta
from loopspec.wire.redaction import redact_text
from loopspec.language.alphabet import Event

__all__ = [
    "ModelRequest",
    "ResponseStream",
    "Provider",
    "ProviderError",
    "StreamBroken",
]


@dataclass
class ModelRequest:
    """Everything one model call needs; the interpreter builds it from the call conditions."""

    model: str
    messages: list[dict]
    tools: list[dict] | None = None
    tool_choice: Any = None
    max_tokens: int | None = None
    reasoning_effort: str | None = None
    extra: dict = field(default_factory=dict)
    api_base: str | None = None
    api_key: str | None = None
    timeout: float | None = None


@runtime_checkable
class ResponseStream(Protocol):
    """An opened response: async-iterate it for Deltas; ``aclose()`` releases the connection
    (the interpreter calls it when its own inter-chunk stall timer fires).

    An item may be None: a chunk that carried nothing (see
    :func:`~loopspec.providers.chunks.delta_from_chunk_dict`), or a recorded pause after the last
    event; the assembler ignores it."""

    def __aiter__(self) -> AsyncIterator[Delta | None]: ...

    async def __anext__(self) -> Delta | None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Provider(Protocol):
    """Opens model responses. ``open`` returns once the response has begun (first chunk in hand).

    A request's messages are copies of the turn's history, so a provider (or the client library it
    hands them to) may change them. One that only reads them may say so with a class attribute
    ``leaves_messages_unchanged = True``: the turn then sends the history's own messages and saves
    a copy of each per call (the in-process replay provider does)."""

    async def open(self, request: ModelRequest) -> ResponseStream: ...


class ProviderError(LoopspecError):
    """The call failed before the response began; ``event`` is a ``call``-kind event."""

    def __init__(self, event: Event) -> None:
        self.event = event
        super().__init__(f"{event.name}: {event.get('message', '')}")


class StreamBroken(LoopspecError):
    """The stream failed after it opened; ``event`` is a ``stream``-kind ``broken`` event.

    Raised by chunk parsing (in-band error objects, ``event: error`` frames) with ``chars=0``
    because the parser cannot know what was assembled; callers that hold an assembler should
    use :meth:`with_chars` to report the real count.
    """

    def __init__(self, event: Event) -> None:
        self.event = event
        super().__init__(f"{event.name} ({event.get('cause', '')}): {event.get('message', '')}")

    @classmethod
    def make(cls, cause: str, message: str, chars: int = 0) -> "StreamBroken":
        """A ``broken`` event from an in-band error; its message is redacted (it quotes the provider)."""
        return cls(Event("broken", {"cause": cause, "chars": chars, "message": redact_text(message)}))

    def with_chars(self, chars: int) -> "StreamBroken":
        """A copy whose event reports ``chars`` characters of visible text received."""
        attrs = dict(self.event.attrs)
        attrs["chars"] = chars
        new = StreamBroken(replace(self.event, attrs=attrs))
        new.__cause__ = self.__cause__
        return new
