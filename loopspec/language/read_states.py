"""Reading a state and its transitions (``on: {event: [{when, do, to}]}``)."""

from __future__ import annotations

from typing import Any

import loopspec.language.codes as codes
from .alphabet import BACKSTOPS, KINDS, OUTCOMES, STATE_KEYS, TRANSITION_KEYS
from .diagnostics import Position, article, did_you_mean
from .lint import Lint
from .model import Action, Always, Guard, Increment, State, Transition, frozen_map
from .read_actions import ActionReader
from .read_guards import GuardReader
from .reader import type_name
from .yamlsource import YList, YMap


class StateReader(GuardReader, ActionReader, Lint):
    def read_state(self, name: str, body: Any, parent: YMap) -> State | None:
        path = f"states.{name}"
        n = len(self.diags)
        b = self.expect_map(body, path, parent.pos_of(name), "a state")
        if b is None:
            self.drop(n, "state", name, parent.key_pos[name])
            return None
        kind = b.get("kind")
        if kind not in KINDS:
            if kind is None:
                self.error(codes.MISSING_KEY, f"state '{name}' needs a 'kind'", path, b.pos, f"one of: {', '.join(KINDS)}")
            else:
                self.error(codes.UNKNOWN_NAME, f"unknown state kind {kind!r}", f"{path}.kind", b.pos_of("kind"), did_you_mean(kind, KINDS))
            self.drop(n, "state", name, parent.key_pos[name])
            return None
        self.unknown_keys(b, STATE_KEYS[kind], path, f"{article(kind)} state")
        pos = parent.key_pos[name]
        doc = b.get("doc", "")
        if kind == "halt":
            outcome = b.get("outcome")
            if outcome not in OUTCOMES:
                self.error(
                    codes.UNKNOWN_NAME if outcome is not None else codes.MISSING_KEY,
                    f"halt state needs a known outcome, got {outcome!r}",
                    f"{path}.outcome",
                    b.pos_of("outcome"),
                    did_you_mean(outcome, OUTCOMES),
                )
            message = b.get("message")
            if not isinstance(message, str):
                self.error(
                    codes.MISSING_KEY,
                    "halt state needs a 'message' template (what every consumer is told)",
                    f"{path}.message",
                    b.pos_of("message"),
                    "e.g. message: \"{response}\" for a completed turn",
                )
            else:
                self.check_template(message, f"{path}.message", b.pos_of("message"))
                self.lint_halt_message(name, message, f"{path}.message", b.pos_of("message"))
            return State(name, kind, frozen_map({}), doc=str(doc), outcome=outcome, message=message, pos=pos)

        prompt = None
        if kind == "continue":
            prompt = b.get("prompt")
            if prompt is None:
                self.error(codes.MISSING_KEY, "continue state needs a 'prompt' template", path, b.pos)
            else:
                self.ref_template(prompt, f"{path}.prompt", b.pos_of("prompt"))
        apply: tuple[Action, ...] = ()
        if kind == "escalate":
            raw = b.get("apply")
            if raw is None:
                self.error(codes.MISSING_KEY, "escalate state needs 'apply' (the actions it performs)", path, b.pos)
            else:
                lst = self.expect_list(raw, f"{path}.apply", b.pos_of("apply"), "apply")
                if lst is not None:
                    apply = self.read_actions(lst, f"{path}.apply")
                    for i, a in enumerate(apply):
                        if isinstance(a, Increment):
                            self.error(
                                codes.UNBOUNDED_INCREMENT,
                                "an escalate state's apply cannot increment a counter: no guard could stop it at its cap",
                                f"{path}.apply[{i}]",
                                lst.pos_of(i),
                                "increment on the transition into this state instead",
                            )

        on = b.get("on")
        transitions: dict[str, tuple[Transition, ...]] = {}
        spec = KINDS[kind]
        if on is None:
            self.error(codes.MISSING_KEY, f"{kind} state '{name}' needs 'on' (its transitions)", path, b.pos)
        else:
            om = self.expect_map(on, f"{path}.on", b.pos_of("on"), "on (event: transitions)")
            if om is not None:
                for event, tbody in om.items():
                    epath = f"{path}.on.{event}"
                    if spec.event(event) is None:
                        self.error(
                            codes.UNKNOWN_EVENT,
                            f"{article(kind)} state never receives event {event!r}",
                            epath,
                            om.key_pos[event],
                            did_you_mean(event, spec.event_names),
                        )
                        continue
                    ts = self.read_transitions(name, kind, event, tbody, om, epath)
                    transitions[event] = ts
        return State(
            name, kind, frozen_map(transitions), doc=str(doc), apply=apply, prompt=prompt, pos=pos
        )

    def read_transitions(
        self, source: str, kind: str, event: str, body: Any, parent: YMap, path: str
    ) -> tuple[Transition, ...]:
        items: list[tuple[Any, Position, str]]
        if isinstance(body, str):
            return (Transition(source, event, 0, Always(), (), body, pos=parent.pos_of(event)),) if self.ref_target(
                kind, event, body, path, parent.pos_of(event)
            ) else ()
        if isinstance(body, YMap):
            items = [(body, body.pos, path)]
        elif isinstance(body, YList):
            items = [(t, body.pos_of(i), f"{path}[{i}]") for i, t in enumerate(body)]
        else:
            self.error(
                codes.WRONG_TYPE,
                f"transitions on '{event}' must be a state name, a mapping or a list, got {type_name(body)}",
                path,
                parent.pos_of(event),
            )
            return ()
        out: list[Transition] = []
        for order, (t, pos, tpath) in enumerate(items):
            if isinstance(t, str):
                if self.ref_target(kind, event, t, tpath, pos):
                    out.append(Transition(source, event, order, Always(), (), t, pos=pos))
                continue
            tm = self.expect_map(t, tpath, pos, "a transition ({when, do, to})")
            if tm is None:
                continue
            self.unknown_keys(tm, TRANSITION_KEYS, tpath, "a transition")
            guard: Guard = Always()
            if "when" in tm:
                g = self.read_guard(tm["when"], f"{tpath}.when", tm.pos_of("when"), kind, event)
                guard = g if g is not None else Always()
            actions: tuple[Action, ...] = ()
            if "do" in tm:
                lst = self.expect_list(tm["do"], f"{tpath}.do", tm.pos_of("do"), "do (a list of actions)")
                if lst is not None:
                    actions = self.read_actions(lst, f"{tpath}.do")
            target = tm.get("to")
            if target is None:
                self.error(codes.MISSING_KEY, "transition needs 'to' (the target state)", tpath, tm.pos)
                continue
            if not self.ref_target(kind, event, target, f"{tpath}.to", tm.pos_of("to")):
                continue
            bounded_by = tm.get("bounded_by")
            budgets = getattr(self, "budgets", {})
            if bounded_by is not None and bounded_by in budgets and budgets[bounded_by].min_per_call is None:
                self.error(
                    codes.UNKNOWN_NAME,
                    f"budget '{bounded_by}' bounds no loop: it declares no min_per_call",
                    f"{tpath}.bounded_by",
                    tm.pos_of("bounded_by"),
                    "a model call may cost nothing, so only min_per_call makes a budget a ceiling on model calls",
                )
                bounded_by = None
            elif bounded_by is not None and bounded_by not in BACKSTOPS and bounded_by not in budgets:
                self.error(
                    codes.UNKNOWN_NAME,
                    f"bounded_by must name a backstop (or a budget with min_per_call), got {bounded_by!r}",
                    f"{tpath}.bounded_by",
                    tm.pos_of("bounded_by"),
                    did_you_mean(bounded_by, BACKSTOPS),
                )
                bounded_by = None
            out.append(Transition(source, event, order, guard, actions, target, bounded_by, pos=pos))
        return tuple(out)
