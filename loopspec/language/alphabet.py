"""The closed vocabulary of the policy language: state kinds, their events, event attributes,
halt outcomes, call-condition flags and template variables.

Everything a policy may name that is not declared in the policy itself is listed here, once. The
validator, the compiled model, the checker's adversary, the JSON Schema and the language reference
all read these tables, so adding an event means editing one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

AttrType = Literal["bool", "int", "str", "list", "float"]


@dataclass(frozen=True)
class Attr:
    """One attribute an event carries. ``values`` closes a ``str`` attribute to an enumeration."""

    name: str
    type: AttrType
    doc: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class EventSpec:
    name: str
    doc: str
    attrs: tuple[Attr, ...] = ()

    def attr(self, name: str) -> Attr | None:
        for a in self.attrs:
            if a.name == name:
                return a
        return None


@dataclass(frozen=True)
class KindSpec:
    name: str
    doc: str
    events: tuple[EventSpec, ...]

    def event(self, name: str) -> EventSpec | None:
        for e in self.events:
            if e.name == name:
                return e
        return None

    @property
    def event_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.events)


@dataclass(frozen=True)
class Event:
    """An observation an effect emits: a name from its kind's alphabet plus attributes."""

    name: str
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def get(self, attr: str, default: Any = None) -> Any:
        return self.attrs.get(attr, default)


_STATUS = Attr("status", "int", "HTTP status of the provider error (0 when there was none)")
_MESSAGE = Attr("message", "str", "provider error message, as received")
_RETRY_AFTER = Attr("retry_after", "float", "seconds the provider asked us to wait (0 when absent)")
_CODE = Attr("code", "str", "provider error code when given (e.g. insufficient_quota), else ''")
_WAIT_TOO_LONG = Attr(
    "wait_too_long", "bool", "retry_after asks for longer than the policy's backoff.max_wait (no backoff will wait that long)"
)
_ERROR_ATTRS = (_STATUS, _MESSAGE, _RETRY_AFTER, _CODE, _WAIT_TOO_LONG)
_FINISH = Attr("finish_reason", "str", "finish_reason reported by the provider")
_CHARS = Attr("chars", "int", "characters of visible text received")
_TOOLS = Attr("tools", "list", "names of the tool calls concerned")
_TOOL = Attr("tool", "str", "name of the tool the guardrail fired on")
_VERDICT = Attr(
    "verdict", "str", "what the detector asks for", values=("warn", "correct", "halt")
)
_CUT_TOOLS = Attr("cut_tools", "list", "names of tool calls whose arguments were cut off")

CALL = KindSpec(
    "call",
    "Issue a model request with the current call conditions; waits for the response to open.",
    (
        EventSpec("opened", "the provider accepted the request and the response began"),
        EventSpec("rate_limit", "HTTP 429 or a provider rate-limit error", _ERROR_ATTRS),
        EventSpec("transient", "5xx, overloaded (529), refused or dropped connection", _ERROR_ATTRS),
        EventSpec("timeout", "no response headers within the request timeout", _ERROR_ATTRS),
        EventSpec("context_overflow", "the prompt does not fit the model's context window", _ERROR_ATTRS),
        EventSpec("auth", "401/403: missing or invalid credentials", _ERROR_ATTRS),
        EventSpec("bad_request", "any other 4xx the request itself caused", _ERROR_ATTRS),
        EventSpec("effort_unsupported", "the model rejected the reasoning-effort parameter", _ERROR_ATTRS),
        EventSpec(
            "thinking_signature_invalid",
            "the provider rejected replayed thinking blocks (bad signature)",
            _ERROR_ATTRS,
        ),
        EventSpec("cancelled", "the caller cancelled the turn while the request was pending"),
    ),
)

