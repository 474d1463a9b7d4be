"""The compiled model: one immutable object of pure guard and action functions.

This is the single semantics of a policy. The interpreter and the checker both call
:meth:`Policy.step` and never re-implement a guard or an action. It does no I/O and never imports
litellm: effects outside the configuration (append a prompt, drop tool calls, back off, compact,
refuse a batch) come back as :class:`Directive` records for the interpreter to carry out, and the
checker reasons about them without running them.

A turn configuration is ``(state, counters, flags)``. Caps hold by construction: a transition whose
increments would pass a counter's cap is not enabled, so the next transition on that event is tried;
a transition into a ``call`` (``tool_exec``) state when the model-call (tool-batch) backstop is spent
is redirected to the backstop's ``wrap_up`` or ``exhausted`` state.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from .actions import (
    PURE_ACTIONS,
    Action,
    Append,
    Backoff,
    Compact,
    Directive,
    DropToolCalls,
    Increment,
    RefuseTools,
    Reset,
    SetFlag,
)
from .alphabet import BACKSTOP_KIND, COMPARATORS, COST_UNKNOWN_FLAG, KINDS, ONCE_FLAGS, OPTIONAL_EVENTS, Event
from .guards import AllOf, Always, AnyOf, AttrTest, CounterCmp, FlagIs, Guard, Not
from .step import (
    CALLS_COMPLETE,
    CALLS_INVALID,
    CALLS_NONE,
    CALLS_PARTIAL,
    FATE_DROP,
    FATE_IGNORE,
    FATE_REFUSE,
    FATE_RUN,
    Offer,
    Step,
    calls_of,
)
from .approvals import ApprovalRules
from .config import Config
from .structure import Backstop, Budget, Counter, Guardrail, Settings, State, Transition
from .templates import render_template

@dataclass(frozen=True)
class Policy:
    """A validated, compiled policy. Build it with :func:`loopspec.load_policy`."""

    name: str
    file: str
    initial: str
    states: Mapping[str, State]
    counters: tuple[Counter, ...]
    flags: frozenset[str]
    templates: Mapping[str, str]
    backoff: Mapping[str, tuple[float, ...]]
    backstops: Mapping[str, Backstop]
    guardrails: Mapping[str, Guardrail]
    settings: Settings
    doc: str = ""
    budgets: Mapping[str, Budget] = field(default_factory=dict)
    _counter_index: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)
    approvals: ApprovalRules = field(default_factory=ApprovalRules)
    """Which tool calls need a person (the ``approvals:`` section); the engine applies them."""

    # -- configuration ----------------------------------------------------------------------

    @functools.cached_property
    def counter_names(self) -> tuple[str, ...]:
        """The counters' names, in index order (read on every step's trace record: built once)."""
        return tuple(c.name for c in self.counters)

    def counter_index(self, name: str) -> int:
        return self._counter_index[name]

    def initial_config(self) -> Config:
        """The configuration a turn starts in, with the initial state's entry already applied."""
        zero = Config(self.initial, (0,) * len(self.counters), frozenset())
        cfg, _flags, _warn = self._enter(self.initial, zero.counters, zero.flags)
        return cfg

    def value(self, cfg: Config, counter: str) -> int:
        return cfg.counters[self._counter_index[counter]]

    # -- the decision step --------------------------------------------------------------------

    @functools.cached_property
    def _tables(self) -> "StepTables":
        """What :meth:`step` reads about each state and kind, derived once from the policy."""
        return StepTables.of(self)

    def enabled(self, t: Transition, cfg: Config, event: Event) -> bool:
        """A transition is enabled when its guard holds and its increments stay within their caps."""
        if not t.guard.evaluate(self, cfg, event):
            return False
        for inc in t.increments():
            if cfg.counters[inc.index] + inc.amount > self.counters[inc.index].max:
                return False
        return True

    def events_of(self, state: str) -> tuple[str, ...]:
        """The events ``state``'s effect can present to the policy as decisions of their own: its
        kind's alphabet, less the optional events it does not handle (those arrive as their
        fallback, see :data:`~.alphabet.OPTIONAL_EVENTS`)."""
        s = self.states[state]
        return tuple(e for e in KINDS[s.kind].event_names if e not in OPTIONAL_EVENTS or e in s.transitions)

    def seen_as(self, state: str, event: Event) -> Event:
        """``event`` as ``state`` sees it: an optional event it does not handle becomes its fallback."""
        fallback = OPTIONAL_EVENTS.get(event.name)
        if fallback is None or event.name in self.states[state].transitions:
            return event
        return Event(fallback, event.attrs)

    def select(self, cfg: Config, event: Event) -> Transition | None:
        """The first enabled transition on ``event`` in the current state (document order)."""
        state = self.states[cfg.state]
        for t in state.transitions.get(event.name, ()):
            if self.enabled(t, cfg, event):
                return t
        return None

    def step(self, cfg: Config, event: Event, measured: frozenset[str] = frozenset()) -> Step:
        """Decide: pick the transition, run its actions, resolve backstops, enter the target.

        ``measured``: the budget flags the interpreter's amounts say now (:meth:`budget_status`);
        they join the configuration only if the step enters a call state (budgets are measured
        where a model call would be made), and may redirect it like a spent backstop."""
        event = self.seen_as(cfg.state, event)
        calls = calls_of(self.states[cfg.state].kind, event)
        t = self.select(cfg, event)
        if t is None:
            halt = self.policy_error_state()
            after = Config(halt, cfg.counters, cfg.flags)
            # the turn ends in policy_error, which events_handled reports; the calls are dropped
            return Step(cfg, event, None, after, (), calls=calls, fate=None if calls == CALLS_NONE else FATE_DROP)
        directives: list[Directive] = []
        counters: list[int] | tuple[int, ...] = cfg.counters
        flags: set[str] | frozenset[str] = cfg.flags
        if t.actions:  # else the configuration's own tuple and set serve, unchanged
            counters, flags = list(counters), set(flags)
            for action in t.actions:
                self._apply(action, counters, flags, directives)
        target = self.redirect(t.target, counters, flags)
        new: frozenset[str] = frozenset()
        if self.budgets and self.states[target].kind == "call" and not measured <= flags:
            new = measured - flags
            flags = flags | measured
            target = self.redirect(target, counters, flags)
            if self.states[target].kind == "call":
                directives.extend(Directive(Append(b.warning)) for b in self.budgets.values()
                                  if b.warning is not None and b.flag("warned") in new)
        entered, request_flags, entry = self._enter(target, tuple(counters), frozenset(flags))
        directives.extend(entry)
        fate, refusal = self._fate(calls, t, target, directives)
        tables = self._tables
        kind = self.states[target].kind
        return Step(
            cfg,
            event,
            t,
            entered,
            tuple(directives),
            redirected_from=t.target if target != t.target else None,
            calls=calls,
            fate=fate,
            refusal=refusal,
            offer=offer_for(request_flags) if kind == "call" else None,
            capped=t.increment_indices | tables.backstop_indices[kind],
            resets=(t.reset_indices | tables.entry_resets[target]) if kind == "escalate" else t.reset_indices,
            measured=new,
        )

    def _fate(
        self, calls: str, t: Transition, target: str, directives: list[Directive]
    ) -> tuple[str | None, str | None]:
        """What becomes of the tool calls an event carries. Partial and invalid calls never run."""
        if calls == CALLS_NONE:
            return None, None
        if calls != CALLS_COMPLETE or any(isinstance(a, DropToolCalls) for a in t.actions):
            return FATE_DROP, None
        refusal = next((d.action for d in directives if isinstance(d.action, RefuseTools)), None)
        if refusal is not None:
            return FATE_REFUSE, refusal.template
        if self.states[target].kind == "tool_exec":
            return FATE_RUN, None
        if self.states[t.target].kind == "tool_exec":  # the tool-batch backstop stopped the batch
            return FATE_DROP, None
        return FATE_IGNORE, None

    def entry_directives(self, state: str) -> tuple[Directive, ...]:
        """The directives entering ``state`` performs: a continue state's prompt, an escalate
        state's non-configuration ``apply`` actions (compact, append, refuse), in order."""
        s = self.states[state]
        if s.kind == "continue" and s.prompt:
            return (Directive(Append(s.prompt)),)
        if s.kind == "escalate":
            return tuple(Directive(a) for a in s.apply if not isinstance(a, PURE_ACTIONS))
        return ()

    def _apply(self, action: Action, counters: list[int], flags: set[str], out: list[Directive]) -> None:
        if isinstance(action, Increment):
            # No clamp: enabled() refused any transition whose increment would pass the cap, and
            # the validator refuses increments in an escalate state's apply (LS209). A clamp here
            # would hide a broken enabled() from every test that reads a counter.
            counters[action.index] += action.amount
        elif isinstance(action, Reset):
            counters[action.index] = 0
        elif isinstance(action, SetFlag):
            if action.value:
                flags.add(action.flag)
            else:
                flags.discard(action.flag)
        elif isinstance(action, Backoff):
            schedule = self.backoff[action.schedule]
            attempt = counters[action.attempt_index] if action.attempt_index is not None else 0
            delay = schedule[min(attempt, len(schedule) - 1)] if schedule else 0.0
            out.append(Directive(action, delay=float(delay)))
        else:
            out.append(Directive(action))

    def redirect(self, target: str, counters: list[int] | tuple[int, ...], flags: frozenset[str] | set[str] = frozenset()) -> str:
        """Where a transition into ``target`` really goes once the backstops apply.

        Entering a call (tool_exec) state spends one model call (tool batch). When the backstop is
        spent the transition goes to ``exhausted``; for model calls, when one call is left it goes to
        ``wrap_up``, unless the turn already passed through ``wrap_up`` (flag ``wrap_up_entered``),
        however many states lie between it and the call. The rule applies again to the state it
        redirects to: a ``tool_batches.exhausted`` that is a call state is still subject to the
        model-call backstop, so no entry escapes a spent cap.
        """
        nxt = self._redirect_once(target, counters, flags)
        if nxt == target:  # most entries: no backstop applies
            return target
        seen = {target}
        while True:
            if nxt in seen:  # pragma: no cover - the validator rejects exhausted targets that loop
                return self.policy_error_state()
            seen.add(nxt)
            target = nxt
            nxt = self._redirect_once(target, counters, flags)
            if nxt == target:
                return target

    def redirect_targets(self, target: str) -> tuple[str, ...]:
        """Every state :meth:`redirect` may send an entry into ``target`` to (for drawing and for
        the transitions machine, which must declare each move a step can make)."""
        out: list[str] = []
        todo = [target]
        while todo:
            kind = self.states[todo.pop()].kind
            alts = [(bs.exhausted, bs.wrap_up) for name, bs in self.backstops.items() if BACKSTOP_KIND[name] == kind]
            if kind == "call":
                alts += [(b.exhausted, b.wrap_up) for b in self.budgets.values()]
            for pair in alts:
                for alt in pair:
                    if alt is not None and alt != target and alt not in out:
                        out.append(alt)
                        todo.append(alt)
        return tuple(out)

    def _redirect_once(self, target: str, counters: list[int] | tuple[int, ...], flags: frozenset[str] | set[str]) -> str:
        kind = self.states[target].kind
        for idx, bs in self._tables.backstops_of_kind[kind]:
            used = counters[idx]
            if used >= bs.max:
                return bs.exhausted
            if bs.wrap_up is not None and used >= bs.max - 1 and WRAP_UP_FLAG not in flags:
                return bs.wrap_up
        if kind == "call":
            for b in self.budgets.values():
                if b.flag("reached") not in flags:
                    continue
                if b.wrap_up is None or b.flag("last_call") in flags:
                    return b.exhausted
                if b.flag("wrap_up_entered") not in flags:
                    return b.wrap_up
        return target

    def _enter(
        self, state: str, counters: tuple[int, ...], flags: frozenset[str]
    ) -> tuple[Config, frozenset[str], list[Directive]]:
        """Entry effects of a state's kind: a call counts a model call and consumes once-flags; an
        escalate state applies its ``apply`` list; a continue state appends its prompt."""
        kind = self.states[state].kind
        tables = self._tables
        entry: list[Directive] = []
        request_flags = flags
        spent = tables.backstops_of_kind[kind]
        if spent:
            c = list(counters)
            for idx, bs in spent:
                c[idx] += 1  # never past the cap: redirect() sent a spent backstop's entry elsewhere
                if bs.warn_at is not None and bs.warning is not None and c[idx] == bs.warn_at:
                    entry.append(Directive(Append(bs.warning)))
            counters = tuple(c)
        if kind == "call":
            flags = flags - ONCE_FLAGS
            # the budget's one last call, let through by redirect() after its wrap_up
            if self.budgets:
                flags = flags | {b.flag("last_call") for b in self.budgets.values() if b.flag("wrap_up_entered") in flags and b.flag("reached") in flags}
        added = tables.entry_flags[state]
        if added:
            flags = flags | added
        if kind == "escalate":
            fl = set(flags)
            cs = list(counters)
            for a in self.states[state].apply:
                if isinstance(a, PURE_ACTIONS):
                    self._apply(a, cs, fl, entry)
            flags, counters = frozenset(fl), tuple(cs)
        entry.extend(tables.entry_directives[state])
        return Config(state, counters, flags), request_flags, entry

    def budget_status(self, cfg: Config, amounts: Mapping[str, float], cost_unknown: bool = False) -> frozenset[str]:
        """The budget flags the amounts say, for :meth:`step`'s ``measured``.

        Each model call entered counts as at least ``min_per_call`` (the model-call backstop counts
        the calls entered), so a budget that declares it is reached after ``call_bound()`` calls
        whatever the provider reported: the checker may rely on that bound."""
        out: set[str] = set()
        calls = self.value(cfg, "model_calls") if "model_calls" in self._counter_index else 0
        for b in self.budgets.values():
            raw = amounts.get(b.name, 0.0)
            bound = b.call_bound()
            if raw >= b.max or (bound is not None and calls >= bound):  # the call bound, exactly
                out.add(b.flag("reached"))
            floor = calls * (b.min_per_call or 0.0)
            if b.warn_at is not None and (b.flag("reached") in out or max(raw, floor) >= b.warn_at):
                out.add(b.flag("warned"))
        if cost_unknown and "cost" in self.budgets:
            out.add(COST_UNKNOWN_FLAG)
        return frozenset(out)

    def budget_levels(self, read: frozenset[str] | None = None) -> tuple[frozenset[str], ...]:
        """Every value :meth:`budget_status` can take, for the checker's adversary (monotone:
        a flag once set stays set, so any value is reachable after any other).

        With ``read`` (the flags the policy's guards read), ``warned`` and ``cost_unknown`` are
        left out where no guard reads them: then they only decide whether a warning is appended,
        which no property reads, and each would double the values to try."""
        key = "_budget_levels" if read is None else "_budget_levels_read"
        got: tuple[frozenset[str], ...] | None = self.__dict__.get(key)
        if got is None:
            got = self._levels(read)
            object.__setattr__(self, key, got)
        return got

    def _levels(self, read: frozenset[str] | None) -> tuple[frozenset[str], ...]:
        per: list[list[frozenset[str]]] = []
        for b in self.budgets.values():
            levels: list[frozenset[str]] = [frozenset()]
            warned = b.warn_at is not None and (read is None or b.flag("warned") in read)
            if warned:
                levels.append(frozenset({b.flag("warned")}))
            levels.append(frozenset({b.flag("reached")} | ({b.flag("warned")} if warned else set())))
            per.append(levels)
        if "cost" in self.budgets and (read is None or COST_UNKNOWN_FLAG in read):
            per.append([frozenset(), frozenset({COST_UNKNOWN_FLAG})])
        out: list[frozenset[str]] = [frozenset()]
        for levels in per:
            out = [a | b for a in out for b in levels]
        return tuple(out)

    def guard_flags(self) -> frozenset[str]:
        """Every flag some guard of the policy reads."""
        got: frozenset[str] | None = self.__dict__.get("_guard_flags")
        if got is None:
            out: set[str] = set()
            todo: list[Guard] = [t.guard for s in self.states.values() for t in s.all_transitions()]
            while todo:
                g = todo.pop()
                if isinstance(g, FlagIs):
                    out.add(g.flag)
                elif isinstance(g, (AllOf, AnyOf)):
                    todo.extend(g.parts)
                elif isinstance(g, Not):
                    todo.append(g.part)
            got = frozenset(out)
            object.__setattr__(self, "_guard_flags", got)
        return got

    def policy_error_state(self) -> str:
        """The halt a run falls into when no transition matches (a static check error)."""
        for s in self.states.values():
            if s.kind == "halt" and s.outcome == "policy_error":
                return s.name
        return POLICY_ERROR_STATE

    # -- templates ------------------------------------------------------------------------------

    def render(self, template: str, variables: Mapping[str, Any]) -> str:
        return render_template(self.templates[template], variables, self.settings.max_message_bytes)


