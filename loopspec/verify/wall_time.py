"""The worst-case wall-clock time of a turn, from the policy alone.

Every wait the engine makes has a bound the policy states: a request opens within
``request_timeout`` or the call emits ``timeout``; a stream that goes silent for ``stall_timeout``
emits ``stalled``; a backoff waits its schedule's delay, lengthened by a Retry-After up to
``backoff.max_wait`` and never further. Termination gives each abstract edge a bound on how often
it fires in a turn, and the model-call backstop bounds the calls, so the sum of those waits over
the worst path is a sound upper bound.

A tool batch is bounded by ``tool_timeout`` (its calls run side by side) and by
``tool_batch_timeout``, when the policy sets them.

Some waits have no bound of their own: a stream that keeps sending content (every chunk resets the
stall timer), a tool batch when no tool timeout is set, and a human's approval. Only
``settings.turn_deadline`` bounds them, since the engine interrupts every wait at the deadline;
without it the turn's wall time is unbounded, and the report says which parts make it so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..language.actions import Backoff
from ..language.alphabet import KINDS
from ..language.model import Policy
from .abstract_graph import Edge, Graph
from .abstraction import Analysis
from .termination import Termination

STREAMING = "a stream that keeps sending content (each chunk restarts the stall timer)"
TOOLS = "tool runs (no tool_timeout or tool_batch_timeout is set)"
APPROVAL = "a human's approval of a tool call"


@dataclass(frozen=True)
class WallTime:
    """A turn's worst-case wall-clock time and the engine's own waits inside it, in seconds."""

    seconds: float | None
    """The bound on the whole turn, or None when nothing bounds it (no ``turn_deadline``)."""
    waits: float
    """The engine's own waits on the worst path: request opens, stall detection, backoffs and, when
    tool timeouts are set, tool runs."""
    parts: dict[str, float] = field(default_factory=dict)
    """``waits`` by kind: ``request_open``, ``stall_detection``, ``backoff``, ``tool_runs``."""
    unbounded: tuple[str, ...] = ()
    """What only the turn deadline bounds; empty when every part has a bound of its own."""
    deadline: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "bounded": self.seconds is not None,
            "waits": self.waits,
            "parts": dict(self.parts),
            "unbounded": list(self.unbounded),
            "turn_deadline": self.deadline,
        }

    def lines(self) -> list[str]:
        """The report's lines: the bound, then what it is made of."""
        parts = ", ".join(f"{k.replace('_', ' ')} {_seconds(v)}" for k, v in self.parts.items())
        if self.seconds is None:
            head = "unbounded (set settings.turn_deadline)"
        elif self.deadline is not None and self.seconds == self.deadline:
            head = f"<= {_seconds(self.seconds)} (settings.turn_deadline), plus delivering the halt"
        else:
            head = f"<= {_seconds(self.seconds)}"
        out = [f"worst-case wall time per turn: {head}"]
        out.append(f"  the engine's own waits <= {_seconds(self.waits)}: {parts}")
        for what in self.unbounded:
            out.append(f"  only turn_deadline bounds {what}")
        return out


def _seconds(value: float) -> str:
    return f"{value:g} s"


def backoff_bound(policy: Policy, action: Backoff, carries_retry_after: bool) -> float:
    """The longest one backoff action waits: its schedule's longest delay, or ``max_wait`` when
    the event carries a Retry-After (which lengthens a wait up to ``max_wait``, never further)."""
    longest = max(policy.backoff[action.schedule])  # the validator requires one delay at least
    return max(longest, policy.settings.max_wait) if carries_retry_after else longest


def _carries_retry_after(policy: Policy, state: str, event: str) -> bool:
    spec = KINDS[policy.states[state].kind].event(event)
    return spec is not None and spec.attr("retry_after") is not None


def edge_wait(policy: Policy, edge: Edge) -> float:
    """The longest an edge's transition waits: the sum of its backoff actions' bounds."""
    t = edge.transition
    if t is None:
        return 0.0
    waits = [a for a in t.actions if isinstance(a, Backoff)]
    if not waits:
        return 0.0
    retry_after = _carries_retry_after(policy, t.source, t.event)
    return sum(backoff_bound(policy, a, retry_after) for a in waits)


def wall_time(an: Analysis, graph: Graph, term: Termination, model_calls: int, tool_batches: int) -> WallTime:
    """Bound a halting policy's turn in wall-clock seconds (see the module docstring).

    ``model_calls`` and ``tool_batches`` are the checker's worst-case figures (upper bounds).
    """
    policy = an.policy
    settings = policy.settings
    parts = {
        "request_open": model_calls * float(settings.request_timeout),
        "stall_detection": model_calls * float(settings.stall_timeout),
        "backoff": backoff_time(an, graph, term),
    }
    unbounded = [STREAMING] if model_calls else []
    if tool_batches:
        limits = [float(t) for t in (settings.tool_timeout, settings.tool_batch_timeout) if t is not None]
        if limits:
            parts["tool_runs"] = tool_batches * min(limits)
        else:
            unbounded.append(TOOLS)
        unbounded.append(APPROVAL)
    waits = sum(parts.values())
    deadline = None if settings.turn_deadline is None else float(settings.turn_deadline)
    if not unbounded:
        seconds: float | None = waits if deadline is None else min(waits, deadline)
    else:
        seconds = deadline
    return WallTime(seconds, waits, parts, tuple(unbounded), deadline)


def backoff_time(an: Analysis, graph: Graph, term: Termination) -> float:
    """The most a turn spends in backoffs: each waiting edge is charged once, in a group whose
    firings have one bound together, at the group's longest wait.

    - A counter that nothing in the turn resets only grows, and no increment passes its cap, so
      all the edges that increment it fire at most ``cap`` times in the whole turn, together.
    - Otherwise the counter elimination that removed the edge bounds its group's firings.
    - Otherwise the edge's own bound (an edge on no cycle fires at most once per entry).
    """
    policy = an.policy
    reset_anywhere: set[int] = set()
    for e in graph.edges:
        reset_anywhere |= e.resets
    waiting = {e.index: w for e in graph.edges if (w := edge_wait(policy, e)) > 0}
    fires_of: dict[object, int] = {}
    waits_of: dict[object, list[float]] = {}
    for e in graph.edges:
        if e.index not in waiting:
            continue
        grown = sorted((an.caps[i], i) for i in e.incs if i not in reset_anywhere)  # Step.capped: +1 at least, never past the cap
        key: object
        if grown:
            cap, index = grown[0]
            key, fires = ("counter", index), cap
        else:
            el = next((el for el in term.eliminations if any(x.index == e.index for x in el.edges)), None)
            if el is not None:
                key, fires = ("elimination", id(el)), el.fires
            else:
                key, fires = ("edge", e.index), term.fires[e.index]  # every edge has one
        fires_of[key] = fires
        waits_of.setdefault(key, []).append(waiting[e.index])
    return float(sum(fires_of[key] * max(waits) for key, waits in waits_of.items()))
