"""Message templates: safe ``{name}`` substitution, nothing else (no attribute or index access)."""

from __future__ import annotations

import string
from typing import Any, Mapping

_FORMATTER = string.Formatter()


def render_template(text: str, variables: Mapping[str, Any]) -> str:
    """Safe substitution: only plain names (validated); lists are joined, absent names become ''."""
    out: list[str] = []
    for literal, name, _spec, _conv in _FORMATTER.parse(text):
        out.append(literal)
        if name is None:
            continue
        value = variables.get(name, "")
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, float):
            # 3600.0 reads as 3600, an unbounded wait as inf
            value = str(int(value)) if value.is_integer() else f"{value:g}"
        out.append(str(value))
    return "".join(out)
