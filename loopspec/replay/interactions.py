"""What the outside world said in answer to one model request, as plain frozen data.

A cassette is a sequence of these. Both replay transports (the loopback HTTP server and the
in-process one) render them through the same helpers here (``sse_events``, ``stream_plan``,
``fold_stream``), so a stall or a dropped connection lands on the same event boundary whichever
transport plays it.
"""

from __future__ import annotations

import functools

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

__all__ = [
    "StreamResponse",
    "Pause",
    "ErrorResponse",
    "CompletionResponse",
    "WhenNoTools",
    "Interaction",
    "Served",
    "choose",
    "Stall",
    "Disconnect",
    "PlanStep",
    "sse_events",
    "split_sse",
    "is_data_event",
    "stream_plan",
    "stream_chunks",
    "fold_stream",
    "completion_chunks",
]

DONE_EVENT = b"data: [DONE]\n\n"
PING_EVENT = b": ping\n\n"
"""The SSE comment a keep-alive sends: bytes on the wire, no content for the reader."""

# One end-of-line as the SSE spec defines it. A lone CR must not eat the CR of a CRLF, or
# "a\r\nb" would look like a blank line.
_EOL = rb"(?:\r\n|\n|\r(?!\n))"
_EVENT_END = re.compile(_EOL + _EOL)
_DATA_LINE = re.compile(rb"(?:^|\r\n|\n|\r)data:")


@dataclass(frozen=True)
class Pause:
    """A wait of ``seconds`` after the ``after``-th data event (0: before the first), with a
    keep-alive comment every ``keepalive`` seconds inside it when given. Whether it is a stall is
    the policy's stall_timeout to say."""

    after: int
    seconds: float
    keepalive: float | None = None


@dataclass(frozen=True)
class StreamResponse:
    """A streamed (SSE) answer: either chunk dicts (rendered as OpenAI SSE) or raw SSE text.

    ``stall_after=k`` pauses ``stall_seconds`` after the k-th data event; ``disconnect_after=k``
    drops the connection after the k-th data event, without a terminating chunk or ``[DONE]``.
    Counting data events (not bytes, not comment lines) keeps both faults on event boundaries.
    ``keepalive=p`` sends an SSE comment (``: ping``) every ``p`` seconds during the pause, as
    providers and proxies do: bytes arrive, content does not, so the pause must stay a stall.
    ``pauses`` are further waits anywhere in the stream (a slow stream with gaps), each a
    :class:`Pause`; the stall is one more, and :meth:`all_pauses` lists them in stream order.
    """

    chunks: tuple[dict[str, Any], ...] | None = None
    sse: str | None = None
    stall_after: int | None = None
    stall_seconds: float = 0.0
    disconnect_after: int | None = None
    keepalive: float | None = None
    pauses: tuple[Pause, ...] = ()

    def all_pauses(self) -> list[Pause]:
        """The stall and the other pauses, ordered by position (stable: the stall first)."""
        out = [Pause(self.stall_after, self.stall_seconds, self.keepalive)] if self.stall_after is not None else []
        return sorted(out + list(self.pauses), key=lambda p: p.after)

    def pause_at(self, k: int) -> float:
        """Seconds of waiting right after the k-th data event."""
        return self._waits.get(k, 0.0)

    @functools.cached_property
    def _waits(self) -> dict[int, float]:
        """Seconds of waiting by position, summed once: a replay asks after every chunk."""
        waits: dict[int, float] = {}
        for p in self.all_pauses():
            waits[p.after] = waits.get(p.after, 0.0) + p.seconds
        return waits

    def __post_init__(self) -> None:
        if not isinstance(self.pauses, tuple):
            object.__setattr__(self, "pauses", tuple(self.pauses))
        if (self.chunks is None) == (self.sse is None):
            raise ValueError("StreamResponse needs exactly one of chunks= or sse=")
        if self.chunks is not None and not isinstance(self.chunks, tuple):
            object.__setattr__(self, "chunks", tuple(self.chunks))
        if self.chunks is not None:  # one data event per chunk; no need to render them
            n_data = len(self.chunks)
        else:
            n_data = _data_events_in(self.sse)  # type: ignore[arg-type]
        for name in ("stall_after", "disconnect_after"):
            k = getattr(self, name)
            if k is not None and not 0 <= k <= n_data:
                raise ValueError(f"{name}={k} is outside 0..{n_data} (the stream's data events)")
        if self.stall_seconds < 0:
            raise ValueError("stall_seconds must be >= 0")
        if self.keepalive is not None and not self.keepalive > 0:
            raise ValueError("keepalive must be a positive number of seconds")
        for p in self.pauses:
            if not 0 <= p.after <= n_data:
                raise ValueError(f"a pause after {p.after} data events is outside 0..{n_data} (the stream's data events)")
            if p.seconds < 0:
                raise ValueError("a pause's seconds must be >= 0")
            if p.keepalive is not None and not p.keepalive > 0:
                raise ValueError("keepalive must be a positive number of seconds")


