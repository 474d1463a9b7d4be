"""The compiled policy bound to a ``transitions`` state machine.

``transitions`` holds the moves the policy declares, refuses any other, and runs the callbacks a
user attaches to a turn (:class:`TurnCallbacks`); the compiled model alone decides which move to
make (guards, caps, backstop redirects). A turn without callbacks makes its moves from the
machine's table of declared moves, as ``Event.trigger`` would with nothing to call, at a tenth of
its cost.

A policy gets up to two machines, built on first use (about 70 µs each): a plain one, for turns
without callbacks, which runs no callback machinery at all; and one whose states and machine-level
hooks name dispatch methods that ``transitions`` resolves on the model, for turns with callbacks.
Every turn is its own model, so concurrent turns share nothing and never see each other's
callbacks. A model is never added to its machine (``add_model`` binds a trigger and a ``may_``
check per move to it, about 90 KB per turn under default.yaml): it holds only its state, and its
moves are the machine's own events triggered on it, which is all ``add_model`` would bind. The synchronous ``Machine`` is used on purpose: ``AsyncMachine`` runs callbacks
concurrently (transitions #717), which would break ordered actions; effects are awaited by the
interpreter loop instead.

Nothing here keeps a policy alive: the machines and their idle models are dropped when the policy
is collected, and at most :data:`POOL_SIZE` idle models are kept per machine.
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any, Callable, Iterator, NamedTuple

from transitions import EventData, Machine, MachineError
from transitions import State as MachineState

from loopspec.language.diagnostics import did_you_mean
from loopspec.language.model import Policy, Step, Transition

Callback = Callable[[EventData], Any]
"""A turn callback: called with transitions' ``EventData``; the decision is ``event.kwargs["step"]``."""

POOL_SIZE = 8
"""Idle models kept per machine for reuse; beyond this many, a released model is dropped."""


# --------------------------------------------------------------------------- triggers


def trigger_name(step: Step) -> str:
    """The trigger that performs ``step`` on the machine."""
    t = step.transition
    if t is None:
        return f"{step.before.state}:unhandled"
    name = f"{t.source}:{t.event}:{t.order}"
    if step.after.state != t.target:
        name += f">{step.after.state}"
    return name


class MachineTransition(NamedTuple):
    """One move the machine allows, and the policy transition it comes from."""

    trigger: str
    source: str
    dest: str
    transition: Transition | None
    """None for the move into the policy-error halt when no transition matched."""
    redirect: bool
    """A backstop redirect of ``transition`` to an ``exhausted`` or ``wrap_up`` state."""


def machine_transitions(policy: Policy) -> Iterator[MachineTransition]:
    """Every move a turn of ``policy`` can make, named as :func:`trigger_name` names its step."""
    error_state = policy.policy_error_state()
    for state in policy.states.values():
        if state.kind == "halt":
            continue
        yield MachineTransition(f"{state.name}:unhandled", state.name, error_state, None, False)
        for t in state.all_transitions():
            base = f"{t.source}:{t.event}:{t.order}"
            yield MachineTransition(base, t.source, t.target, t, False)
            for alt in policy.redirect_targets(t.target):
                yield MachineTransition(f"{base}>{alt}", t.source, alt, t, True)


def build_machine(policy: Policy, *, dispatch: bool = False) -> Machine:
    """The policy's machine; with ``dispatch``, every state change runs :class:`TurnModel`'s
    callback dispatchers (resolved by name on the model, so each turn runs only its own)."""
    transitions = [{"trigger": m.trigger, "source": m.source, "dest": m.dest} for m in machine_transitions(policy)]
    if not dispatch:
        return Machine(
            model=None,
            states=list(policy.states),
            transitions=transitions,
            initial=policy.initial,
            auto_transitions=False,
            ignore_invalid_triggers=False,
        )
    return Machine(
        model=None,
        states=[MachineState(name, on_enter="_dispatch_enter", on_exit="_dispatch_exit") for name in policy.states],
        transitions=transitions,
        initial=policy.initial,
        auto_transitions=False,
        ignore_invalid_triggers=False,
        send_event=True,
        before_state_change="_dispatch_before",
        after_state_change="_dispatch_after",
    )


