"""The built-in properties as the checker asks them.

The step properties are defined once, in :mod:`loopspec.spec.properties`, over ``Step`` records;
:func:`monitor_step` runs that definition on the checker's abstract and concrete steps, so a
finding, its counterexample and the replay of that counterexample agree. ``halt_message`` is
decided statically here from each reachable halt's template and the events that reach it.
"""

from __future__ import annotations

from string import Formatter
from typing import TYPE_CHECKING

from ..spec.model import Step
from ..spec.properties import PROPERTY_DOCS, Watch, advance

if TYPE_CHECKING:  # pragma: no cover
    from .abstraction import Analysis

__all__ = ["PROPERTY_DOCS", "message_problem", "monitor_step"]

_WATCHES = (Watch(False), Watch(True))


def monitor_step(an: "Analysis", pending: int, silent: bool, step: Step) -> tuple[int, bool, list[tuple[str, str]]]:
    """Advance the property watch over one step; return (pending, silent, violations).

    ``pending`` is kept for the search nodes' shape and is always 0: since the step itself decides
    the fate of every tool call, nothing is pending between steps."""
    watch, v = advance(an.policy, _WATCHES[silent], step, an.continuation_counters)
    return 0, watch.silent, v


# --------------------------------------------------------------------------- halt messages

_FMT = Formatter()


def message_problem(template: str | None, incoming_events: set[str]) -> str | None:
    """Why a halt message may render empty for some consumer, or None when it never can."""
    text = template or ""
    literal = []
    names = []
    try:
        for lit, name, _spec, _conv in _FMT.parse(text):
            literal.append(lit)
            if name is not None:
                names.append(name)
    except ValueError:
        return f"message template {text!r} does not parse"
    if "".join(literal).strip():
        return None
    if not names:
        return "message is empty: consumers receive nothing between the role and the finish chunk"
    if set(names) == {"response"} and incoming_events and incoming_events <= {"text"}:
        return None
    risky = sorted(set(names))
    return (
        f"message {text!r} has no text of its own and may render empty "
        f"({', '.join(risky)} can be empty when reached by {', '.join(sorted(incoming_events)) or 'the initial state'})"
    )