@dataclass(frozen=True)
class StepTables:
    """A policy's per-state and per-kind constants, so a decision looks them up instead of
    scanning the backstops and budgets again (a turn takes hundreds of decisions, the checker
    millions). Derived from the policy alone; only :meth:`Policy.step` and its helpers read them."""

    backstops_of_kind: Mapping[str, tuple[tuple[int, Backstop], ...]]
    """kind -> (counter index, backstop) of each backstop that entering a state of that kind spends."""
    backstop_indices: Mapping[str, frozenset[int]]
    """kind -> the counter indices of those backstops (a step into that kind is capped by them)."""
    entry_flags: Mapping[str, frozenset[str]]
    """state -> the flags entering it sets: ``wrap_up_entered`` for a backstop's (or budget's) wrap_up."""
    entry_directives: Mapping[str, tuple[Directive, ...]]
    """state -> :meth:`Policy.entry_directives`."""
    entry_resets: Mapping[str, frozenset[int]]
    """state -> the counters its ``apply`` list resets (escalate states)."""

    @classmethod
    def of(cls, policy: "Policy") -> "StepTables":
        kinds = {s.kind for s in policy.states.values()}
        of_kind = {k: tuple((policy.counter_index(name), bs) for name, bs in policy.backstops.items()
                            if BACKSTOP_KIND[name] == k) for k in kinds}
        entry_flags = {}
        for name in policy.states:
            flags = {WRAP_UP_FLAG} if any(bs.wrap_up == name for bs in policy.backstops.values()) else set()
            flags.update(b.flag("wrap_up_entered") for b in policy.budgets.values() if b.wrap_up == name)
            entry_flags[name] = frozenset(flags)
        return cls(
            backstops_of_kind=of_kind,
            backstop_indices={k: frozenset(i for i, _ in v) for k, v in of_kind.items()},
            entry_flags=entry_flags,
            entry_directives={name: policy.entry_directives(name) for name in policy.states},
            entry_resets={name: frozenset(a.index for a in s.apply if isinstance(a, Reset))
                          for name, s in policy.states.items()},
        )


