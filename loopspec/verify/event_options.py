"""What one event can be as a recorded interaction: the HTTP errors the classifier maps to each
error event, the recordings (:class:`Option`) a step may use and the facts they leave behind, and
what the classifier observes of an error response or a stream."""

from __future__ import annotations

from loopspec.language.errors import LoopspecError

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from loopspec.wire.assemble import ReplyAssembler
from loopspec.wire.classify import classify_exception, classify_reply
from loopspec.replay.inproc import recorded_error, stream_items
from loopspec.replay.interactions import ErrorResponse, Interaction, StreamResponse
from loopspec.replay.synth import reply
from loopspec.language.alphabet import Event
from loopspec.language.model import AttrTest



DEFAULT_TOOL = "tool_a"
# The parameters schema of every tool a counterexample cassette registers, and its one user message.
EMPTY_PARAMETERS = {"type": "object", "properties": {}}
REPRODUCE_MESSAGE = {"role": "user", "content": "Reproduce the checker's counterexample."}

# Attributes the semantics itself reads (Policy.step's calls_of), split even when no guard does.
SEMANTIC_ATTRS: dict[tuple[str, str], tuple[str, ...]] = {
    ("stream", "length"): ("has_tool_calls",),
    ("stream", "stalled"): ("mid_tool_call",),
}

# What a provider says to make the classifier emit each call error: the statuses that map to it on
# both transports (litellm turns a 504 into a timeout, the in-process replay into transient), and
# two natural messages (the second for when a guard needs the first one's words absent).
CALL_ERRORS: dict[str, tuple[tuple[int, ...], Callable[[int], bool], tuple[str, str], str]] = {
    "rate_limit": ((429,), lambda s: s == 429, ("Rate limit reached for requests", "Too many requests"), "requests"),
    "transient": (
        (503, 500, 502, 529),
        lambda s: 500 <= s <= 599 and s != 504,
        ("The engine is currently overloaded, please try again later", "Internal server error"),
        "server_error",
    ),
    "timeout": ((408,), lambda s: s == 408, ("Request timed out", "The request took too long"), "timeout"),
    "context_overflow": (
        (400, 413),
        lambda s: s in (400, 413),
        ("This model's maximum context length is 128000 tokens.", "The prompt is too long for this model"),
        "invalid_request_error",
    ),
    "auth": ((401, 403), lambda s: s in (401, 403), ("Incorrect API key provided", "Permission denied"), "invalid_request_error"),
    "bad_request": ((400, 404, 422), lambda s: _client_status(s), ("Invalid value for 'temperature'", "Malformed request"), "invalid_request_error"),
    "effort_unsupported": (
        (400, 422),
        lambda s: _client_status(s),
        ("Unsupported parameter: 'reasoning_effort' is not supported with this model.", "This model does not support reasoning effort"),
        "invalid_request_error",
    ),
    "thinking_signature_invalid": (
        (400, 422),
        lambda s: _client_status(s),
        ("Invalid signature in thinking block", "The thinking block signature is invalid"),
        "invalid_request_error",
    ),
}


def _client_status(s: int) -> bool:
    return 400 <= s <= 499 and s not in (401, 403, 408, 409, 429)


# What litellm prefixes to a provider's message (the HTTP transport); guards are judged on both.
HTTP_CALL_PREFIX = "litellm.APIError: APIError: OpenAIException - "
HTTP_STREAM_PREFIX = "litellm.MidStreamFallbackError: litellm.APIConnectionError: APIConnectionError: OpenAIException - "
HTTP_DISCONNECT = (
    HTTP_STREAM_PREFIX + "Response payload is not completed: <TransferEncodingError: 400, message='Not enough data "
    "to satisfy transfer length header.'>"
)
_SAFE_WORD = re.compile(r"^[ -!#-\[\]-~]+$")  # printable ASCII without quotes or backslashes: JSON leaves it alone
# An error code a guard compares with that a recorded error body can carry as it is.
CODE_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class NotReplayable(LoopspecError):
    """The counterexample cannot be recorded as a cassette that reproduces it; says why."""


# --------------------------------------------------------------------------- options