@dataclass(frozen=True)
class ErrorResponse:
    """An HTTP error from the provider, served before any stream starts (as real providers do)."""

    status: int
    body: dict[str, Any] | str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CompletionResponse:
    """A non-streaming ``chat.completion`` JSON body."""

    body: dict[str, Any]


Served = Union[StreamResponse, ErrorResponse, CompletionResponse]
"""What a transport actually plays for one request."""


@dataclass(frozen=True)
class WhenNoTools:
    """A response that depends on the request: ``no_tools`` answers a request that offered no
    tools (a toolless wrap-up call), ``default`` answers every other one. Both transports choose
    with :func:`choose`."""

    default: Served
    no_tools: Served


Interaction = Union[StreamResponse, ErrorResponse, CompletionResponse, WhenNoTools]


def choose(it: Interaction, offered_tools: bool) -> Served:
    """The response to play for a request that did (or did not) offer tools."""
    if isinstance(it, WhenNoTools):
        return it.default if offered_tools else it.no_tools
    return it


@dataclass(frozen=True)
class Stall:
    """Plan step: wait this long (real time on HTTP, virtual time in-process)."""

    seconds: float


@dataclass(frozen=True)
class Disconnect:
    """Plan step: drop the connection here; nothing more is sent."""


PlanStep = Union[bytes, Stall, Disconnect]


def split_sse(raw: bytes) -> list[bytes]:
    """Cut raw SSE bytes into events, each keeping its terminating blank line.

    ``b"".join(split_sse(raw)) == raw`` always holds, so replay stays byte-for-byte; trailing
    bytes with no blank line after them become a last (unterminated) event.
    """
    events: list[bytes] = []
    start = 0
    for m in _EVENT_END.finditer(raw):
        events.append(raw[start : m.end()])
        start = m.end()
    if start < len(raw):
        events.append(raw[start:])
    return events


def is_data_event(event: bytes) -> bool:
    """True if the event carries a ``data:`` line (comments and bare ``event:`` lines do not count)."""
    return _DATA_LINE.search(event) is not None


@functools.lru_cache(maxsize=256)
def _data_events_in(sse: str) -> int:
    """How many data events raw SSE text holds, counted once per text: the cassettes of a corpus
    (and the interactions of one long cassette) often replay the same recorded stream."""
    return sum(1 for ev in split_sse(sse.encode("utf-8")) if is_data_event(ev))