STREAM = KindSpec(
    "stream",
    "Consume the response; detect stalls (inter-chunk timeout) and classify what arrived.",
    (
        EventSpec("text", "a complete answer with visible text and no tool calls", (_FINISH, _CHARS)),
        EventSpec(
            "tool_calls",
            "one or more complete, well-formed tool calls to known tools",
            (_TOOLS, Attr("count", "int", "number of tool calls"), _CHARS),
        ),
        EventSpec(
            "length",
            "finish_reason 'length': the reply was cut at the output-token limit",
            (
                Attr("has_tool_calls", "bool", "tool calls were being written when the cut came"),
                Attr("dropped_tools", "list", "names of the truncated tool calls (always dropped)"),
                Attr("thinking_only", "bool", "all output was reasoning; no visible text"),
                _CHARS,
            ),
        ),
        EventSpec("empty", "the reply had no text, no reasoning and no tool calls", (_FINISH,)),
        EventSpec("thinking_only", "the reply had reasoning but no text and no tool calls", (_FINISH,)),
        EventSpec(
            "malformed_args",
            "a tool call's arguments are not valid JSON or not valid for its schema",
            (_TOOLS,),
        ),
        EventSpec("unknown_tool", "the model called a tool that is not registered", (_TOOLS,)),
        EventSpec(
            "stalled",
            "no chunk arrived within the stall timeout; what arrived so far is kept for the stub",
            (_CHARS, Attr("mid_tool_call", "bool", "a tool call's arguments were being streamed")),
        ),
        EventSpec(
            "broken",
            "the stream failed after it opened (provider error event, dropped connection)",
            (
                Attr(
                    "cause",
                    "str",
                    "why it broke",
                    values=("overflow", "disconnect", "provider_error"),
                ),
                _CHARS,
                _MESSAGE,
            ),
        ),
        EventSpec("cancelled", "the caller cancelled the turn mid-stream"),
    ),
)

STUB = KindSpec(
    "stub",
    "Build a partial-stream stub from what arrived before a stall: text kept, partial tool calls dropped.",
    (
        EventSpec("mid_text", "the stream stalled inside visible text (or before any)", (_CHARS,)),
        EventSpec("mid_tool_call", "the stream stalled inside a tool call's arguments", (_CHARS, _CUT_TOOLS)),
    ),
)

CONTINUE = KindSpec(
    "continue",
    "Keep the partial assistant text in the history and append the state's continuation prompt.",
    (EventSpec("done", "the continuation prompt was appended"),),
)

TOOL_EXEC = KindSpec(
    "tool_exec",
    "Validate, approve and run the batch of tool calls; answer each call exactly once.",
    (
        EventSpec("ok", "every call ran and returned a result", (_TOOLS,)),
        EventSpec("failed", "at least one call raised; its error became the result the model sees", (_TOOLS,)),
        EventSpec(
            "repeated_exact_failure",
            "the same call (tool and canonical arguments) failed again with the same result",
            (_TOOL, _VERDICT),
        ),
        EventSpec("same_tool_failure", "one tool keeps failing whatever its arguments", (_TOOL, _VERDICT)),
        EventSpec(
            "no_progress",
            "identical calls keep returning identical results (a poll whose result changes is progress)",
            (_TOOL, _VERDICT),
        ),
        EventSpec(
            "doom_loop",
            "the batch repeats a cycle of period 1-5 of identical calls with identical results",
            (_TOOL, _VERDICT, Attr("period", "int", "length of the detected cycle"))),
        EventSpec("approval_required", "a call needs human approval before it may run", (_TOOL,)),
        EventSpec(
            "interrupted_tool",
            "a resumed turn: a call had started before the process stopped and has no answer, so it "
            "may or may not have completed; it was answered so and not run again (a state that does "
            "not handle this event sees `failed`)",
            (Attr("tools", "list", "names of the interrupted calls"),),
        ),
        EventSpec(
            "timeout",
            "a call outlived settings.tool_timeout or the batch settings.tool_batch_timeout; each call "
            "still running was answered 'timed out'",
            (Attr("tools", "list", "names of the calls that timed out"),),
        ),
        EventSpec("cancelled", "the caller cancelled the turn while tools ran (or its turn_deadline passed)"),
    ),
)

ESCALATE = KindSpec(
    "escalate",
    "Change the conditions of the next call (its `apply` actions); compaction may fail.",
    (
        EventSpec("done", "the escalation took effect"),
        EventSpec(
            "failed",
            "the escalation could not take effect (nothing left to compact, no fallback model)",
            (_MESSAGE,),
        ),
    ),
)

