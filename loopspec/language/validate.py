"""Validate a loaded policy document and compile it into a :class:`~loopspec.language.model.Policy`.

All spec quality comes from here: ``transitions`` checks almost nothing at build time (a misspelt
target fails only when it fires), so every name is resolved now, every error is reported (not just
the first) with ``file:line:col``, and misspelt names get a did-you-mean hint.

The work is split by concept: :mod:`.checks` (reporting), :mod:`.resolve` (names),
:mod:`.declarations`, :mod:`.read_states`, :mod:`.read_guards` and :mod:`.read_actions` (reading),
:mod:`.lint` (warnings), :mod:`.compile` (building the policy). This module is the entry point.
"""

from __future__ import annotations

from .alphabet import (  # re-exported: the language's vocabulary used to be defined here
    ACTION_NAMES,
    BACKSTOP_KEYS,
    GUARDRAIL_CODES,
    GUARDRAIL_KEYS,
    NAME_RE,
    SETTINGS_KEYS,
    STATE_KEYS,
    SUPPORTED_VERSION,
    TOP_KEYS,
    TRANSITION_KEYS,
    VERDICTS,
)
from .compile import compile_document as validate_document
from .diagnostics import Diagnostic
from .model import Policy
from .yamlsource import LoadError, load_yaml_file, load_yaml_text

# ------------------------------------------------------------------------------- public entry points


def validate_text(text: str, file: str = "<string>") -> tuple[Policy | None, list[Diagnostic]]:
    try:
        doc = load_yaml_text(text, file)
    except LoadError as exc:
        return None, [exc.diagnostic]
    return validate_document(doc, file)


def validate_file(path: str) -> tuple[Policy | None, list[Diagnostic]]:
    """Load, validate and compile one policy file; never raises for bad input."""
    try:
        doc = load_yaml_file(path)
    except LoadError as exc:
        return None, [exc.diagnostic]
    return validate_document(doc, path)


__all__ = [
    "ACTION_NAMES",
    "BACKSTOP_KEYS",
    "GUARDRAIL_CODES",
    "GUARDRAIL_KEYS",
    "NAME_RE",
    "SETTINGS_KEYS",
    "STATE_KEYS",
    "SUPPORTED_VERSION",
    "TOP_KEYS",
    "TRANSITION_KEYS",
    "VERDICTS",
    "validate_document",
    "validate_file",
    "validate_text",
]
