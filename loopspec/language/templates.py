"""Message templates: safe ``{name}`` substitution, nothing else (no attribute or index access),
and a cap on what one rendering may produce."""

from __future__ import annotations

import string
from typing import Any, Mapping

_FORMATTER = string.Formatter()

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
"""What one rendered message may hold (UTF-8 bytes) unless ``settings.max_message_bytes`` says
otherwise: a template of 400 ``{response}`` with a 100 KB reply would otherwise render 40 MB."""

UNCOUNTED = "response"
"""One copy of this variable is not counted against the cap: a halt message of ``"{response}"``
continues the reply the user already saw streamed, byte for byte, whatever its length."""


def truncation_marker(dropped: int) -> str:
    """What ends a message cut at the cap: visible, and saying how much is missing."""
    return f"\n[... message truncated: {dropped} more bytes]"


def _value_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        # 3600.0 reads as 3600, an unbounded wait as inf
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def render_template(text: str, variables: Mapping[str, Any], limit: int = DEFAULT_MAX_MESSAGE_BYTES) -> str:
    """Safe substitution: only plain names (validated); lists are joined, absent names become ''.

    The result holds at most ``limit`` UTF-8 bytes plus one copy of ``{response}`` (see
    :data:`UNCOUNTED`); past that it is cut at a character boundary and ends with
    :func:`truncation_marker`. Each value is rendered and measured once, and nothing past the cap
    is joined, so a template that repeats a long value never builds the oversized string.
    """
    parts = list(_FORMATTER.parse(text))
    values: dict[str, tuple[str, int]] = {}
    for _literal, name, _spec, _conv in parts:
        if name is not None and name not in values:
            value = _value_text(variables.get(name, ""))
            values[name] = (value, len(value.encode("utf-8")))
    budget = limit + (values[UNCOUNTED][1] if UNCOUNTED in values else 0)
    pieces: list[tuple[str, int]] = []
    for literal, name, _spec, _conv in parts:
        pieces.append((literal, len(literal.encode("utf-8"))))
        if name is not None:
            pieces.append(values[name])
    total = sum(size for _piece, size in pieces)
    if total <= budget:
        return "".join(piece for piece, _size in pieces)
    return _cut(pieces, total, budget)


def _cut(pieces: list[tuple[str, int]], total: int, budget: int) -> str:
    """The first bytes of the pieces joined, so that they and the marker fit ``budget``; on a
    character boundary."""
    room = max(0, budget - len(truncation_marker(total).encode("utf-8")))
    out: list[str] = []
    for piece, size in pieces:
        if size <= room:
            out.append(piece)
            room -= size
            continue
        out.append(piece.encode("utf-8")[:room].decode("utf-8", errors="ignore"))
        break
    kept = "".join(out)
    return kept + truncation_marker(total - len(kept.encode("utf-8")))