@functools.lru_cache(maxsize=1024)
def offer_for(flags: frozenset[str]) -> Offer:
    """:meth:`Offer.from_flags`, shared: a turn's requests are made under a handful of flag sets."""
    return Offer.from_flags(flags)


WRAP_UP_FLAG = "wrap_up_entered"
"""Set on entering the model_calls ``wrap_up`` state: the reserved last call may now be made."""

POLICY_ERROR_STATE = "__policy_error__"
"""A halt every compiled policy has: entered when an event has no enabled transition."""

POLICY_ERROR_MESSAGE = (
    "The turn ended because the policy has no transition for event '{event}'. "
    "Run `loopspec check` on the policy to find unhandled events."
)


def frozen_map(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(d))


__all__ = [
    "COMPARATORS", "Action", "AllOf", "Always", "AnyOf", "Append", "AttrTest", "Backoff", "Backstop", "Budget",
    "CALLS_COMPLETE", "CALLS_INVALID", "CALLS_NONE", "CALLS_PARTIAL", "Compact", "Config", "Counter",
    "CounterCmp", "Directive", "DropToolCalls", "FATE_DROP", "FATE_IGNORE", "FATE_REFUSE", "FATE_RUN",
    "FlagIs", "Guard", "Guardrail", "Increment", "Not", "Offer", "POLICY_ERROR_MESSAGE",
    "POLICY_ERROR_STATE", "Policy", "RefuseTools", "Reset", "SetFlag", "Settings", "State", "Step",
    "Transition", "WRAP_UP_FLAG", "calls_of", "frozen_map", "render_template",
]