# --------------------------------------------------------------------------- callbacks


class TurnCallbacks:
    """What a user runs when one turn changes state, named as ``transitions`` names its hooks.

    For each move, in this order: ``before_state_change``, ``on_exit`` of the state left,
    ``on_enter`` of the state entered, ``after_state_change``. Each callback is synchronous and
    gets transitions' ``EventData``: ``event.kwargs["step"]`` is the :class:`~loopspec.Step`
    (event, transition, configuration before and after), ``event.state`` the state left
    (``before``/``on_exit``) or entered (``on_enter``/``after``), ``event.event.name`` the trigger.
    A callback that raises is recorded in ``TurnResult.callback_errors`` and never stops the turn.
    The methods return the registry, so registrations chain.
    """

    def __init__(self) -> None:
        self.enter: dict[str, list[Callback]] = {}
        self.exit: dict[str, list[Callback]] = {}
        self.before: list[Callback] = []
        self.after: list[Callback] = []

    def on_enter(self, state: str, fn: Callback) -> "TurnCallbacks":
        self.enter.setdefault(state, []).append(fn)
        return self

    def on_exit(self, state: str, fn: Callback) -> "TurnCallbacks":
        self.exit.setdefault(state, []).append(fn)
        return self

    def before_state_change(self, fn: Callback) -> "TurnCallbacks":
        self.before.append(fn)
        return self

    def after_state_change(self, fn: Callback) -> "TurnCallbacks":
        self.after.append(fn)
        return self

    def __bool__(self) -> bool:
        return bool(self.enter or self.exit or self.before or self.after)

    def check(self, policy: Policy) -> None:
        """Raise ``ValueError`` for a callback on a state the policy does not have."""
        for hook, table in (("on_enter", self.enter), ("on_exit", self.exit)):
            for state in table:
                if state not in policy.states:  # a policy has states, so there is always a hint
                    raise ValueError(f"{hook}: policy {policy.name} has no state '{state}'; {did_you_mean(state, policy.states)}")


# --------------------------------------------------------------------------- machines per policy


class _Pool:
    """One machine, its declared moves by trigger and source state, and the idle models bound to it."""

    __slots__ = ("machine", "moves", "idle")

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.moves: dict[str, dict[str, str]] = {
            name: {source: ts[0].dest for source, ts in event.transitions.items() if ts and ts[0].dest is not None}
            for name, event in machine.events.items()
        }
        self.idle: list[TurnModel] = []


class _PolicyMachines:
    __slots__ = ("policy", "pools")

    def __init__(self, policy: Policy) -> None:
        self.policy = weakref.ref(policy)
        self.pools: dict[bool, _Pool] = {}


_MACHINES: dict[int, _PolicyMachines] = {}
"""By ``id(policy)`` (a Policy holds mappings, so it cannot be hashed); an entry is removed when
its policy is collected, and holds no strong reference to it."""


def _forget(key: int, entry: _PolicyMachines) -> None:
    if _MACHINES.get(key) is entry:
        del _MACHINES[key]


def _pool(policy: Policy, dispatch: bool) -> _Pool:
    key = id(policy)
    entry = _MACHINES.get(key)
    if entry is None or entry.policy() is not policy:
        entry = _MACHINES[key] = _PolicyMachines(policy)
        weakref.finalize(policy, _forget, key, entry).atexit = False
    pool = entry.pools.get(dispatch)
    if pool is None:
        pool = entry.pools[dispatch] = _Pool(build_machine(policy, dispatch=dispatch))
    return pool


def machine_for(policy: Policy, *, dispatch: bool = False) -> Machine:
    """The machine for a policy, built on first use and kept while the policy is alive."""
    return _pool(policy, dispatch).machine


def idle_models(policy: Policy) -> int:
    """How many released models are kept for the policy's turns (for tests and diagnostics)."""
    entry = _MACHINES.get(id(policy))
    if entry is None or entry.policy() is not policy:
        return 0
    return sum(len(p.idle) for p in entry.pools.values())


