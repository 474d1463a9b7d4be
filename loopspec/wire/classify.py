"""Map raw provider output to events of the closed alphabet (``loopspec.language.alphabet``).

Pure functions. litellm is never imported here: exceptions are recognised by the class names in
their MRO and by ``status_code``/message, so this module works on real litellm objects while
``loopspec validate``/``check`` stay free of the 2.5 s litellm import. The rules follow the
behaviour measured in ``docs/providers.md`` ("How errors become events": which litellm class each upstream error becomes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import re
import time
from typing import Any, Iterable, Literal, Mapping

from loopspec.wire.assemble import AssembledReply, AssembledToolCall
from loopspec.wire.redaction import redact_text
from loopspec.language.alphabet import Event

__all__ = [
    "classify_reply",
    "classify_exception",
    "arguments_problem",
    "canonical_arguments",
    "canonical_json",
    "parse_tool_arguments",
    "validate_tool_arguments",
    "is_overflow_message",
    "broken_cause",
]

# -- message heuristics ----------------------------------------------------------------------

_OVERFLOW_PHRASES = (
    "context_length_exceeded",
    "context length",
    "context window",
    "maximum context",
    "prompt is too long",
    "too many tokens",
    "token limit",
    "input is too long",
    "reduce the length of the messages",
)
_DISCONNECT_PHRASES = (
    "incomplete chunked read",
    "transferencodingerror",
    "payload is not completed",
    "timed out",
    "timeout",
    "connection",
    "server disconnected",
    "peer closed",
    "remoteprotocolerror",
    "readerror",
    "reset by peer",
    "broken pipe",
)
# Class names litellm/openai splice into messages ("litellm.APIConnectionError: ..."): they
# say nothing about the cause (litellm wraps *every* mid-stream failure as APIConnectionError,
# even an upstream schema error), so they are removed before phrase matching.
_CLASS_NOISE = re.compile(r"(?:api)?connectionerror", re.I)
_RETRY_IN = re.compile(r"try again in (\d+(?:\.\d+)?)\s*(ms|s|sec|seconds?)\b", re.I)


def is_overflow_message(message: str) -> bool:
    """True when a provider message says the prompt/context (or token) limit was hit."""
    m = message.lower()
    return any(p in m for p in _OVERFLOW_PHRASES)


def broken_cause(message: str) -> str:
    """``overflow`` | ``disconnect`` | ``provider_error`` for a mid-stream failure message."""
    if is_overflow_message(message):
        return "overflow"
    m = _CLASS_NOISE.sub(" ", message).lower()
    if any(p in m for p in _DISCONNECT_PHRASES):
        return "disconnect"
    return "provider_error"


# -- tool-call argument checks ----------------------------------------------------------------


def parse_tool_arguments(arguments: str) -> dict | None:
    """The arguments as a dict, or None when they are not a JSON object.

    Empty/whitespace arguments count as ``{}``: providers stream no-argument calls that way
    (Anthropic ``partial_json:""``).
    """
    if not arguments or not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


_JSON_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def _is_json_type(value: Any, name: Any) -> bool:
    """``value`` is of the JSON Schema type ``name``; a type this check does not know admits anything."""
    check = _JSON_TYPES.get(name)
    return True if check is None else bool(check(value))


def _schema_of(spec: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """Accept a bare JSON schema, ``{"parameters": ...}`` or a whole OpenAI tool dict."""
    if not spec:
        return None
    if "function" in spec and isinstance(spec["function"], dict):
        spec = spec["function"]
    if "parameters" in spec and isinstance(spec["parameters"], dict):
        return spec["parameters"]
    return spec


def validate_tool_arguments(arguments: str, spec: Mapping[str, Any] | None) -> str | None:
    """None when the arguments are acceptable, else a short reason.

    Deliberately small (no jsonschema dependency): a JSON object, required keys present,
    top-level property types, and ``additionalProperties: false``. Deeper checks belong to the
    tool itself; this only catches what models actually get wrong when they stream JSON.
    """
    return arguments_problem(parse_tool_arguments(arguments), spec)


def arguments_problem(args: Mapping[str, Any] | None, spec: Mapping[str, Any] | None) -> str | None:
    """:func:`validate_tool_arguments` of arguments already parsed (``None``: not a JSON object),
    for a caller that parsed them once for every reader."""
    if args is None:
        return "arguments are not a JSON object"
    schema = _schema_of(spec)
    if not schema:
        return None
    missing = [k for k in schema.get("required", ()) if k not in args]
    if missing:
        return f"missing required {missing}"
    props = schema.get("properties") or {}
    for key, value in args.items():
        prop = props.get(key)
        if prop is None:
            if schema.get("additionalProperties") is False:
                return f"unexpected property {key!r}"
            continue
        t = prop.get("type") if isinstance(prop, dict) else None
        if t is None:
            continue
        if not (any(_is_json_type(value, tt) for tt in t) if isinstance(t, list) else _is_json_type(value, t)):
            return f"property {key!r} is not {t}"
    return None


def canonical_arguments(args_json: str) -> str:
    """A key-order- and whitespace-insensitive form of tool arguments, for loop detectors.

    Invalid JSON is returned stripped, so identical garbage still compares equal.
    """
    if not args_json or not args_json.strip():
        return "{}"
    try:
        value = json.loads(args_json)
    except ValueError:
        return args_json.strip()
    return canonical_json(value)


def canonical_json(value: Any) -> str:
    """The canonical text of parsed arguments: keys sorted, no whitespace, as they were written."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# -- replies -----------------------------------------------------------------------------------