def freeze_attrs(attrs: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Event attributes as a hashable, sorted tuple (lists become tuples), to keep in :class:`Facts`."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in attrs.items()))


def thaw_attrs(frozen: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """The attributes :func:`freeze_attrs` froze, as an event carries them."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in frozen}


@dataclass(frozen=True)
class Result:
    """One tool call's recorded answer (``content`` None: a unique one is made up), and the
    arguments of the call it answers."""

    tool: str
    ok: bool
    content: str | None = None
    args: str = "{}"


@dataclass(frozen=True)
class Option:
    """One way the outside world can make a step happen: the attributes the classifier (or the
    interpreter) then reports, and what the cassette records for it."""

    attrs: Mapping[str, Any]
    alt: Mapping[str, Any] | None = None
    """The attributes as the HTTP transport reports them, when they differ (litellm's messages)."""
    interaction: Interaction | None = None
    text: bool | None = None
    """After this step, the reply ``response`` holds has visible text (None: unchanged)."""
    stub: tuple[Any, ...] | None = None
    """What a stub state built after this reply emits: (event, frozen attrs, has visible text)."""
    calls: tuple[str, ...] = ()
    """The complete tool calls of this reply."""
    tools: tuple[str, ...] = ()
    """Tool names the cassette must register for this reply."""
    results: tuple[Result, ...] = ()
    guard: str | None = None
    """tool_exec: the guardrail code this option makes fire (with the batches before it)."""
    approval: str | None = None
    """tool_exec: the tool that needs approval."""


@dataclass(frozen=True)
class Facts:
    """What the run so far leaves behind that later events depend on."""

    text: bool = False
    """The reply ``response`` holds has visible text."""
    stub: tuple[Any, ...] = ("mid_text", (("chars", 0),), False)
    """What a stub state would emit now (the last stream's assembler)."""
    calls: tuple[str, ...] = ()
    """Complete tool calls pending for the next tool_exec state."""
    escalation: str = "done"
    """What the escalate state just entered reports: done, failed:<message>, or either (compaction)."""


def filler_text(n: int, natural: str) -> str:
    """A reply text of ``n`` characters: ``natural`` when it has that length, filler otherwise."""
    if n == len(natural):
        return natural
    return ("Done and more. " * (n // 15 + 1))[:n]


def candidate_lengths(consts: list[Any], natural: int, lo: int) -> list[int]:
    """Lengths worth trying for a text whose guards compare with ``consts``: the natural one and
    the integers next to each numeric constant, within ``lo``..4000."""
    out = [natural]
    for c in consts:
        if isinstance(c, (int, float)) and not isinstance(c, bool):
            for v in (math.floor(c) - 1, math.floor(c), math.ceil(c), math.ceil(c) + 1):
                out.append(int(v))
    return [v for v in dict.fromkeys(out) if lo <= v <= 4000]


def attr_constants(atoms: Sequence[AttrTest], name: str) -> list[Any]:
    """The values the guards ``atoms`` compare the attribute ``name`` with (an ``in`` list's members
    included)."""
    out: list[Any] = []
    for a in atoms:
        if a.attr != name:
            continue
        if a.op == "in":
            out.extend(a.value or ())
        elif a.value is not None:
            out.append(a.value)
    return out


def attr_words(atoms: Sequence[AttrTest], name: str) -> list[str]:
    """The guards' string constants for ``name`` that a JSON message can carry verbatim."""
    return [c for c in dict.fromkeys(attr_constants(atoms, name)) if isinstance(c, str) and c and _SAFE_WORD.match(c)]


def tool_name_lists(atoms: Sequence[AttrTest], natural: str) -> list[list[str]]:
    """Tool-name lists for a reply's calls: the natural one, the guards' names, the guards' counts."""
    lists: list[list[str]] = [[natural]]
    for c in attr_constants(atoms, "tools"):
        if isinstance(c, str) and c:
            lists += [[c], [natural, c]]
        elif isinstance(c, (list, tuple)) and c and all(isinstance(x, str) and x for x in c):
            lists.append(list(c))
    pool = [natural] + [f"{natural}_{i}" for i in range(2, 9)]
    for n in candidate_lengths(attr_constants(atoms, "count"), 1, 1):
        lists.append(pool[: min(n, len(pool))])
    out: list[list[str]] = []
    for lst in lists:
        if lst not in out:
            out.append(lst)
    return out


def observe_error(resp: ErrorResponse) -> Event:
    """The call event the classifier makes of a recorded HTTP error (as in-process replay does)."""
    return classify_exception(recorded_error(resp.status, resp.body, resp.headers), phase="call")


@dataclass(frozen=True)
class Observed:
    event: Event
    text: bool
    stub: tuple[Any, ...]
    calls: tuple[str, ...]


def observe_stream(resp: StreamResponse, schemas: Mapping[str, Any], stall_timeout: float) -> Observed:
    """The stream event the interpreter makes of a recorded response, and what a stub built right
    after it would say (the ``stream`` and ``stub`` effects, in virtual time)."""
    asm = ReplyAssembler()
    event: Event | None = None
    for item in stream_items(resp):
        if item.pause >= stall_timeout:
            event = Event("stalled", {"chars": asm.chars, "mid_tool_call": asm.in_tool_call})
            break
        if item.broken is not None:
            event = item.broken.with_chars(asm.chars).event
            break
        asm.feed(item.delta)
    got = asm.result()
    if event is None:
        event = classify_reply(got, schemas)
    if asm.in_tool_call or got.tool_calls:
        stub = ("mid_tool_call", freeze_attrs({"chars": asm.chars, "cut_tools": asm.cut_tool_names()}))
    else:
        stub = ("mid_text", freeze_attrs({"chars": asm.chars}))
    text = bool(got.text.strip())
    return Observed(event, text, (stub[0], stub[1], text), tuple(c.name or "" for c in got.tool_calls))