OPTIONAL_EVENTS: dict[str, str] = {"interrupted_tool": "failed"}
"""Events a state need not handle, and the event a state that does not handle one sees instead.

They come from features a policy may not use (a resumed turn), so a policy written before them keeps
its meaning: :meth:`Policy.step` turns an unhandled optional event into its fallback, and the
checker explores the optional event only in the states that handle it."""

HALT = KindSpec(
    "halt",
    "End the turn with an outcome and a message delivered to every consumer. Text the consumers saw from a "
    "stream that no reply kept (cut by a cancel, the deadline or a broken connection) stays in the history, "
    "before the message (or as the start of a message that continues it, such as `{response}`).",
    (),
)

KINDS: dict[str, KindSpec] = {
    k.name: k for k in (CALL, STREAM, STUB, CONTINUE, TOOL_EXEC, ESCALATE, HALT)
}

OUTCOMES: dict[str, str] = {
    "completed": "the model answered",
    "truncated": "the answer was cut off and the continuation budget ran out",
    "stalled": "the stream stalled and could not be recovered",
    "backstop": "a global backstop (model calls or tool batches) ended the turn",
    "guardrail": "a tool-loop guardrail ended the turn",
    "empty": "the model kept answering with nothing visible",
    "malformed": "the model kept writing malformed tool calls",
    "tools_disabled": "the model asked for tools after tools were disabled for the turn",
    "rate_limited": "the provider kept rate-limiting the request",
    "quota_exhausted": "the provider account's quota or billing limit is reached; no retry helps",
    "provider_error": "the provider kept failing",
    "context_exceeded": "the context stayed over the window after compaction",
    "auth_failed": "credentials were missing or rejected",
    "bad_request": "the provider rejected the request",
    "approval_required": "a tool call waits for human approval",
    "cancelled": "the caller cancelled the turn",
    "tool_timeout": "tool calls kept outliving the policy's tool timeouts",
    "tool_budget": "the tool-batch backstop was spent; the turn ended on the next reply, without tools",
    "budget": "a usage budget (tokens, cost or working time) was spent",
    "policy_error": "the policy had no transition for an event (the checker reports this statically)",
}

# Flags the interpreter reads when it builds a request. A policy may set and clear them like its own
# flags; the named actions below are shorthands for doing so.
CALL_FLAGS: dict[str, str] = {
    "tools_disabled": "send no tools (and no tool_choice) with the next calls",
    "reasoning_disabled": "send the next call with reasoning off; cleared when a call is made",
    "max_tokens_boosted": "send the next calls with the boosted max_tokens from settings",
    "fallback_model": "send the next calls to settings.fallback_model",
    "thinking_stripped": "drop replayed thinking blocks from the history sent to the model",
    "tool_choice_reset": "send tool_choice 'auto' instead of any forced choice",
    "effort_omitted": "send no reasoning_effort parameter (the model rejected it)",
    "wrap_up_entered": "set on entering the model_calls wrap_up state; lets the reserved last call through",
}

# Flags consumed by the call they affect: entering a `call` state clears them.
ONCE_FLAGS: frozenset[str] = frozenset({"reasoning_disabled"})

FLAG_SHORTHANDS: dict[str, tuple[str, bool]] = {
    "disable_tools": ("tools_disabled", True),
    "enable_tools": ("tools_disabled", False),
    "disable_reasoning_once": ("reasoning_disabled", True),
    "boost_max_tokens": ("max_tokens_boosted", True),
    "switch_model": ("fallback_model", True),
    "strip_thinking": ("thinking_stripped", True),
    "reset_tool_choice": ("tool_choice_reset", True),
    "omit_effort": ("effort_omitted", True),
}

BACKSTOPS: dict[str, str] = {
    "model_calls": "model requests in one turn; entering a `call` state counts one",
    "tool_batches": "tool batches in one turn; entering a `tool_exec` state counts one",
}
BACKSTOP_KIND: dict[str, str] = {"model_calls": "call", "tool_batches": "tool_exec"}