def sse_events(resp: StreamResponse) -> list[bytes]:
    """Render a StreamResponse into SSE event byte strings, in wire order.

    Chunks become ``data: <compact json>\\n\\n`` followed by ``data: [DONE]\\n\\n``; raw ``sse``
    text is split on event boundaries and otherwise left untouched.
    """
    if resp.sse is not None:
        return split_sse(resp.sse.encode("utf-8"))
    assert resp.chunks is not None
    out = [
        b"data: " + json.dumps(c, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n\n"
        for c in resp.chunks
    ]
    out.append(DONE_EVENT)
    return out


def stream_plan(resp: StreamResponse) -> list[PlanStep]:
    """The exact sequence a transport must play: event bytes, stalls and a possible disconnect.

    Without a disconnect the plan ends after the last event and the transport terminates the
    stream normally.
    """
    steps: list[PlanStep] = []
    pauses = resp.all_pauses()
    steps += _waits(pauses, 0)
    if resp.disconnect_after == 0:
        steps.append(Disconnect())
        return steps
    n_data = 0
    for ev in sse_events(resp):
        steps.append(ev)
        if not is_data_event(ev):
            continue
        n_data += 1
        steps += _waits(pauses, n_data)
        if n_data == resp.disconnect_after:
            steps.append(Disconnect())
            return steps
    return steps


def _waits(pauses: list[Pause], k: int) -> list[PlanStep]:
    """The pauses after the k-th data event as plan steps: a wait, or waits with a keep-alive
    comment after each ``keepalive`` seconds of it (the total stays the pause's length)."""
    steps: list[PlanStep] = []
    for p in pauses:
        if p.after != k:
            continue
        if not p.keepalive:
            steps.append(Stall(p.seconds))
            continue
        waited = 0.0
        while waited + p.keepalive <= p.seconds:
            steps += [Stall(p.keepalive), PING_EVENT]
            waited += p.keepalive
        if p.seconds - waited > 0:
            steps.append(Stall(p.seconds - waited))
    return steps


def _event_data(event: bytes) -> tuple[str | None, str | None]:
    """(event type, joined data) of one SSE event, per the SSE field rules."""
    etype: str | None = None
    data: list[str] = []
    for raw_line in re.split(_EOL, event):
        line = raw_line.decode("utf-8", errors="replace")
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            etype = value
        elif name == "data":
            data.append(value)
    return etype, ("\n".join(data) if data else None)


def stream_chunks(resp: StreamResponse) -> list[dict[str, Any]]:
    """The JSON objects a stream carries, in order, ``[DONE]`` and unparseable data skipped.

    An ``event: error`` payload without an ``error`` key is wrapped as ``{"error": payload}`` so
    callers can look for errors one way.
    """
    if resp.chunks is not None:
        return list(resp.chunks)
    out: list[dict[str, Any]] = []
    for ev in sse_events(resp):
        etype, data = _event_data(ev)
        if data is None or data.strip() == "[DONE]":
            continue
        try:
            obj = json.loads(data)
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        if etype == "error" and "error" not in obj:
            obj = {"error": obj}
        out.append(obj)
    return out


def fold_stream(resp: StreamResponse) -> dict[str, Any]:
    """Fold a stream's chunks into one non-streaming ``chat.completion`` body.

    Content, reasoning and refusal strings are concatenated per choice; tool-call fragments are
    merged by index (strings concatenated, as the openai SDK's own accumulator does). If the stream
    carries an error object, the result is ``{"error": ...}`` instead, which the server serves as
    HTTP 500.
    """
    out: dict[str, Any] = {"id": "", "object": "chat.completion", "created": 0, "model": ""}
    choices: dict[int, dict[str, Any]] = {}
    calls: dict[int, dict[int, dict[str, Any]]] = {}
    usage: Any = None
    for chunk in stream_chunks(resp):
        if chunk.get("error") is not None:
            return {"error": chunk["error"]}
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if chunk.get(key) is not None and not out.get(key):
                out[key] = chunk[key]
        if chunk.get("usage"):
            usage = chunk["usage"]
        for ch in chunk.get("choices") or []:
            idx = int(ch.get("index", 0))
            st = choices.setdefault(
                idx,
                {
                    "index": idx,
                    "message": {"role": "assistant", "content": None},
                    "logprobs": None,
                    "finish_reason": None,
                },
            )
            msg = st["message"]
            delta = ch.get("delta") or {}
            if delta.get("role"):
                msg["role"] = delta["role"]
            for key in ("content", "reasoning_content", "reasoning", "refusal"):
                if isinstance(delta.get(key), str) and delta[key]:
                    msg[key] = (msg.get(key) or "") + delta[key]
            for tc in delta.get("tool_calls") or []:
                cur = calls.setdefault(idx, {}).setdefault(
                    int(tc.get("index", 0)),
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                if tc.get("id"):
                    cur["id"] = tc["id"]
                if tc.get("type"):
                    cur["type"] = tc["type"]
                fn = tc.get("function") or {}
                for key in ("name", "arguments"):
                    if isinstance(fn.get(key), str):
                        cur["function"][key] += fn[key]
            if ch.get("finish_reason"):
                st["finish_reason"] = ch["finish_reason"]
    for idx, by_index in calls.items():
        choices[idx]["message"]["tool_calls"] = [by_index[i] for i in sorted(by_index)]
    out["choices"] = [choices[i] for i in sorted(choices)]
    if usage is not None:
        out["usage"] = usage
    return out


def completion_chunks(body: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """Render a ``chat.completion`` body as stream chunks, for a CompletionResponse asked with
    ``stream: true``: one delta per choice carrying the whole message, then a usage chunk."""
    base = {
        "id": body.get("id", ""),
        "object": "chat.completion.chunk",
        "created": body.get("created", 0),
        "model": body.get("model", ""),
    }
    if body.get("system_fingerprint") is not None:
        base["system_fingerprint"] = body["system_fingerprint"]
    out: list[dict[str, Any]] = []
    for ch in body.get("choices") or []:
        msg = dict(ch.get("message") or {})
        delta: dict[str, Any] = {k: v for k, v in msg.items() if v is not None and k != "tool_calls"}
        if msg.get("tool_calls"):
            delta["tool_calls"] = [dict(tc, index=i) for i, tc in enumerate(msg["tool_calls"])]
        out.append(
            dict(
                base,
                choices=[
                    {
                        "index": ch.get("index", 0),
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": ch.get("finish_reason"),
                    }
                ],
            )
        )
    if body.get("usage"):
        out.append(dict(base, choices=[], usage=body["usage"]))
    return tuple(out)
