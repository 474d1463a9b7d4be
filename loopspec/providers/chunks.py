"""Convert provider chunks (raw OpenAI chunk JSON, litellm stream objects) into Deltas.

The raw-JSON path is the in-process replay's hot loop, so it is written for speed: one dict
walk and one Delta per chunk, no intermediate objects, ``None`` for chunks that carry nothing.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from loopspec.wire.classify import broken_cause
from loopspec.wire.deltas import Delta, ToolCallFragment, Usage
from loopspec.providers.base import StreamBroken

__all__ = ["iter_sse_data", "delta_from_chunk_dict", "delta_from_litellm_chunk", "usage_from_dict"]

# Native finish reasons some OpenAI-compatible servers pass through unmapped.
_FINISH = {
    "max_tokens": "length",
    "max_output_tokens": "length",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "function_call": "tool_calls",
}


def _error_message(err: Any) -> str:
    if isinstance(err, dict):
        msg = err.get("message") or err.get("type") or err.get("code") or json.dumps(err)
        return str(msg)
    return str(err)


def _broken_from_error(err: Any) -> StreamBroken:
    msg = _error_message(err)
    return StreamBroken.make(broken_cause(msg), msg)


def _event_payload(payload: str, event: str, loads: Any = json.loads) -> Any:
    """One SSE event's parsed data; an unparseable payload or an ``event: error`` frame breaks the stream."""
    try:
        obj = loads(payload)
    except ValueError as e:
        raise StreamBroken.make("provider_error", f"unparseable SSE data: {payload[:200]!r}") from e
    if event == "error":
        raise _broken_from_error(obj.get("error", obj) if isinstance(obj, dict) else obj)
    return obj


def iter_sse_data(text: str | bytes) -> Iterator[dict]:
    """Yield the JSON payload of each SSE event's ``data:`` field(s).

    Skips ``[DONE]``, ``:`` comments and ``event:``/``id:``/``retry:`` fields; an
    ``event: error`` frame raises :class:`StreamBroken` (Groq, Anthropic send mid-stream
    errors that way). Multi-line ``data:`` fields are joined with newlines, as the SSE spec says.
    """
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    loads = json.loads
    event = ""
    buf: list[str] = []
    for line in text.splitlines():
        if line.startswith("data:"):
            buf.append(line[6:] if line.startswith("data: ") else line[5:])
            continue
        if line:
            if line.startswith("event:"):
                event = line[6:].strip()
            continue
        if not buf:
            event = ""
            continue
        payload = buf[0] if len(buf) == 1 else "\n".join(buf)
        buf = []
        if payload == "[DONE]":
            event = ""
            continue
        yield _event_payload(payload, event, loads)
        event = ""
    if buf:  # a final event with no blank line after it
        payload = "\n".join(buf)
        if payload != "[DONE]":
            yield _event_payload(payload, event, loads)


def usage_from_dict(u: dict) -> Usage:
    """OpenAI-shaped usage (also Anthropic's input/output_tokens) as a :class:`Usage`."""
    details = u.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if details else 0
    cost = u.get("cost")
    return Usage(
        u.get("prompt_tokens") or u.get("input_tokens") or 0,
        u.get("completion_tokens") or u.get("output_tokens") or 0,
        reasoning or 0,
        usage_cost(cost),
    )


def usage_cost(cost: Any) -> float | None:
    """A reported cost in dollars, or None when it is absent or not a finite number of 0 or more."""
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not 0 <= cost < float("inf"):
        return None
    return float(cost)


def _thinking_from_details(details: list) -> tuple[tuple[dict, ...], str]:
    """OpenRouter ``reasoning_details`` as Anthropic-style thinking fragments, plus their text.

    Kept because the signature-only entry is what a thinking replay needs, and litellm's
    ``openai/`` path drops exactly that chunk (docs/providers.md, "What litellm changes in a stream").
    """
    blocks: list[dict] = []
    text: list[str] = []
    for item in details:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "reasoning.encrypted":
            if item.get("data"):
                blocks.append({"type": "redacted_thinking", "data": item["data"]})
        elif kind == "reasoning.text":
            t = item.get("text") or ""
            if t:
                text.append(t)
            if t or item.get("signature"):
                blocks.append({"type": "thinking", "thinking": t, "signature": item.get("signature") or None})
    return tuple(blocks), "".join(text)


def delta_from_chunk_dict(d: dict) -> Delta | None:
    """One OpenAI ``chat.completion.chunk`` dict as a Delta; None when it carries nothing.

    Only choice index 0 is read (loopspec asks for n=1). A top-level ``error`` object (OpenRouter
    sends it inside a normal chunk) raises :class:`StreamBroken`. Also accepts a non-streaming
    choice (``message`` instead of ``delta``), so recorded non-stream bodies replay too.
    """
    err = d.get("error")
    if err:
        raise _broken_from_error(err)
    u = d.get("usage")
    if u is None:
        xg = d.get("x_groq")
        if xg:
            u = xg.get("usage")
    usage = usage_from_dict(u) if u else None
    choices = d.get("choices")
    if not choices:
        return Delta(usage=usage) if usage is not None else None
    c = choices[0]
    if c.get("index", 0) != 0:
        c = None
        for ch in choices:
            if ch.get("index", 0) == 0:
                c = ch
                break
        if c is None:
            return Delta(usage=usage) if usage is not None else None
    delta = c.get("delta")
    if delta is None:
        delta = c.get("message") or {}
    text = delta.get("content") or ""
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
    finish = c.get("finish_reason")
    if finish is not None:
        finish = _FINISH.get(finish, finish)
    tcs = delta.get("tool_calls")
    frags: tuple[ToolCallFragment, ...] = ()
    if tcs:
        out = []
        for pos, tc in enumerate(tcs):
            fn = tc.get("function") or {}
            args = fn.get("arguments")
            if args is None:
                args = ""
            elif not isinstance(args, str):
                args = json.dumps(args)
            out.append(ToolCallFragment(tc.get("index", pos), tc.get("id"), fn.get("name"), args))
        frags = tuple(out)
    blocks: tuple[dict, ...] = ()
    details = delta.get("reasoning_details")
    if details:
        blocks, detail_text = _thinking_from_details(details)
        if not reasoning:
            reasoning = detail_text
    if not (text or reasoning or frags or finish or usage is not None or blocks):
        return None
    return Delta(text, reasoning, frags, finish, usage, blocks)


