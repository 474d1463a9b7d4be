"""The built-in properties as the checker asks them.

The step properties are defined once, in :mod:`loopspec.language.properties`, over ``Step`` records;
:func:`monitor_step` runs that definition on the checker's abstract and concrete steps, so a
finding, its counterexample and the replay of that counterexample agree. ``halt_message`` is
decided statically here from each reachable halt's template and the events that reach it, judged on
what the interpreter really renders (:func:`empty_when`).
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Formatter
from typing import Iterable, Protocol, Sequence

from ..language.alphabet import KINDS
from ..language.model import Policy, Step
from ..language.properties import PROPERTY_DOCS, Watch, advance

__all__ = ["PROPERTY_DOCS", "EmptyWhen", "empty_when", "message_problem", "monitor_step"]

_WATCHES = (Watch(False), Watch(True))


class Monitored(Protocol):
    """What the monitor needs of the checker's analysis (an
    :class:`~loopspec.verify.abstraction.Analysis`); a protocol, so that this module does not
    import the abstraction that imports it."""

    @property
    def policy(self) -> Policy: ...

    @property
    def continuation_counters(self) -> tuple[int, ...]: ...


def monitor_step(an: Monitored, silent: bool, step: Step) -> tuple[bool, list[tuple[str, str]]]:
    """Advance the property watch over one step; return (silent, violations). The step itself
    decides the fate of every tool call, so nothing else is carried between steps."""
    watch, v = advance(an.policy, _WATCHES[silent], step, an.continuation_counters)
    return watch.silent, v


# --------------------------------------------------------------------------- halt messages
#
# A halt's message is rendered by the interpreter (``Turn._variables``) from the attributes of the
# event that entered the halt, plus ``response`` (the visible text of the last reply), ``event``,
# ``guardrail``, the counters and the backstop caps. An absent name renders '' and lists are joined.
# Whether a name can render empty is decided here from what loopspec's classifier and interpreter
# really emit, not from the attribute's type alone.

_FMT = Formatter()

_NEVER_EMPTY_GLOBALS = frozenset({"event", "model_calls", "tool_batches", "max_model_calls", "max_tool_batches"})

_NEVER_EMPTY_ATTRS: dict[str, str] = {
    "message": "the classifier always says why a call, a stream or an escalation failed",
    "finish_reason": "providers always report a finish reason (litellm fills in 'stop')",
    "tool": "a guardrail or an approval always names its tool",
    "cause": "a broken stream always has a cause",
    "verdict": "a guardrail always has a verdict",
}
"""String attributes that are never empty on the events that carry them."""

_LIST_NEVER_EMPTY: frozenset[tuple[str, str]] = frozenset(
    {("tool_calls", "tools"), ("failed", "tools"), ("malformed_args", "tools"), ("unknown_tool", "tools")}
)
"""(event, list attribute) pairs that always name at least one tool call."""


@dataclass(frozen=True)
class EmptyWhen:
    """A halt's message renders empty when the halt is entered on ``event`` from a ``kind`` state,
    provided the listed attributes are empty and (``response``) the last reply had no visible text."""

    kind: str | None
    event: str
    attrs: tuple[str, ...] = ()
    response: bool = False

    def describe(self) -> str:
        if self.kind is None:
            return "the start of the turn (the initial state is this halt)"
        needs = []
        if self.response:
            needs.append("a reply without visible text" if self.event not in _REPLY_CHARS else "chars=0")
        needs += [f"{a}=''" if a == "code" else f"{a}=[]" for a in self.attrs]
        return self.event + (f" ({', '.join(needs)})" if needs else "")


_REPLY_CHARS = frozenset({"tool_calls", "length", "stalled", "broken", "mid_text", "mid_tool_call"})
"""Events whose ``chars`` attribute counts the visible text of the reply ``response`` holds."""


def template_names(template: str | None) -> tuple[bool, tuple[str, ...]]:
    """(the template has visible text of its own, the variable names it uses); ValueError when it
    does not parse."""
    literal: list[str] = []
    names: list[str] = []
    for lit, name, _spec, _conv in _FMT.parse(template or ""):
        literal.append(lit)
        if name is not None:
            names.append(name)
    return bool("".join(literal).strip()), tuple(dict.fromkeys(names))


def empty_when(template: str | None, kind: str | None, event: str) -> EmptyWhen | None:
    """When ``template`` renders empty for a halt entered on ``event`` from a ``kind`` state (None:
    the initial state is the halt), or None when it never does."""
    try:
        own_text, names = template_names(template)
    except ValueError:
        return None
    if own_text:
        return None
    spec = KINDS[kind].event(event) if kind is not None else None
    attrs: list[str] = []
    response = False
    for name in names:
        if name in _NEVER_EMPTY_GLOBALS:
            return None
        if name == "guardrail":
            if spec is not None and spec.attr("verdict") is not None:
                return None
            continue
        if name == "response":
            if kind == "stream" and event == "text":
                return None  # a text reply has visible text by definition
            response = True
            continue
        attr = spec.attr(name) if spec is not None else None
        if attr is None:
            continue  # an absent name renders ''
        if attr.type in ("int", "float", "bool") or name in _NEVER_EMPTY_ATTRS or attr.values:
            return None
        if attr.type == "list" and (event, name) in _LIST_NEVER_EMPTY:
            return None
        attrs.append(name)
    return EmptyWhen(kind, event, tuple(attrs), response)


def message_problem(template: str | None, incoming: Iterable[tuple[str, str]]) -> str | None:
    """Why a halt message may render empty for some consumer, or None when it never can.

    ``incoming`` lists the (source state kind, event) pairs that enter the halt; an empty list
    means the initial state is the halt. The answer names the events (and the attribute values)
    through which the message renders empty."""
    text = template or ""
    try:
        own_text, names = template_names(text)
    except ValueError:
        return f"message template {text!r} does not parse"
    if own_text:
        return None
    if not names:
        return "message is empty: consumers receive nothing between the role and the finish chunk"
    pairs: Sequence[tuple[str | None, str]] = sorted(set(incoming)) or [(None, "start")]
    ways = [w for k, e in pairs if (w := empty_when(text, k, e)) is not None]
    if not ways:
        return None
    return f"message {text!r} has no text of its own and renders empty when the halt is reached by " + ", ".join(
        w.describe() for w in ways
    )
