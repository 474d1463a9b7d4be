"""Secrets out of every output: the one place that knows what a secret looks like.

Cassettes (:mod:`loopspec.replay.redact`), error events and the halt messages rendered from them
(:mod:`loopspec.wire.classify`, :class:`loopspec.providers.base.StreamBroken`), and the CLI's
printed results all redact through :func:`redact_text` and :func:`redact`, so one pattern added
here reaches every output. What counts as a secret: provider key shapes (``sk-``, ``sk-ant-``,
Groq, xAI, Google, Hugging Face, GitHub, AWS), the token after ``Bearer``/``Basic``, the value of a
credential-named field (``api_key: ...``, ``Authorization: ...``, ``"password": "..."``), a
``key=``/``token=``/``secret=``/``sig=`` parameter (``?key=`` in a URL, ``token=`` in an error),
credentials inside a URL, and any literal the caller names (the ``--api-key`` value, credential
environment values).
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable

__all__ = ["REDACTED", "MIN_LITERAL", "literal_secrets", "secret_spans", "redact_text", "redact", "env_secrets"]

MIN_LITERAL = 8
"""Literal secrets shorter than this are not redacted by value (they would take ordinary words with
them, e.g. a placeholder key "replay"); the patterns still cover real key shapes."""

REDACTED = "<redacted>"
"""What a secret becomes. Plain text that is valid inside a YAML plain scalar, a quoted scalar and a
JSON string, and that none of the patterns below match again."""

# Key shapes that are secrets wherever they appear, each with the literals one of which every match
# of it contains (a text holding none of them is not scanned with it).
_KEY_SHAPES = [
    (r"\bsk-(?:ant-|proj-|live-|test-|or-v1-)?[A-Za-z0-9_\-]{12,}", ("sk-",)),  # OpenAI, Anthropic, OpenRouter, ...
    (r"\bgsk_[A-Za-z0-9]{20,}", ("gsk_",)),  # Groq
    (r"\bxai-[A-Za-z0-9]{20,}", ("xai-",)),  # xAI
    (r"\bAIza[0-9A-Za-z_\-]{30,}", ("AIza",)),  # Google
    (r"\bhf_[A-Za-z0-9]{20,}", ("hf_",)),  # Hugging Face
    (r"\bgh[pousr]_[A-Za-z0-9]{20,}", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),  # GitHub
    (r"\bAKIA[0-9A-Z]{16}\b", ("AKIA",)),  # AWS access key id
]
_KEY_PATTERNS = [p for p, _needs in _KEY_SHAPES]
# ``Bearer <token>`` / ``Basic <creds>``: the token goes, the scheme stays.
_AUTH_SCHEME = r"\b(?:Bearer|Basic)\s+(?!<redacted>)([A-Za-z0-9._~+/=\-]{6,})"
# ``name = value`` / ``name: value`` / ``"name": "value"`` for credential-named fields.
_CRED_NAMES = (
    r"(?:x[-_])?api[-_]?key|authorization|proxy[-_]authorization|access[-_]?token|refresh[-_]?token|"
    r"auth[-_]?token|id[-_]?token|client[-_]?secret|secret[-_]?key|password|passwd"
)
_KEY_VALUE = (
    r"(?i)(?<![A-Za-z0-9])(?:" + _CRED_NAMES + r")[\"']?[ \t]*[:=][ \t]*[\"']?"
    r"(?:(?:Bearer|Basic)[ \t]+)?(?!(?:Bearer|Basic)\b)([^\s\"'&,;(){}\[\]<>]+)"
)
# ``key=`` / ``token=`` / ``secret=`` / ``sig=`` parameters, bare or prefixed (``?key=`` in a URL,
# ``page_token=``, ``token=`` in an error text): the value goes. A match starts only where a
# dotted/dashed word starts, so a long run of ``a_a_a_...`` is scanned once, not once per letter.
_PARAM = (
    r"(?i)(?<![A-Za-z0-9_.\-])(?:[A-Za-z0-9]+[-_.])*(?:key|token|secret|signature|sig)[ \t]*=[ \t]*[\"']?"
    r"([^\s\"'&,;(){}\[\]<>]+)"
)
# Credentials inside a URL: ``https://user:pass@host``.
_URL_USERINFO = r"(?<=://)([^/\s:@]+:[^/\s@]+)@"

_SECRET_RES = [(re.compile(p), needs) for p, needs in _KEY_SHAPES]
_GROUP_RES = [(re.compile(_AUTH_SCHEME), ("Bearer", "Basic")), (re.compile(_KEY_VALUE), (":", "=")),
              (re.compile(_PARAM), ("=",)), (re.compile(_URL_USERINFO), ("://",))]
"""Each pattern with the literals one of which every match of it contains: a pattern none of them
is in the text cannot match, and is not run (an error message with a ``:`` is scanned by the one
pattern that needs it, not by eleven). ``tests/wire/test_redaction_short.py`` holds them to it."""
_SENSITIVE_KEY = re.compile(r"(?i)^(?:" + _CRED_NAMES + r")$")


def secret_spans(text: str, secrets: Iterable[str] = ()) -> list[tuple[int, int]]:
    """The character ranges of ``text`` that are secrets, merged and sorted."""
    spans: list[tuple[int, int]] = []
    for rx, needs in _SECRET_RES:
        if any(x in text for x in needs):
            spans += [(m.start(), m.end()) for m in rx.finditer(text)]
    for rx, needs in _GROUP_RES:
        if any(x in text for x in needs):
            spans += [(m.start(1), m.end(1)) for m in rx.finditer(text) if m.group(1)]
    for s in secrets:
        if s:
            start = text.find(s)
            while start != -1:
                spans.append((start, start + len(s)))
                start = text.find(s, start + 1)
    spans.sort()
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


_TRIGGER = re.compile(r"[:=@]|sk-|gsk_|xai-|AIza|hf_|gh[pousr]_|AKIA|Bearer|Basic")
"""Something every pattern needs to match: a key shape's prefix, an auth scheme, or the ``:``, ``=``
or ``@`` of a credential field, a parameter or a URL's user info. Text without any of them holds no
pattern's secret, so one scan of it replaces the eleven (most of what a trace or a result holds:
names, states, prose). ``tests/wire`` checks that no string the patterns redact lacks a trigger."""


def redact_text(s: str, secrets: Iterable[str] = ()) -> str:
    """``s`` with every secret replaced by :data:`REDACTED`."""
    return _redact_text(s, tuple(x for x in secrets if x))


def _redact_text(s: str, secrets: tuple[str, ...]) -> str:
    if not _TRIGGER.search(s) and not any(x in s for x in secrets):
        return s  # no pattern can match it: see _TRIGGER
    spans = secret_spans(s, secrets)
    if not spans:
        return s
    out, pos = [], 0
    for a, b in spans:
        out += [s[pos:a], REDACTED]
        pos = b
    out.append(s[pos:])
    return "".join(out)


def redact(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like value with every secret string redacted.

    Strings are passed through :func:`redact_text`; the value of a credential-named key
    (``api_key``, ``Authorization``, ``x-api-key``, ``password``, ...) is replaced outright.
    """
    return _redact(obj, tuple(x for x in secrets if x))


def _redact(obj: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(obj, str):
        return _redact_text(obj, secrets)
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            if isinstance(k, str) and _SENSITIVE_KEY.match(k) and isinstance(v, (str, int, float)) and v != "":
                out[k] = REDACTED
            else:
                out[_redact_text(k, secrets) if isinstance(k, str) else k] = _redact(v, secrets)
        return out
    if isinstance(obj, (list, tuple)):
        return [_redact(x, secrets) for x in obj]
    return obj


def env_secrets(environ: dict[str, str] | None = None) -> list[str]:
    """Values of credential-looking environment variables (``*_API_KEY``, ``*_TOKEN``, ...)."""
    env = os.environ if environ is None else environ
    names = re.compile(r"(?i)(API_?KEY|TOKEN|SECRET|PASSWORD)$")
    return sorted({v for k, v in env.items() if names.search(k) and v and len(v) >= MIN_LITERAL})


def literal_secrets(*values: str | None) -> tuple[str, ...]:
    """The values long enough to redact by value (see :data:`MIN_LITERAL`)."""
    return tuple(v for v in values if v and len(v) >= MIN_LITERAL)
