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
        out.append(str(value))
    return "".join(out)
