"""The compiled policy bound to a ``transitions`` state machine.

``transitions`` holds the current state of each turn and refuses any move the policy does not
declare; the compiled model alone decides which move to make (guards, caps, backstop redirects).
The machine is built once per policy (about 70 µs) with ``auto_transitions=False`` and every turn
is added as its own model, so many turns can run concurrently in one event loop with nothing
shared. The synchronous ``Machine`` is used on purpose: ``AsyncMachine`` runs callbacks
concurrently (transitions #717), which would break ordered actions; effects are awaited by the
interpreter loop instead.
"""

from __future__ import annotations

from typing import Any

from transitions import Machine

from loopspec.spec.model import Policy, Step

_MACHINES: dict[int, tuple[Policy, Machine]] = {}
_IDLE: dict[int, list["TurnModel"]] = {}


def trigger_name(step: Step) -> str:
    """The trigger that performs ``step`` on the machine."""
    t = step.transition
    if t is None:
        return f"{step.before.state}:unhandled"
    name = f"{t.source}:{t.event}:{t.order}"
    if step.after.state != t.target:
        name += f">{step.after.state}"
    return name


def build_machine(policy: Policy) -> Machine:
    transitions: list[dict[str, Any]] = []
    error_state = policy.policy_error_state()
    for state in policy.states.values():
        if state.kind == "halt":
            continue
        transitions.append({"trigger": f"{state.name}:unhandled", "source": state.name, "dest": error_state})
        for t in state.all_transitions():
            base = f"{t.source}:{t.event}:{t.order}"
            transitions.append({"trigger": base, "source": t.source, "dest": t.target})
            for alt in policy.redirect_targets(t.target):
                transitions.append({"trigger": f"{base}>{alt}", "source": t.source, "dest": alt})
    return Machine(
        model=None,
        states=list(policy.states),
        transitions=transitions,
        initial=policy.initial,
        auto_transitions=False,
        ignore_invalid_triggers=False,
    )


def machine_for(policy: Policy) -> Machine:
    """The machine for a policy, built on first use and cached for the policy's lifetime."""
    entry = _MACHINES.get(id(policy))
    if entry is None or entry[0] is not policy:
        entry = (policy, build_machine(policy))
        _MACHINES[id(policy)] = entry
    return entry[1]


class TurnModel:
    """The per-turn object ``transitions`` moves between states.

    Binding a model to a machine costs about 0.5 ms (transitions attaches every trigger to it), so
    released models are kept and reset for the next turn: :meth:`acquire`, run, :meth:`release`.
    A model is used by one turn at a time; concurrent turns each hold their own.
    """

    state: str

    def __init__(self, machine: Machine, initial: str) -> None:
        self._machine = machine
        machine.add_model(self, initial=initial)

    @classmethod
    def acquire(cls, policy: Policy) -> "TurnModel":
        machine = machine_for(policy)
        idle = _IDLE.setdefault(id(machine), [])
        if idle:
            model = idle.pop()
            machine.set_state(policy.initial, model=model)
            return model
        return cls(machine, policy.initial)

    def perform(self, step: Step) -> None:
        """Move along the step's transition; raises if the machine does not declare it."""
        self.trigger(trigger_name(step))  # type: ignore[attr-defined]
        if self.state != step.after.state:  # pragma: no cover - the machine mirrors the model
            raise RuntimeError(f"machine moved to {self.state}, policy says {step.after.state}")

    def release(self) -> None:
        """Give the model back for the next turn of the same policy."""
        _IDLE.setdefault(id(self._machine), []).append(self)