def _names(calls: list[AssembledToolCall]) -> list[str]:
    return [c.name or "" for c in calls]


def classify_reply(reply: AssembledReply, tools: Mapping[str, Mapping[str, Any] | None]) -> Event:
    """The ``stream`` event for a reply that arrived completely.

    ``tools`` maps each registered tool name to its parameters schema (or None for no check).
    Precedence: length (a cut reply is never executed) > malformed_args > unknown_tool >
    tool_calls > text > thinking_only > empty.
    """
    finish = reply.finish_reason or ""
    text = reply.text
    calls = reply.tool_calls
    has_text = bool(text.strip())
    if finish == "length":
        reasoned = bool(reply.reasoning.strip()) or bool(reply.usage and reply.usage.reasoning_tokens)
        return Event(
            "length",
            {
                "has_tool_calls": bool(calls),
                "dropped_tools": _names(calls),
                "thinking_only": not has_text and not calls and reasoned,
                "chars": len(text),
            },
        )
    if calls:
        malformed = [
            c.name or ""
            for c in calls
            if c.name is not None and c.name in tools and validate_tool_arguments(c.arguments, tools[c.name]) is not None
        ]
        if malformed:
            return Event("malformed_args", {"tools": malformed})
        unknown = [c.name or "" for c in calls if c.name not in tools]
        if unknown:
            return Event("unknown_tool", {"tools": unknown})
        return Event("tool_calls", {"tools": _names(calls), "count": len(calls), "chars": len(text)})
    if has_text:
        return Event("text", {"finish_reason": finish, "chars": len(text)})
    if reply.reasoning.strip() or reply.thinking_blocks:
        return Event("thinking_only", {"finish_reason": finish})
    return Event("empty", {"finish_reason": finish})


# -- exceptions --------------------------------------------------------------------------------

_TRANSIENT_NAMES = frozenset(
    {
        "InternalServerError",
        "ServiceUnavailableError",
        "BadGatewayError",
        "APIConnectionError",
        "ConnectError",
        "RemoteProtocolError",
        "ReadError",
        "ConnectionError",
        "ClientConnectionError",
        "ServerDisconnectedError",
    }
)
_TIMEOUT_NAMES = frozenset({"Timeout", "APITimeoutError", "TimeoutException", "TimeoutError", "ReadTimeout"})
_AUTH_NAMES = frozenset({"AuthenticationError", "PermissionDeniedError"})


def _message_of(exc: BaseException) -> str:
    msg = str(exc)
    if not msg:
        msg = str(getattr(exc, "message", "") or "") or type(exc).__name__
    return msg


def _status_of(exc: BaseException) -> int:
    for obj in (exc, getattr(exc, "response", None)):
        s = getattr(obj, "status_code", None)
        try:
            if s is not None:
                return int(s)
        except (TypeError, ValueError):
            pass
    return 0


def _parse_retry_after(value: Any) -> float | None:
    if value is None:
        return None
    s = str(value).strip()
    try:
        return max(0.0, float(s))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(s)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _retry_after(exc: BaseException, message: str) -> float:
    """Seconds to wait: ``retry-after-ms``/``retry-after`` headers (error headers, then the
    response's), else OpenAI's "Please try again in 20s" in the message, else 0."""
    sources = (
        getattr(exc, "headers", None),
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    )
    for headers in sources:
        if not headers:
            continue
        try:
            get = headers.get
        except AttributeError:
            continue
        ms = get("retry-after-ms") or get("Retry-After-Ms")
        if ms is not None:
            v = _parse_retry_after(ms)
            if v is not None:
                return v / 1000.0
        v = _parse_retry_after(get("retry-after") or get("Retry-After"))
        if v is not None:
            return v
    m = _RETRY_IN.search(message)
    if m:
        n = float(m.group(1))
        return n / 1000.0 if m.group(2).lower() == "ms" else n
    return 0.0


_ERROR_CODE = re.compile(r"""['"]code['"]\s*:\s*['"]([A-Za-z0-9_.-]+)['"]""")