def usage_from_obj(u: Any) -> Usage | None:
    if u is None:
        return None
    details = getattr(u, "completion_tokens_details", None)
    return Usage(
        int(getattr(u, "prompt_tokens", 0) or 0),
        int(getattr(u, "completion_tokens", 0) or 0),
        int(getattr(details, "reasoning_tokens", 0) or 0) if details is not None else 0,
        usage_cost(getattr(u, "cost", None)),
    )


_MISSING = object()
_MODEL_TYPES: dict[type, bool] = {}


def _is_model(kind: type) -> bool:
    """Whether ``kind`` is a pydantic model, remembered per type (asking pydantic costs about 1 us a
    time; chunks come in only a handful of types)."""
    is_model = _MODEL_TYPES.get(kind)
    if is_model is None:
        is_model = _MODEL_TYPES[kind] = hasattr(kind, "model_fields")
    return is_model


def field_of(obj: Any, name: str) -> Any:
    """``getattr(obj, name, None)`` without the exception a missing pydantic field costs
    (about 2 us each; a litellm chunk is probed for half a dozen optional fields)."""
    d = getattr(obj, "__dict__", None)
    if d is None:
        return getattr(obj, name, None)
    value = d.get(name, _MISSING)
    if value is not _MISSING:
        return value
    for slot in ("__pydantic_extra__", "__pydantic_private__"):
        more = getattr(obj, slot, None)
        if more and name in more:
            return more[name]
    if _is_model(type(obj)):
        return None
    return getattr(obj, name, None)


class _Attributes:
    """A plain object's attributes as a read-only mapping (see :func:`fields_of`)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self.obj, name, default)


_NO_FIELDS: dict[str, Any] = {}


def fields_of(obj: Any) -> Any:
    """Every field of ``obj`` as one mapping with ``get``, as :func:`field_of` reads them one by one.

    A litellm chunk keeps most of its fields as pydantic extras, so probing a dozen names one at a
    time costs three lookups each; one merged dict per object costs one. Private attributes
    (``_hidden_params``) are not in it: read those with :func:`field_of`."""
    if obj is None:
        return _NO_FIELDS
    d = getattr(obj, "__dict__", None)
    if d is None:
        return _Attributes(obj)
    if not _is_model(type(obj)):
        return _Attributes(obj)
    extra = getattr(obj, "__pydantic_extra__", None)
    return {**extra, **d} if extra else d


def delta_from_litellm_chunk(chunk: Any) -> Delta:
    """A litellm ``ModelResponseStream`` as a Delta (attribute access; never imports litellm).

    litellm already maps ``reasoning``/``reasoning_content`` to ``reasoning_content`` and native
    finish reasons to OpenAI ones. Usage is read from ``chunk.usage`` (sent when
    ``stream_options.include_usage`` was requested) or, on the last chunk, from the usage litellm
    hides in ``_hidden_params`` when that total is non-zero.
    """
    top = fields_of(chunk)
    usage = usage_from_obj(top.get("usage"))
    if usage is None:
        hidden = field_of(chunk, "_hidden_params")
        if isinstance(hidden, dict) and hidden.get("usage") is not None:
            hu = usage_from_obj(hidden["usage"])
            if hu is not None and (hu.prompt_tokens or hu.completion_tokens):
                usage = hu
    choice = None
    for ch in top.get("choices") or ():
        choice = fields_of(ch)
        if (choice.get("index") or 0) == 0:
            break
        choice = None
    if choice is None:
        return Delta(usage=usage)
    finish = choice.get("finish_reason") or None
    if finish is not None:
        finish = _FINISH.get(finish, finish)
    delta_obj = choice.get("delta")
    if delta_obj is None:
        return Delta(finish_reason=finish, usage=usage)
    delta = fields_of(delta_obj)
    text = delta.get("content") or ""
    reasoning = delta.get("reasoning_content") or ""
    frags: tuple[ToolCallFragment, ...] = ()
    tcs = delta.get("tool_calls")
    if tcs:
        out = []
        for pos, tc_obj in enumerate(tcs):
            tc = fields_of(tc_obj)
            fn = fields_of(tc.get("function"))
            args = fn.get("arguments")
            if args is None:
                args = ""
            elif not isinstance(args, str):
                args = json.dumps(args)
            idx = tc.get("index")
            out.append(ToolCallFragment(pos if idx is None else int(idx), tc.get("id") or None, fn.get("name") or None, args))
        frags = tuple(out)
    blocks: tuple[dict, ...] = ()
    tb = delta.get("thinking_blocks")
    if tb:
        blocks = tuple(dict(b) if not isinstance(b, dict) else b for b in tb)
    else:
        details = delta.get("reasoning_details")
        if details is None:
            psf = delta.get("provider_specific_fields")
            if isinstance(psf, dict):
                details = psf.get("reasoning_details")
        if details:
            blocks, detail_text = _thinking_from_details(list(details))
            if not reasoning:
                reasoning = detail_text
    return Delta(text, reasoning, frags, finish, usage, blocks)
