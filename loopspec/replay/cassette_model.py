"""Cassettes: everything the outside world said during one turn, as a versioned YAML file.

A cassette holds the initial messages and tool schemas, each model response (recorded SSE, chunk
JSON, or a built reply) with optional stall and disconnect, provider errors, tool results, and
optional expectations. A bad cassette gets ``file:line:col`` diagnostics like a bad policy.

This module holds the model (the dataclasses and the format's key lists). Reading and checking a
file is :mod:`.cassette_reader`, writing one is :mod:`.cassette_writer`; :mod:`.cassette` gathers
all three for callers.
"""

from __future__ import annotations

from loopspec.language.errors import DiagnosticError

from dataclasses import dataclass, field
from typing import Any

from loopspec.language.properties import RUN_PROPERTIES

from .interactions import Interaction

CASSETTE_VERSION = 1
TOP_KEYS = (
    "loopspec_cassette", "name", "doc", "source", "model", "request", "messages", "tools", "interactions",
    "tool_results", "cancel", "expect", "trace",
)
INTERACTION_FORMS = ("sse", "sse_file", "chunks", "reply", "error", "completion")
FAULT_KEYS = ("stall_after", "stall_seconds", "keepalive", "pauses", "disconnect_after")
PAUSE_KEYS = ("after", "seconds", "keepalive")
INTERACTION_KEYS = (*INTERACTION_FORMS, *FAULT_KEYS, "when_no_tools", "doc")
REPLY_KEYS = ("text", "reasoning", "tool_calls", "finish", "usage")
USAGE_KEYS = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "cost")
REQUEST_KEYS = ("tool_choice", "reasoning_effort", "max_tokens", "extra")
CANCEL_KEYS = ("before_call", "during_call", "after_chunks", "during_tool", "during_backoff")
CANCEL_POINTS = ("before_call", "during_call", "during_tool", "during_backoff")
REQUEST_EXPECT_KEYS = ("index", "tools", "prompt_contains", "tool_choice", "reasoning_effort", "max_tokens", "model")
TOOL_RESULT_KEYS = ("tool", "result", "error", "blocks")
EXPECT_KEYS = (
    "outcome",
    "model_calls",
    "tool_batches",
    "final_response_contains",
    "message_contains",
    "message_not_contains",
    "tools_never_ran",
    "counters",
    "elapsed",
    "all_played",
    "requests",
    "properties",
    "max_fires",
)
PROPERTIES = RUN_PROPERTIES
"""The properties a cassette may expect: the built-in properties of one turn, with check's names."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    parameters: dict[str, Any]
    description: str = ""
    needs_approval: bool = False


@dataclass(frozen=True)
class ToolOutcome:
    """One recorded tool result: its text, or the error the tool raised, or (``blocks``) a tool
    that never returns and waits until the turn is cancelled."""

    tool: str
    result: str | None = None
    error: str | None = None
    blocks: bool = False


@dataclass(frozen=True)
class RequestOptions:
    """What the caller passed to the Turn in the recorded run (``request:``): a forced
    tool_choice, a reasoning effort, a token limit, extra litellm arguments."""

    tool_choice: Any = None
    reasoning_effort: str | None = None
    max_tokens: int | None = None
    extra: tuple[tuple[str, Any], ...] = ()

    def turn_options(self) -> dict[str, Any]:
        """The Turn keyword arguments these options stand for."""
        out: dict[str, Any] = {}
        for key in ("tool_choice", "reasoning_effort", "max_tokens"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.extra:
            out["extra"] = dict(self.extra)
        return out


@dataclass(frozen=True)
class CancelPoint:
    """Where the caller cancels the turn (``Turn.cancel()``): exactly one of the four points is set.

    ``before_call=N``: as model call N is about to be sent (it never reaches the provider);
    ``during_call=N`` with ``after_chunks=K``: after the K-th chunk of call N's stream;
    ``during_tool=NAME``: once tool NAME starts running; ``during_backoff=N``: as the N-th backoff
    starts waiting."""

    before_call: int | None = None
    during_call: int | None = None
    after_chunks: int = 0
    during_tool: str | None = None
    during_backoff: int | None = None

    def describe(self) -> str:
        if self.before_call is not None:
            return f"before model call {self.before_call}"
        if self.during_call is not None:
            return f"during model call {self.during_call}, after {self.after_chunks} chunks"
        if self.during_tool is not None:
            return f"while tool {self.during_tool} runs"
        return f"during backoff {self.during_backoff}"


@dataclass(frozen=True)
class Bound:
    """An expected number: ``exact``, or at least ``min`` and at most ``max``."""

    exact: float | None = None
    min: float | None = None
    max: float | None = None

    def violation(self, value: float) -> str:
        """'' when ``value`` is within the bound, else what was expected (e.g. 'at most 3')."""
        if self.exact is not None and value != self.exact:
            return f"expected {_num(self.exact)}"
        if self.min is not None and value < self.min:
            return f"expected at least {_num(self.min)}"
        if self.max is not None and value > self.max:
            return f"expected at most {_num(self.max)}"
        return ""

    def to_data(self) -> Any:
        if self.exact is not None:
            return _num(self.exact)
        return {k: _num(v) for k, v in (("min", self.min), ("max", self.max)) if v is not None}


def as_bound(v: int | Bound) -> Bound:
    """An exact count written as a plain number is the bound ``exact``."""
    return v if isinstance(v, Bound) else Bound(exact=v)


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else v


@dataclass(frozen=True)
class RequestExpectation:
    index: int
    """1 = the first request, -1 = the last (negative counts from the end); never 0."""
    tools: str | None = None
    """'present' or 'absent'."""
    prompt_contains: str | None = None
    carries: tuple[tuple[str, Any], ...] = ()
    """(field, value) the request must have carried exactly: tool_choice, reasoning_effort,
    max_tokens, model (``None`` = not sent)."""


@dataclass(frozen=True)
class Expectations:
    outcome: str | None = None
    outcome_any_of: tuple[str, ...] = ()
    """``outcome: {any_of: [...]}``: the outcome is one of these."""
    model_calls: int | Bound | None = None
    """An exact count, or a :class:`Bound` (``{max: N}``)."""
    tool_batches: int | Bound | None = None
    final_response_contains: tuple[str, ...] = ()
    message_contains: tuple[str, ...] = ()
    message_not_contains: tuple[str, ...] = ()
    tools_never_ran: tuple[str, ...] = ()
    counters: tuple[tuple[str, Bound], ...] = ()
    """(counter, bound) on the counter's highest value over the turn."""
    elapsed: Bound | None = None
    """Seconds of the turn's own clock (virtual in-process)."""
    all_played: bool = False
    requests: tuple[RequestExpectation, ...] = ()
    properties: tuple[str, ...] = ()
    max_fires: tuple[tuple[str, int], ...] = ()
    """(transition label, N): that transition fires at most N times in the turn."""

    @property
    def empty(self) -> bool:
        return self == Expectations()


@dataclass(frozen=True)
class RecordedStep:
    """One decision of the recorded run, stored so a replay under an edited policy can say where
    the decisions first parted and which guard made the difference."""

    state: str
    event: str
    target: str
    transition: str | None = None


@dataclass(frozen=True)
class Cassette:
    name: str
    file: str
    messages: tuple[dict[str, Any], ...]
    interactions: tuple[Interaction, ...]
    tools: tuple[ToolSpec, ...] = ()
    tool_results: tuple[ToolOutcome, ...] = ()
    expect: Expectations = field(default_factory=Expectations)
    trace: tuple[RecordedStep, ...] = ()
    model: str = "openai/replay"
    doc: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    request: RequestOptions = field(default_factory=RequestOptions)
    cancel: CancelPoint | None = None


class CassetteError(DiagnosticError):
    """A cassette that does not read; ``diagnostics`` say where and why."""


def plain(v: Any) -> Any:
    """YMap/YList -> dict/list, recursively: a fresh plain copy (cassette payloads are handed to other
    code as JSON, and redaction edits its own copy)."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v