class TurnModel:
    """The per-turn object ``transitions`` moves between states.

    :meth:`acquire` a model for a turn, :meth:`perform` each step, :meth:`release` it at the end.
    A model is used by one turn at a time; concurrent turns each hold their own.
    """

    state: str

    __slots__ = ("_pool", "_callbacks", "callback_errors", "state")

    def __init__(self, pool: _Pool, initial: str) -> None:
        self._pool = pool
        self._callbacks: TurnCallbacks | None = None
        self.callback_errors: list[str] = []
        self.state = initial

    @classmethod
    def acquire(cls, policy: Policy, callbacks: TurnCallbacks | None = None) -> "TurnModel":
        """A model in the policy's initial state, running ``callbacks`` (checked against the policy)."""
        dispatch = bool(callbacks)
        if callbacks is not None and dispatch:
            callbacks.check(policy)
        pool = _pool(policy, dispatch)
        if pool.idle:
            model = pool.idle.pop()
            model.state = policy.initial
        else:
            model = cls(pool, policy.initial)
        model._callbacks = callbacks if dispatch else None
        model.callback_errors = []
        return model

    def perform(self, step: Step) -> None:
        """Move along the step's transition; raises if the machine does not declare it or ends up
        somewhere other than where the policy says (the machine and ``Policy.step`` disagree)."""
        if self._callbacks is None:  # the plain machine: nothing to hand the step to
            self._move(trigger_name(step))
        else:
            self.trigger(trigger_name(step), step=step)
        if self.state != step.after.state:
            raise RuntimeError(f"machine moved to {self.state}, policy says {step.after.state}")

    def trigger(self, name: str, **kwargs: Any) -> bool:
        """Make the move ``name`` on the machine, as the trigger ``add_model`` would bind does."""
        event = self._pool.machine.events.get(name)
        if event is None:
            raise AttributeError(f"Do not know event named '{name}'.")
        return bool(event.trigger(self, **kwargs))

    def _move(self, name: str) -> None:
        """The plain machine's move, read from the moves it declares: what ``Event.trigger`` does
        on a machine with no callbacks and no conditions (find the transition declared for the
        current state, set the state), without its per-move ``EventData``, logging and callback
        lists, which cost about 8 µs of a step's 20."""
        sources = self._pool.moves.get(name)
        if sources is None:
            raise AttributeError(f"Do not know event named '{name}'.")
        dest = sources.get(self.state)
        if dest is None:
            raise MachineError(f"Can't trigger event {name} from state {self.state}!")
        self.state = dest

    def release(self) -> None:
        """Give the model back for the next turn of the same policy; its callbacks are dropped."""
        self._callbacks = None
        pool = self._pool
        if len(pool.idle) < POOL_SIZE:
            pool.idle.append(self)

    # -- the dispatchers the callback machine resolves by name on the model ------------------

    def _dispatch_before(self, event: EventData) -> None:
        if self._callbacks is not None:
            self._run("before_state_change", self._callbacks.before, event)

    def _dispatch_exit(self, event: EventData) -> None:
        if self._callbacks is not None:
            fns = self._callbacks.exit.get(event.state.name)
            if fns:
                self._run(f"on_exit {event.state.name}", fns, event)

    def _dispatch_enter(self, event: EventData) -> None:
        if self._callbacks is not None:
            fns = self._callbacks.enter.get(event.state.name)
            if fns:
                self._run(f"on_enter {event.state.name}", fns, event)

    def _dispatch_after(self, event: EventData) -> None:
        if self._callbacks is not None:
            self._run("after_state_change", self._callbacks.after, event)

    def _run(self, hook: str, fns: list[Callback], event: EventData) -> None:
        """Call each callback, isolated: one that raises is recorded, the move completes."""
        for fn in list(fns):
            try:
                result = fn(event)
                if inspect.isawaitable(result):
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
                    raise TypeError("callbacks are synchronous; this one returned an awaitable")
            except Exception as exc:
                self.callback_errors.append(f"{hook}: {type(exc).__name__}: {exc}")
