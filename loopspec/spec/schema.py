"""A JSON Schema of the policy language, for editors (yaml-language-server) to complete and check.

Built from the same alphabet tables the validator reads. The schema covers shape only; references
between names (a target state exists, a counter is declared) are the validator's job.
"""

from __future__ import annotations

from typing import Any

from .alphabet import BACKSTOPS, CALL_FLAGS, FLAG_SHORTHANDS, KINDS, OUTCOMES
from .model import COMPARATORS
from .validate import GUARDRAIL_CODES, SETTINGS_KEYS, VERDICTS

NAME = {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"}


def _guard() -> dict[str, Any]:
    ref = {"$ref": "#/$defs/guard"}
    cmp = {op: {"oneOf": [{"type": "integer"}, {"const": "max"}]} for op in COMPARATORS}
    attr_cmp: dict[str, dict[str, Any]] = {op: {} for op in COMPARATORS}
    return {
        "description": "A structured predicate over event attributes, counters and flags.",
        "oneOf": [
            {"type": "object", "required": ["all"], "additionalProperties": False, "properties": {"all": {"type": "array", "items": ref, "minItems": 1}}},
            {"type": "object", "required": ["any"], "additionalProperties": False, "properties": {"any": {"type": "array", "items": ref, "minItems": 1}}},
            {"type": "object", "required": ["not"], "additionalProperties": False, "properties": {"not": ref}},
            {"type": "object", "required": ["counter"], "additionalProperties": False, "properties": {"counter": NAME, **cmp}, "minProperties": 2, "maxProperties": 2},
            {"type": "object", "required": ["flag"], "additionalProperties": False, "properties": {"flag": NAME, "is": {"type": "boolean"}}},
            {
                "type": "object",
                "required": ["attr"],
                "additionalProperties": False,
                "properties": {"attr": NAME, "in": {"type": "array"}, "contains": {"type": "string"}, **attr_cmp},
                "maxProperties": 2,
            },
        ],
    }


def _action() -> dict[str, Any]:
    bare = ["drop_tool_calls", "compact", *FLAG_SHORTHANDS]
    one_arg = ["reset", "set", "clear", "append", "nudge", "refuse_tools"]
    return {
        "description": "An action from the closed set.",
        "oneOf": [
            {"enum": bare},
            *[
                {"type": "object", "required": [a], "additionalProperties": False, "properties": {a: NAME}}
                for a in one_arg
            ],
            {
                "type": "object",
                "required": ["increment"],
                "additionalProperties": False,
                "properties": {"increment": NAME, "by": {"type": "integer", "minimum": 1}},
            },
            {
                "type": "object",
                "required": ["backoff"],
                "additionalProperties": False,
                "properties": {"backoff": NAME, "attempt": NAME},
            },
        ],
    }


def _transitions() -> dict[str, Any]:
    transition = {
        "type": "object",
        "required": ["to"],
        "additionalProperties": False,
        "properties": {
            "when": {"$ref": "#/$defs/guard"},
            "do": {"type": "array", "items": {"$ref": "#/$defs/action"}},
            "to": NAME,
            "bounded_by": {"enum": list(BACKSTOPS)},
            "doc": {"type": "string"},
        },
    }
    one = {"oneOf": [NAME, transition]}
    return {"oneOf": [NAME, transition, {"type": "array", "items": one, "minItems": 1}]}


def _state(kind: str) -> dict[str, Any]:
    spec = KINDS[kind]
    props: dict[str, Any] = {"kind": {"const": kind}, "doc": {"type": "string"}}
    required = ["kind"]
    if kind == "halt":
        props["outcome"] = {"enum": list(OUTCOMES)}
        props["message"] = {"type": "string", "description": "template delivered to every consumer"}
        required += ["outcome", "message"]
    else:
        props["on"] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {e.name: {"description": e.doc, "$ref": "#/$defs/transitions"} for e in spec.events},
        }
        required.append("on")
    if kind == "continue":
        props["prompt"] = NAME
        required.append("prompt")
    if kind == "escalate":
        props["apply"] = {"type": "array", "items": {"$ref": "#/$defs/action"}}
        required.append("apply")
    return {
        "type": "object",
        "description": spec.doc,
        "required": required,
        "additionalProperties": False,
        "properties": props,
    }


def json_schema() -> dict[str, Any]:
    """The schema document (draft 2020-12)."""
    settings_props = {
        k: {"type": "number" if float in t else ("integer" if int in t else "string")} for k, t in SETTINGS_KEYS.items()
    }
    backstop = {
        "type": "object",
        "required": ["max", "exhausted"],
        "additionalProperties": False,
        "properties": {
            "max": {"type": "integer", "minimum": 1},
            "exhausted": NAME,
            "wrap_up": NAME,
            "warn_at": {"type": "integer", "minimum": 1},
            "warning": NAME,
            "doc": {"type": "string"},
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://loopspec.dev/schema/policy-1.json",
        "title": "loopspec policy",
        "type": "object",
        "required": ["loopspec", "initial", "backstops", "states"],
        "additionalProperties": False,
        "properties": {
            "loopspec": {"const": 1},
            "name": {"type": "string"},
            "doc": {"type": "string"},
            "initial": NAME,
            "settings": {"type": "object", "additionalProperties": False, "properties": settings_props},
            "backoff": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 1},
            },
            "backstops": {
                "type": "object",
                "required": list(BACKSTOPS),
                "additionalProperties": False,
                "properties": {name: {**backstop, "description": doc} for name, doc in BACKSTOPS.items()},
            },
            "guardrails": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    code: {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "threshold": {"type": "integer", "minimum": 1},
                            "verdict": {"enum": list(VERDICTS)},
                            "max_period": {"type": "integer", "minimum": 1, "maximum": 5},
                            "doc": {"type": "string"},
                        },
                    }
                    for code in GUARDRAIL_CODES
                },
            },
            "counters": {
                "type": "object",
                "propertyNames": {"not": {"enum": list(BACKSTOPS)}},
                "additionalProperties": {
                    "type": "object",
                    "required": ["max"],
                    "additionalProperties": False,
                    "properties": {"max": {"type": "integer", "minimum": 1}, "doc": {"type": "string"}},
                },
            },
            "flags": {
                "type": "object",
                "propertyNames": {"not": {"enum": list(CALL_FLAGS)}},
                "additionalProperties": {
                    "oneOf": [
                        {"type": "null"},
                        {"type": "object", "additionalProperties": False, "properties": {"doc": {"type": "string"}}},
                    ]
                },
            },
            "templates": {"type": "object", "additionalProperties": {"type": "string"}},
            "states": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": {"oneOf": [_state(k) for k in KINDS]},
            },
        },
        "$defs": {"guard": _guard(), "action": _action(), "transitions": _transitions()},
    }
