"""The wire shapes a cassette's ``chunks`` and ``completion`` bodies must have.

These are recorded OpenAI objects and stay free-form (unknown keys are kept and served), but the
fields a client reads must have the type a provider would send: a ``choices`` that is ``true``, a
``delta`` that is a number or a ``content`` that is a mapping would otherwise reach the stream
parser, which then fails with a traceback in-process and a different error over HTTP. Checking
here gives one diagnostic at the field's position for both transports.
"""

from __future__ import annotations

from typing import Any

from loopspec.language.reader import type_name

__all__ = ["chunk_problem", "completion_problem"]

Problem = tuple[str, str]
"""(the path below the chunk or body, e.g. ``.choices[0].delta.content``; what it must be)"""

_TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "input_tokens", "output_tokens")
_TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "refusal", "role")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _need(ok: bool, path: str, what: str, v: Any) -> Problem | None:
    return None if ok else (path, f"{what}, got {type_name(v)}")


def _usage_problem(u: Any, path: str) -> Problem | None:
    if u is None:
        return None
    if not isinstance(u, dict):
        return (path, f"usage is a mapping of token counts, got {type_name(u)}")
    for k in _TOKEN_FIELDS:
        v = u.get(k)
        if v is not None and not (_is_int(v) and v >= 0):
            return (f"{path}.{k}", f"{k} is a whole number of tokens, got {type_name(v)}")
    details = u.get("completion_tokens_details")
    if details is not None:
        if not isinstance(details, dict):
            return (f"{path}.completion_tokens_details", f"completion_tokens_details is a mapping, got {type_name(details)}")
        r = details.get("reasoning_tokens")
        if r is not None and not (_is_int(r) and r >= 0):
            return (f"{path}.completion_tokens_details.reasoning_tokens", f"reasoning_tokens is a whole number, got {type_name(r)}")
    return None


def _message_problem(m: Any, path: str) -> Problem | None:
    """A choice's ``delta`` (streamed) or ``message`` (whole)."""
    if m is None:
        return None
    if not isinstance(m, dict):
        return (path, f"a delta or message is a mapping, got {type_name(m)}")
    for k in _TEXT_FIELDS:
        if m.get(k) is not None and not isinstance(m[k], str):
            return (f"{path}.{k}", f"{k} is text or null, got {type_name(m[k])}")
    tcs = m.get("tool_calls")
    if tcs is not None:
        if not isinstance(tcs, list):
            return (f"{path}.tool_calls", f"tool_calls is a list, got {type_name(tcs)}")
        for j, tc in enumerate(tcs):
            where = f"{path}.tool_calls[{j}]"
            if not isinstance(tc, dict):
                return (where, f"a tool call is a mapping, got {type_name(tc)}")
            p = (
                _need(tc.get("index") is None or _is_int(tc["index"]), f"{where}.index", "index is a whole number", tc.get("index"))
                or _need(tc.get("id") is None or isinstance(tc["id"], str), f"{where}.id", "id is text", tc.get("id"))
                or _need(tc.get("function") is None or isinstance(tc["function"], dict), f"{where}.function",
                         "function is a mapping ({name, arguments})", tc.get("function"))
            )
            if p:
                return p
            fn = tc.get("function") or {}
            p = _need(fn.get("name") is None or isinstance(fn["name"], str), f"{where}.function.name", "name is text", fn.get("name")) or _need(
                fn.get("arguments") is None or isinstance(fn["arguments"], (str, dict)), f"{where}.function.arguments",
                "arguments are the JSON text (or a mapping)", fn.get("arguments"))
            if p:
                return p
    details = m.get("reasoning_details")
    if details is not None:
        if not isinstance(details, list):
            return (f"{path}.reasoning_details", f"reasoning_details is a list, got {type_name(details)}")
        for j, item in enumerate(details):
            if isinstance(item, dict):
                for k in ("text", "signature", "type"):
                    if item.get(k) is not None and not isinstance(item[k], str):
                        return (f"{path}.reasoning_details[{j}].{k}", f"{k} is text, got {type_name(item[k])}")
    return None


def _choices_problem(choices: Any, part: str) -> Problem | None:
    if choices is None:
        return None
    if not isinstance(choices, list):
        return (".choices", f"choices is a list, got {type_name(choices)}")
    for i, ch in enumerate(choices):
        where = f".choices[{i}]"
        if not isinstance(ch, dict):
            return (where, f"a choice is a mapping ({{index, {part}, finish_reason}}), got {type_name(ch)}")
        p = _need(ch.get("index") is None or _is_int(ch["index"]), f"{where}.index", "index is a whole number", ch.get("index")) or _need(
            ch.get("finish_reason") is None or isinstance(ch["finish_reason"], str), f"{where}.finish_reason",
            "finish_reason is text or null", ch.get("finish_reason"))
        if p:
            return p
        for key in ("delta", "message"):
            p = _message_problem(ch.get(key), f"{where}.{key}")
            if p:
                return p
    return None


def chunk_problem(chunk: dict[str, Any]) -> Problem | None:
    """What is wrong with one ``chat.completion.chunk`` mapping, or None."""
    xg = chunk.get("x_groq")
    if xg is not None and not isinstance(xg, dict):
        return (".x_groq", f"x_groq is a mapping, got {type_name(xg)}")
    return (
        _usage_problem(chunk.get("usage"), ".usage")
        or _usage_problem((xg or {}).get("usage"), ".x_groq.usage")
        or _choices_problem(chunk.get("choices"), "delta")
    )


def completion_problem(body: dict[str, Any]) -> Problem | None:
    """What is wrong with one ``chat.completion`` body, or None."""
    return _usage_problem(body.get("usage"), ".usage") or _choices_problem(body.get("choices"), "message")
