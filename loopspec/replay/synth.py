"""Build OpenAI ``chat.completion.chunk`` streams from parts, in the shape real providers send.

Used where no recorded stream shows a case (a thinking-only reply that finished "stop", malformed
arguments), by the Hypothesis strategies, and by the checker's counterexample cassettes. The
shape follows the recorded streams in fixtures/streams: a role chunk, content or tool-call
fragments, a finish chunk.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from .interactions import StreamResponse

_BASE = {"id": "chatcmpl-loopspec", "object": "chat.completion.chunk", "created": 0, "model": "replay"}


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return dict(_BASE, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])


def split(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def reply_chunks(
    text: str = "",
    *,
    reasoning: str = "",
    tool_calls: Sequence[tuple[str, Any]] = (),
    finish: str | None = None,
    piece: int = 8,
    omit_finish: bool = False,
    usage: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Chunks for one reply: reasoning, then text, then tool calls (name, arguments) in order.

    ``arguments`` may be a dict (serialised) or a raw string (to write malformed JSON). ``finish``
    defaults to ``tool_calls`` when there are tool calls, else ``stop``; ``omit_finish`` ends the
    stream with no finish_reason at all (some providers and proxies do). ``usage`` (prompt,
    completion and reasoning token counts) goes on the last chunk, as providers send it.
    """
    out = [_chunk({"role": "assistant", "content": ""})]
    out += [_chunk({"reasoning_content": part}) for part in split(reasoning, piece) if part]
    out += [_chunk({"content": part}) for part in split(text, piece) if part]
    for i, (name, args) in enumerate(tool_calls):
        raw = args if isinstance(args, str) else json.dumps(args)
        out.append(
            _chunk(
                {
                    "tool_calls": [
                        {"index": i, "id": f"call_{i}_{name}", "type": "function", "function": {"name": name, "arguments": ""}}
                    ]
                }
            )
        )
        out += [_chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]}) for part in split(raw, piece)]
    if not omit_finish:
        out.append(_chunk({}, finish or ("tool_calls" if tool_calls else "stop")))
    if usage is not None:
        out[-1] = dict(out[-1], usage=usage_body(usage))
    return out


def usage_body(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's usage object for ``{prompt_tokens, completion_tokens, reasoning_tokens}``."""
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    body: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if usage.get("reasoning_tokens"):
        body["completion_tokens_details"] = {"reasoning_tokens": int(usage["reasoning_tokens"])}
    if usage.get("cost") is not None:
        body["cost"] = float(usage["cost"])  # as OpenRouter reports it; what a cost budget charges in replay
    return body


def reply(
    text: str = "",
    *,
    reasoning: str = "",
    tool_calls: Sequence[tuple[str, Any]] = (),
    finish: str | None = None,
    stall_after: int | None = None,
    stall_seconds: float = 0.0,
    disconnect_after: int | None = None,
    keepalive: float | None = None,
) -> StreamResponse:
    """A StreamResponse for one reply (see :func:`reply_chunks`), optionally with a fault."""
    return StreamResponse(
        chunks=tuple(reply_chunks(text, reasoning=reasoning, tool_calls=tool_calls, finish=finish)),
        stall_after=stall_after,
        stall_seconds=stall_seconds,
        disconnect_after=disconnect_after,
        keepalive=keepalive,
    )


def inside_tool_arguments(resp_chunks: Iterable[dict[str, Any]]) -> list[int]:
    """Indexes k such that stalling after k chunks cuts a tool call inside its arguments."""
    out: list[int] = []
    seen_call = False
    for k, c in enumerate(resp_chunks, start=1):
        delta = (c.get("choices") or [{}])[0].get("delta") or {}
        if delta.get("tool_calls"):
            seen_call = True
            out.append(k)
        elif seen_call:
            break
    return out
