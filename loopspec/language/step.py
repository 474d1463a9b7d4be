"""The step record: what one decision does, with the tool calls an event carries and their fate."""

from __future__ import annotations

from dataclasses import dataclass

from .actions import Append, Directive
from .alphabet import Event
from .config import Config
from .structure import Transition

CALLS_NONE = "none"
CALLS_COMPLETE = "complete"
CALLS_PARTIAL = "partial"
CALLS_INVALID = "invalid"


def calls_of(source_kind: str, event: Event) -> str:
    """What tool calls an event carries: none, complete (runnable), partial (cut off by a length
    limit or a stall) or invalid (malformed arguments, unknown tool). Decided by the event alone."""
    name = event.name
    if source_kind == "stream":
        if name == "tool_calls":
            return CALLS_COMPLETE
        if name == "length" and event.attrs.get("has_tool_calls"):
            return CALLS_PARTIAL
        if name == "stalled" and event.attrs.get("mid_tool_call"):
            return CALLS_PARTIAL
        if name in ("malformed_args", "unknown_tool"):
            return CALLS_INVALID
    elif source_kind == "stub" and name == "mid_tool_call":
        return CALLS_PARTIAL
    return CALLS_NONE


FATE_RUN = "run"
"""The batch runs: the calls enter the history with their results."""
FATE_REFUSE = "refuse"
"""Each call is answered with the refusal template; none runs."""
FATE_DROP = "drop"
"""The calls never enter the history (partial or invalid calls, ``drop_tool_calls``, or a batch the
tool-batch backstop stopped); the reply's text is kept."""
FATE_IGNORE = "ignore"
"""Complete calls that no action handled and no tool_exec state receives: they are dropped like
``drop`` but the policy never said so, which the ``history_valid`` property reports."""


@dataclass(frozen=True)
class Offer:
    """What the next model request offers, decided by the flags in force when a call is entered."""

    tools: bool
    """Tools are sent (``tools_disabled`` is not set)."""
    tool_choice_auto: bool
    """Send tool_choice 'auto' instead of the caller's forced choice (``tool_choice_reset``)."""
    reasoning: bool
    """Send the reasoning-effort parameter (neither ``effort_omitted`` nor ``reasoning_disabled``)."""
    fallback_model: bool
    max_tokens_boosted: bool
    thinking_stripped: bool

    @classmethod
    def from_flags(cls, flags: frozenset[str]) -> "Offer":
        return cls(
            tools="tools_disabled" not in flags,
            tool_choice_auto="tool_choice_reset" in flags,
            reasoning="effort_omitted" not in flags and "reasoning_disabled" not in flags,
            fallback_model="fallback_model" in flags,
            max_tokens_boosted="max_tokens_boosted" in flags,
            thinking_stripped="thinking_stripped" in flags,
        )


@dataclass(frozen=True, init=False)
class Step:
    """Everything one decision does. The interpreter carries it out and the checker reads it;
    neither decides anything a Step does not say.

    - ``transition`` taken (None: no transition matched, the turn falls into ``policy_error``);
    - ``after``: the configuration entered (counters and flags changed, backstops counted);
    - ``calls`` carried by the event and their ``fate`` (run / refuse with ``refusal`` / drop / ignore);
    - ``directives``: in order, what the interpreter performs outside the configuration (append a
      template as a user message, back off, compact), including the entered state's own entry
      effects (a continue state's prompt, an escalate state's ``apply``, a backstop warning);
    - ``offer``: when a call state is entered, what that request offers (tools, tool_choice,
      reasoning, model, max_tokens, thinking).
    """

    before: Config
    event: Event
    transition: Transition | None
    after: Config
    directives: tuple[Directive, ...]
    redirected_from: str | None = None
    """The transition's own target when a backstop redirected it."""
    calls: str = CALLS_NONE
    fate: str | None = None
    """None when the event carries no tool calls."""
    refusal: str | None = None
    """For ``fate == "refuse"``: the template each call is answered with."""
    offer: Offer | None = None
    """Set when ``after`` is a call state: what that request offers."""
    capped: frozenset[int] = frozenset()
    """Counters (by index) this step increments under cap enforcement: the transition's own
    increments (a transition that would pass a cap is not enabled) and the backstop counted on
    entering a call or tool_exec state (a spent backstop redirects the entry). Increments in an
    escalate state's ``apply`` saturate instead and bound nothing, so they are not listed."""
    resets: frozenset[int] = frozenset()
    """Counters this step sets back to zero (the transition's and the entered escalation's)."""
    measured: frozenset[str] = frozenset()
    """Budget flags this step added on entering a call state (what the interpreter measured and
    the configuration did not hold yet); passing them to ``step`` again repeats the step."""

    def __init__(
        self,
        before: Config,
        event: Event,
        transition: Transition | None,
        after: Config,
        directives: tuple[Directive, ...],
        redirected_from: str | None = None,
        calls: str = CALLS_NONE,
        fate: str | None = None,
        refusal: str | None = None,
        offer: Offer | None = None,
        capped: frozenset[int] = frozenset(),
        resets: frozenset[int] = frozenset(),
        measured: frozenset[str] = frozenset(),
    ) -> None:
        """The fields, set in one dictionary update instead of the frozen dataclass's
        ``object.__setattr__`` per field: a turn builds a Step per decision, the checker one per
        edge it explores, and this halves the cost (``tests/test_record_constructors.py`` holds
        the parameters to the fields)."""
        self.__dict__.update(
            before=before, event=event, transition=transition, after=after, directives=directives,
            redirected_from=redirected_from, calls=calls, fate=fate, refusal=refusal, offer=offer,
            capped=capped, resets=resets, measured=measured,
        )

    @property
    def target(self) -> str:
        return self.after.state

    @property
    def appended(self) -> tuple[str, ...]:
        """The templates this step appends as user messages, in order."""
        return tuple(d.action.template for d in self.directives if isinstance(d.action, Append))
