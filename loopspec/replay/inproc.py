"""The in-process replay transport: recorded responses fed straight into the delta layer.

No sockets and no litellm: each recorded SSE event goes through the same chunk parser the live path
uses for raw streams, in virtual time. A recorded stall is reported as a pause
(:class:`~loopspec.engine.clock.PausingStream`), so the virtual clock turns it into a stall at no
cost; a recorded disconnect breaks the stream; a recorded HTTP error is classified as litellm would
raise it. When the policy asks for more calls than were recorded, the call fails with a
``loopspec_diverged`` error and :attr:`diverged_at` says where, exactly as the HTTP server does.
"""

from __future__ import annotations

from loopspec.language.errors import LoopspecError

import functools
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, NamedTuple, Sequence

from loopspec.wire.classify import classify_exception
from loopspec.wire.deltas import Delta
from loopspec.providers.base import ModelRequest, ProviderError, StreamBroken
from loopspec.providers.chunks import delta_from_chunk_dict, iter_sse_data

from .interactions import (
    CompletionResponse,
    Disconnect,
    ErrorResponse,
    Interaction,
    Stall,
    StreamResponse,
    choose,
    completion_chunks,
    stream_plan,
)

DIVERGED = "loopspec_diverged"


class RecordedHTTPError(LoopspecError):
    """A recorded provider error, shaped like the litellm exception it becomes over HTTP."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str]):
        self.status_code = status
        self.headers = dict(headers)
        text = body if isinstance(body, str) else json.dumps(body)
        super().__init__(text)


class Timeout(RecordedHTTPError):
    """A recorded 504: litellm raises a gateway timeout as ``litellm.Timeout``, and the classifier
    reads the class name, so in-process it is a ``timeout`` event too, as over HTTP."""


def recorded_error(status: int, body: Any, headers: Mapping[str, str]) -> RecordedHTTPError:
    """The recorded error as the litellm exception class it becomes over HTTP."""
    return (Timeout if status == 504 else RecordedHTTPError)(status, body, headers)


class _Item(NamedTuple):
    """One step of a replayed stream: the pause before it, then its delta or the break that ends
    the stream. A named tuple, not a dataclass: a corpus replay builds one per recorded chunk."""

    pause: float
    delta: Delta | None = None
    broken: StreamBroken | None = None


class ReplayStream:
    """An opened recorded response; implements the pause protocol for the virtual clock."""

    def __init__(self, items: Sequence[_Item]) -> None:
        self._items = items
        self._pos = 0

    def next_pause(self) -> float:
        return self._items[self._pos].pause if self._pos < len(self._items) else 0.0

    def __aiter__(self) -> "ReplayStream":
        return self

    async def __anext__(self) -> Delta | None:
        if self._pos >= len(self._items):
            raise StopAsyncIteration
        item = self._items[self._pos]
        self._pos += 1
        if item.broken is not None:
            self._pos = len(self._items)
            raise _fresh(item.broken)
        return item.delta

    async def aclose(self) -> None:
        self._pos = len(self._items)


def _fresh(broken: StreamBroken) -> StreamBroken:
    """A new exception for each raise: the items are shared between replays, and a raised
    instance collects the traceback and context of every place it is raised."""
    new = type(broken)(broken.event)
    new.__cause__ = broken.__cause__
    return new


def stream_items(resp: StreamResponse) -> Sequence[_Item]:
    """A recorded stream response as the items :class:`ReplayStream` plays: each delta with the pause
    before it, and the ``StreamBroken`` that ends a broken stream. The checker reads streams through
    it too, to see what the classifier will. Never modify what it returns: raw SSE responses are
    parsed once per process and shared (see :func:`_sse_items`)."""
    if resp.chunks is not None:
        return _chunk_items(resp)
    return _sse_items(resp)


_CHUNK_ITEMS: OrderedDict[int, tuple[StreamResponse, tuple[_Item, ...]]] = OrderedDict()
_CHUNK_ITEMS_KEPT = 256


def _chunk_items(resp: StreamResponse) -> tuple[_Item, ...]:
    """The items of a chunk-dict response, built once per response object and shared by its
    replays: ``diff`` replays every cassette twice, and ``reply:`` interactions (most of a
    corpus) become chunk dicts. Chunk dicts make the response unhashable, so the cache is keyed
    by the object's identity and holds the object itself (an id is never reused while cached);
    the 256 responses used last are kept."""
    key = id(resp)
    hit = _CHUNK_ITEMS.get(key)
    if hit is not None:
        _CHUNK_ITEMS.move_to_end(key)
        return hit[1]
    items = tuple(_items_for_chunks(resp))
    _CHUNK_ITEMS[key] = (resp, items)
    if len(_CHUNK_ITEMS) > _CHUNK_ITEMS_KEPT:
        _CHUNK_ITEMS.popitem(last=False)
    return items


@functools.lru_cache(maxsize=256)
def _sse_items(resp: StreamResponse) -> tuple[_Item, ...]:
    """Raw SSE parsed once per process: ``diff`` replays every cassette twice, and the cassettes of
    a corpus often share their recorded streams (``sse_file``). The key is the whole response
    (text, faults and pauses; it is frozen), so equal responses share one parse; at most 256 are
    kept, a few MiB for the largest streams a cassette may hold."""
    items: list[_Item] = []
    pause = 0.0
    for step in stream_plan(resp):
        if isinstance(step, Stall):
            pause += step.seconds
            continue
        if isinstance(step, Disconnect):
            items.append(_Item(pause, broken=StreamBroken.make("disconnect", "connection dropped mid-stream")))
            return tuple(items)
        try:
            for obj in iter_sse_data(step):  # in-band error objects raise StreamBroken
                items.append(_Item(pause, delta=delta_from_chunk_dict(obj)))
                pause = 0.0
        except StreamBroken as exc:
            items.append(_Item(pause, broken=exc))
            return tuple(items)
    if pause:
        items.append(_Item(pause, delta=None))  # a stall after the last event still stalls
    return tuple(items)


def _items_for_chunks(resp: StreamResponse) -> list[_Item]:
    """Chunk dicts go straight to the delta layer: each chunk is one data event, so stall and
    disconnect positions are the ones :func:`stream_plan` gives the HTTP server, without a
    serialise-and-parse round trip per chunk."""
    chunks = resp.chunks or ()
    items: list[_Item] = []
    cut, pause_at = resp.disconnect_after, resp.pause_at
    for k, chunk in enumerate(chunks):
        if cut is not None and k >= cut:
            break
        pause = pause_at(k)
        try:
            items.append(_Item(pause, delta_from_chunk_dict(chunk)))
        except StreamBroken as exc:
            items.append(_Item(pause, broken=exc))
            return items
    n = len(chunks)
    if resp.disconnect_after is not None and resp.disconnect_after <= n:
        pause = resp.pause_at(resp.disconnect_after)
        items.append(_Item(pause, broken=StreamBroken.make("disconnect", "connection dropped mid-stream")))
    elif resp.pause_at(n):
        items.append(_Item(resp.pause_at(n), delta=None))
    return items


@dataclass
class InProcessProvider:
    """Serves recorded interactions, in order, to the interpreter's ``call``/``stream`` effects."""

    replayed: ClassVar[bool] = True
    """Observers mark this turn's spans as replayed (``loopspec.replayed``)."""
    leaves_messages_unchanged: ClassVar[bool] = True
    """It only reads a request's messages (and keeps the request): the turn may hand it its own
    history's messages instead of a copy of each, per call (see ``Turn``)."""
    interactions: Sequence[Interaction]
    requests: list[ModelRequest] = field(default_factory=list)
    diverged_at: int | None = None

    @property
    def unconsumed(self) -> int:
        return max(0, len(self.interactions) - len(self.requests))

    async def open(self, request: ModelRequest) -> ReplayStream:
        index = len(self.requests)
        self.requests.append(request)
        if index >= len(self.interactions):
            if self.diverged_at is None:
                self.diverged_at = index
            raise ProviderError(
                classify_exception(
                    RecordedHTTPError(
                        409,
                        {
                            "error": {
                                "type": DIVERGED,
                                "code": DIVERGED,
                                "message": f"cassette has {len(self.interactions)} recorded model responses; "
                                f"the policy asked for call {index + 1}",
                            }
                        },
                        {},
                    ),
                    phase="call",
                )
            )
        recorded = choose(self.interactions[index], bool(request.tools))
        if isinstance(recorded, ErrorResponse):
            raise ProviderError(
                classify_exception(recorded_error(recorded.status, recorded.body, recorded.headers), phase="call")
            )
        if isinstance(recorded, CompletionResponse):
            recorded = StreamResponse(chunks=completion_chunks(recorded.body))
        return ReplayStream(stream_items(recorded))
