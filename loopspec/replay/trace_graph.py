"""``loopspec graph FILE --trace CASSETTE``: the path a replayed turn takes, drawn by ``transitions``.

The cassette is replayed in-process under the policy (no litellm, no network), with an
``after_state_change`` callback that collects every trigger the turn's machine fired. The same
moves the runtime machine allows are then given to ``transitions``' ``GraphMachine`` with its
Mermaid engine (Graphviz is not needed), labelled as ``loopspec graph`` labels them; the collected
triggers are fired on it again, so the drawing machine also accepts the path. States the turn
passed through get the ``previous`` style, the halt it ended in ``active``, and every taken edge
carries its step numbers (Mermaid state diagrams cannot colour a single edge). Backstop redirects
and the policy-error move are drawn only when taken.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from transitions import State as MachineState

from loopspec.engine.machine import MachineTransition, TurnCallbacks, machine_transitions
from loopspec.language.graph import edge_label
from loopspec.language.model import POLICY_ERROR_STATE, Policy

from .cassette import Cassette
from .harness import ReplayReport, replay


class _LabelledState(MachineState):
    """A state whose diagram label is not its id (transitions' markup reads ``label``)."""

    def __init__(self, name: str, label: str) -> None:
        super().__init__(name)
        self.label = label


def _sid(state: str) -> str:
    """The diagram id of a state: prefixed, so no state name can be a Mermaid keyword (``end``,
    ``state``) or one of the style classes transitions declares (``s_active``, ``s_previous``)."""
    return f"st_{state}"


def _text(s: str) -> str:
    """Label text that cannot end a Mermaid statement early or open a quoted one."""
    return s.replace('"', "'").replace(";", ",").replace("\n", " ")


def _label(m: MachineTransition) -> str:
    if m.transition is None:
        return "no transition matched"
    label = edge_label(m.transition)
    if m.redirect:
        label += f", redirected by a backstop (to {m.transition.target})"
    return _text(label)


async def replayed_triggers(c: Cassette, policy: Policy) -> tuple[list[str], ReplayReport]:
    """Replay ``c`` in-process under ``policy``; the machine triggers it fired, in order."""
    triggers: list[str] = []
    callbacks = TurnCallbacks().after_state_change(lambda event: triggers.append(event.event.name))
    report = await replay(c, policy, callbacks=callbacks)
    return triggers, report


def trace_mermaid(policy: Policy, triggers: list[str], title: str) -> str:
    """The policy as a Mermaid state diagram with the path of ``triggers`` highlighted."""
    from transitions.extensions.diagrams import GraphMachine  # only this command needs the extension

    moves = list(machine_transitions(policy))
    by_trigger = {m.trigger: m for m in moves}
    taken: dict[str, list[int]] = defaultdict(list)
    for i, trigger in enumerate(triggers, 1):
        taken[trigger].append(i)
    visited = [policy.initial] + [by_trigger[t].dest for t in triggers]
    drawn = [m for m in moves if (m.transition is not None and not m.redirect) or m.trigger in taken]
    shown = {s for s in policy.states if s != POLICY_ERROR_STATE} | set(visited) | {m.dest for m in drawn}

    states = []
    for name in policy.states:
        if name in shown:
            s = policy.states[name]
            states.append(_LabelledState(_sid(name), f"{name} ({s.outcome if s.kind == 'halt' else s.kind})"))
    transitions: list[dict[str, Any]] = []
    for m in drawn:
        label = _label(m)
        if m.trigger in taken:
            steps = taken[m.trigger]
            label += f" (step{'s' if len(steps) > 1 else ''} {', '.join(map(str, steps))})"
        transitions.append({"trigger": m.trigger, "source": _sid(m.source), "dest": _sid(m.dest), "label": label})

    machine = GraphMachine(
        model=None,
        states=states,
        transitions=transitions,
        initial=_sid(policy.initial),
        auto_transitions=False,
        ignore_invalid_triggers=False,
        graph_engine="mermaid",
        # transitions writes the title as the Mermaid front matter's only line; this makes it YAML
        title="title: " + _text(title).replace(":", " -"),
    )

    class Path:
        state: str

    path = Path()
    machine.add_model(path)
    for trigger in triggers:
        path.trigger(trigger)  # type: ignore[attr-defined]
    graph = machine.model_graphs[id(path)]
    graph.reset_styling()
    for state in visited:
        graph.set_node_style(_sid(state), "previous")
    graph.set_node_style(_sid(visited[-1]), "active")
    source: str = path.get_graph().source  # type: ignore[attr-defined]
    return source + "\n"


async def trace_graph(c: Cassette, policy: Policy) -> tuple[str, ReplayReport]:
    """Replay ``c`` under ``policy`` and draw the path it took."""
    triggers, report = await replayed_triggers(c, policy)
    return trace_mermaid(policy, triggers, f"{policy.name} replaying {c.name}"), report