def error_code(message: str) -> str:
    """The provider's error code (``insufficient_quota``, ``rate_limit_exceeded``...) when the
    message carries one, so a policy can halt on a 429 that no retry will fix."""
    m = _ERROR_CODE.search(message)
    return m.group(1) if m else ""


def _call_event(name: str, status: int, message: str, retry_after: float = 0.0) -> Event:
    return Event(
        name,
        {"status": status, "message": message, "retry_after": retry_after, "code": error_code(message),
         "wait_too_long": False},  # the engine judges it against the policy (alphabet.judge_wait)
    )


def _is_effort_message(m: str) -> bool:
    return (
        "reasoning_effort" in m
        or "reasoning effort" in m
        or "effort level" in m
        or ("unsupported parameter" in m and "effort" in m)
        or ("does not support" in m and "effort" in m)
    )


def classify_exception(exc: BaseException, *, phase: Literal["call", "stream"], secrets: Iterable[str] = ()) -> Event:
    """The event for an exception raised while opening (``call``) or consuming (``stream``).

    Stream-phase failures are always ``broken`` (the stream alphabet has no rate_limit etc.);
    call-phase failures map to the call alphabet by litellm class name and HTTP status.
    The event's ``message`` is redacted (:mod:`loopspec.wire.redaction`, plus the literal
    ``secrets``, e.g. the request's API key): an error body that echoes a key must not reach the
    halt message, the consumers, the trace or ``--json``. Classification reads the raw text.
    """
    return redact_message(_classify_exception(exc, phase=phase), secrets)


def redact_message(event: Event, secrets: Iterable[str] = ()) -> Event:
    """``event`` with its ``message`` attribute redacted (the same event when nothing changes)."""
    message = event.attrs.get("message")
    if not isinstance(message, str):
        return event
    clean = redact_text(message, secrets)
    return event if clean == message else dataclasses.replace(event, attrs={**event.attrs, "message": clean})


def _classify_exception(exc: BaseException, *, phase: Literal["call", "stream"]) -> Event:
    if isinstance(exc, asyncio.CancelledError):
        return Event("cancelled", {})
    carried = getattr(exc, "event", None)
    if isinstance(carried, Event):  # ProviderError / StreamBroken: already classified
        return carried
    names = {c.__name__ for c in type(exc).__mro__}
    message = _message_of(exc)
    original = getattr(exc, "original_exception", None)

    if phase == "stream":
        text = message
        if original is not None:
            text = f"{message} {_message_of(original)}"
        generated = getattr(exc, "generated_content", None) or ""
        return Event(
            "broken",
            {"cause": broken_cause(text), "chars": len(generated), "message": message},
        )

    # A stream that failed before its first chunk arrives as MidStreamFallbackError; what
    # matters is the error it wraps.
    if "MidStreamFallbackError" in names and isinstance(original, BaseException):
        return _classify_exception(original, phase="call")

    status = _status_of(exc)
    m = message.lower()

    # Configuration errors dressed as connection/500 errors: retrying them cannot help
    # (litellm 1.106.2 raises APIConnectionError "No module named 'mcp'" for any tools= call
    # when mcp is missing, and a bare Exception when num_retries needs tenacity).
    if "no module named" in m or "tenacity import failed" in m:
        return _call_event(
            "bad_request",
            status,
            f"configuration error (a Python package litellm needs is missing; install it): {message}",
        )
    if "missing credentials" in m or "api_key client option must be set" in m:
        return _call_event("auth", status, message)

    if "ContextWindowExceededError" in names:
        return _call_event("context_overflow", status or 400, message)
    if "RateLimitError" in names or status == 429:
        return _call_event("rate_limit", 429, message, _retry_after(exc, message))
    if names & _TIMEOUT_NAMES or status == 408:
        return _call_event("timeout", status or 408, message)
    if names & _AUTH_NAMES or status in (401, 403):
        return _call_event("auth", status, message)
    if status == 400 or "BadRequestError" in names or (400 <= status < 500):
        if is_overflow_message(message) and status in (0, 400, 413):
            return _call_event("context_overflow", status, message)
        if _is_effort_message(m):
            return _call_event("effort_unsupported", status, message)
        if "signature" in m and "thinking" in m:
            return _call_event("thinking_signature_invalid", status, message)
        if 400 <= status < 500 or "BadRequestError" in names:
            return _call_event("bad_request", status or 400, message)
    if status >= 500 or names & _TRANSIENT_NAMES or "APIError" in names:
        return _call_event("transient", status, message)
    # a TimeoutError or ConnectionError of any kind was caught above by its MRO's class names
    if isinstance(exc, OSError):
        return _call_event("transient", status, message)
    return _call_event("bad_request", status, f"{type(exc).__name__}: {message}")