BUDGETS: dict[str, str] = {
    "input_tokens": "prompt tokens the provider reported, summed over the turn's model calls",
    "output_tokens": "completion tokens the provider reported (reasoning included), summed",
    "reasoning_tokens": "reasoning tokens the provider reported, summed",
    "cost": "US dollars: litellm's local cost map on the live path, the cassette's figure in replay",
    "working_time": "seconds the turn has run, rate-limit and backoff waits excluded",
}
"""Usage budgets (the ``budgets:`` section): amounts measured when the turn is about to make a
model call; reaching ``max`` redirects the call like a spent backstop."""
BUDGET_KEYS = ("max", "exhausted", "wrap_up", "warn_at", "warning", "min_per_call", "doc")
BUDGET_LEVELS: dict[str, str] = {
    "warned": "set when a model call is entered and the budget's amount has reached warn_at",
    "reached": "set when a model call is entered and the budget's amount has reached max",
    "wrap_up_entered": "set on entering the budget's wrap_up state; lets its one last call through",
    "last_call": "set on entering that last call: the next call entry goes to exhausted",
}
COST_UNKNOWN_FLAG = "cost_unknown"
"""Set when a model call is entered after a reply whose cost the cost map does not know (policies
with a ``cost`` budget only); the cost amount was not incremented for that reply."""


def budget_flag(budget: str, level: str) -> str:
    """The built-in flag that says a budget reached ``level`` (see BUDGET_LEVELS), e.g. cost_reached."""
    return f"{budget}_{level}"


def budget_flags(budget: str) -> tuple[str, ...]:
    """Every built-in flag a declared budget adds (cost adds cost_unknown too)."""
    extra = (COST_UNKNOWN_FLAG,) if budget == "cost" else ()
    return tuple(budget_flag(budget, lv) for lv in BUDGET_LEVELS) + extra

MAX_WAIT = "max_wait"
"""The one key of ``backoff`` that is not a schedule: the longest a backoff waits, in seconds."""

# Variables every template may use, besides the attributes of any event.
TEMPLATE_GLOBALS: dict[str, str] = {
    "response": "the visible text of the last model reply",
    "model_calls": "model calls made so far in the turn",
    "tool_batches": "tool batches run so far in the turn",
    "max_model_calls": "the model-call backstop",
    "max_tool_batches": "the tool-batch backstop",
    "event": "the name of the event that led here",
    "guardrail": "the guardrail code that fired (same as event for tool_exec guardrails)",
    "max_wait": "the longest wait a backoff makes (backoff.max_wait)",
    "reason": "a short typed reason for a provider failure, e.g. 'server error, HTTP 503' (the raw "
    "error text is the event's `message`, kept in the result for logs)",
}

# Short, typed phrases for the failures a halt message may name; see reason_of.
FAILURE_REASONS: dict[str, str] = {
    "rate_limit": "rate limited",
    "transient": "server error",
    "timeout": "timed out",
    "context_overflow": "context window exceeded",
    "auth": "credentials rejected",
    "bad_request": "request rejected",
    "effort_unsupported": "reasoning effort not supported",
    "thinking_signature_invalid": "thinking signature rejected",
    "broken": "the stream broke",
}


def reason_of(event: Event) -> str:
    """A one-line reason for a failure event, built from its typed attributes only (event name,
    HTTP status, error code, cause), never from the provider's raw message, which can be a whole
    exception chain."""
    base = FAILURE_REASONS.get(event.name)
    if base is None:
        return event.name.replace("_", " ")
    details = []
    if event.attrs.get("cause"):
        details.append(str(event.attrs["cause"]).replace("_", " "))
    if event.attrs.get("status"):
        details.append(f"HTTP {event.attrs['status']}")
    if event.attrs.get("code"):
        details.append(str(event.attrs["code"]))
    return f"{base}, {', '.join(details)}" if details else base


WAIT_TOO_LONG = "wait_too_long"


def judge_wait(event: Event, max_wait: float) -> Event:
    """``event`` with ``wait_too_long`` decided: its ``retry_after`` against the policy's
    ``backoff.max_wait`` (absent or not a number: False).

    ``wait_too_long`` is the one DERIVED attribute: the classifier knows what the provider asked,
    only the policy knows how long it waits. The interpreter applies this to every call event, and
    the checker treats a guard on ``wait_too_long`` as the same test on ``retry_after``, so the two
    attributes are never judged independently."""
    spec = KINDS["call"].event(event.name)
    if spec is None or not any(a.name == WAIT_TOO_LONG for a in spec.attrs):
        return event
    asked = event.attrs.get("retry_after")
    too_long = isinstance(asked, (int, float)) and not isinstance(asked, bool) and asked > max_wait
    return Event(event.name, {**event.attrs, WAIT_TOO_LONG: too_long})


