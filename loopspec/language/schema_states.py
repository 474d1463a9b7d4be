"""The state sub-schemas: one definition per kind (its keys, and under ``on:`` the events of that
kind with their transitions), and the dispatch that checks a state against its own kind's schema.
"""

from __future__ import annotations

from typing import Any

from .alphabet import BACKSTOPS, BUDGETS, KINDS, OUTCOMES, STATE_KEYS, Attr
from .schema_blocks import by_type, described_enum, name_ref, ref
from .schema_guards import attr_doc


def signature(attrs: tuple[Attr, ...]) -> str:
    """The key naming the guard and transitions definitions shared by events with these attributes."""
    return "-".join(a.name for a in attrs) or "none"


def transitions(sig: str) -> dict[str, Any]:
    """What an event maps to: a target, a transition, or a list of them tried in order."""
    transition = {
        "type": "object",
        "required": ["to"],
        "additionalProperties": False,
        "description": "a transition: taken when its guard holds and its increments stay within their caps",
        "properties": {
            "when": {**ref(f"guard.{sig}"), "description": "the guard; without it the transition is always enabled"},
            "do": {"type": "array", "items": ref("action"), "description": "actions, run in order"},
            "to": name_ref("the target state"),
            "bounded_by": {
                **described_enum(
                    {**BACKSTOPS, **{k: f"a budget with min_per_call: {v}" for k, v in BUDGETS.items()}},
                    "declares that this edge repeats until that backstop (or budget) ends it (the normal tool loop)",
                )
            },
            "doc": {"type": "string", "description": "a note for readers"},
        },
    }
    target = name_ref("a target state: the transition is always taken")
    one = by_type("a state name or a transition", string=target, object=transition)
    return by_type(
        "a state name, one transition, or a list of them tried in order (the first enabled one wins)",
        string=target,
        object=transition,
        array={"items": one, "minItems": 1},
    )


def _event_doc(kind: str, event: Any) -> str:
    attrs = "; ".join(attr_doc(a) for a in event.attrs)
    return f"{event.doc}" + (f". Attributes: {attrs}" if attrs else ". No attributes")


def state(kind: str) -> dict[str, Any]:
    """A state of this kind: exactly the keys the kind allows, and the events it receives."""
    spec = KINDS[kind]
    props: dict[str, Any] = {"kind": {"const": kind}, "doc": {"type": "string", "description": "what this state is for"}}
    required = ["kind"]
    if kind == "halt":
        props["outcome"] = described_enum(OUTCOMES, "why the turn ended")
        props["message"] = {**ref("template_text"), "description": "the template delivered to every consumer when the turn ends here; never leave it empty"}
        required += ["outcome", "message"]
    else:
        props["on"] = {
            "type": "object",
            "description": f"the events a {kind} state receives, each with its transitions; handle every one",
            "additionalProperties": False,
            "properties": {
                e.name: {**ref(f"transitions.{signature(e.attrs)}"), "description": _event_doc(kind, e)} for e in spec.events
            },
        }
        required.append("on")
    if kind == "continue":
        props["prompt"] = name_ref("the template appended as the continuation prompt")
        required.append("prompt")
    if kind == "escalate":
        props["apply"] = {"type": "array", "items": ref("apply_action"), "description": "the actions performed on entering this state"}
        required.append("apply")
    assert set(props) == set(STATE_KEYS[kind]), kind
    return {
        "type": "object",
        "description": f"a {kind} state: {spec.doc}",
        "required": required,
        "additionalProperties": False,
        "properties": props,
    }


def state_dispatch() -> dict[str, Any]:
    """A state, checked against the schema of its own kind."""
    return {
        "type": "object",
        "description": "a state; its kind is the effect the interpreter performs on entering it",
        "required": ["kind"],
        "properties": {"kind": described_enum({k: s.doc for k, s in KINDS.items()}, "the effect performed on entering the state")},
        "allOf": [
            {"if": {"properties": {"kind": {"const": k}}, "required": ["kind"]}, "then": ref(f"state.{k}")} for k in KINDS
        ],
    }