def all_attribute_names() -> set[str]:
    return {a.name for k in KINDS.values() for e in k.events for a in e.attrs}


def template_variables() -> set[str]:
    return set(TEMPLATE_GLOBALS) | all_attribute_names()


# --------------------------------------------------------------------------- the policy file's words

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
"""A declared name (state, counter, flag, template, backoff schedule): lower_snake_case."""

SUPPORTED_VERSION = 1
"""The language version this loopspec reads (``loopspec: 1``)."""

TOP_KEYS = (
    "loopspec",
    "name",
    "doc",
    "initial",
    "settings",
    "backoff",
    "backstops",
    "budgets",
    "guardrails",
    "counters",
    "flags",
    "templates",
    "approvals",
    "states",
)
STATE_KEYS: dict[str, tuple[str, ...]] = {
    "call": ("kind", "doc", "on"),
    "stream": ("kind", "doc", "on"),
    "stub": ("kind", "doc", "on"),
    "continue": ("kind", "doc", "on", "prompt"),
    "tool_exec": ("kind", "doc", "on"),
    "escalate": ("kind", "doc", "on", "apply"),
    "halt": ("kind", "doc", "outcome", "message"),
}
TRANSITION_KEYS = ("when", "do", "to", "bounded_by", "doc")
SETTINGS_KEYS: dict[str, tuple[type, ...]] = {
    "stall_timeout": (int, float),
    "request_timeout": (int, float),
    "max_tokens": (int,),
    "boosted_max_tokens": (int,),
    "fallback_model": (str,),
    "compaction_keep_last": (int,),
    "reasoning_effort": (str,),
    "turn_deadline": (int, float),
    "tool_timeout": (int, float),
    "tool_batch_timeout": (int, float),
    "max_message_bytes": (int,),
}
SECONDS_SETTINGS = ("stall_timeout", "request_timeout", "turn_deadline", "tool_timeout", "tool_batch_timeout")
"""Settings that are waits: finite seconds, more than 0 and at most MAX_SECONDS."""
MAX_SECONDS = 86400
"""The longest wait a policy may state (a backoff delay, max_wait, a timeout): one day."""
COUNTER_KEYS = ("max", "doc")
FLAG_KEYS = ("doc",)
BACKSTOP_KEYS = ("max", "exhausted", "wrap_up", "warn_at", "warning", "doc")
GUARDRAIL_KEYS = ("threshold", "verdict", "max_period", "doc")
GUARDRAIL_CODES = ("repeated_exact_failure", "same_tool_failure", "no_progress", "doom_loop")
VERDICTS = ("allow", "warn", "correct", "halt")

COMPARATORS = ("lt", "le", "eq", "ne", "ge", "gt")
"""Comparison operators of counter and attr guards."""
ATTR_OPS = ("in", "contains", *COMPARATORS)
"""What an attr guard may test besides truthiness."""
GUARD_FORMS = ("all", "any", "not", "counter", "flag", "attr")
"""A guard mapping has exactly one of these keys."""

ACTIONS_WITH_ARG = ("increment", "reset", "set", "clear", "append", "nudge", "backoff", "refuse_tools")
"""Actions written ``{name: ARG}``."""
ACTIONS_WITHOUT_ARG = ("drop_tool_calls", "compact")
"""Actions written as a bare name (so are the flag shorthands)."""
ACTION_NAMES = (
    "increment",
    "reset",
    "set",
    "clear",
    "append",
    "nudge",
    "drop_tool_calls",
    "backoff",
    "compact",
    "refuse_tools",
    *FLAG_SHORTHANDS,
)
ACTION_KEYS: dict[str, tuple[str, ...]] = {"backoff": ("backoff", "attempt"), "increment": ("increment", "by")}
"""Actions that take a second key besides their name."""
