"""The guard sub-schemas: the structured predicates under ``when:``, keyed on their form key
(``all``, ``any``, ``not``, ``counter``, ``flag``, ``attr``), with the attributes of the event the
guard sits under offered and typed.
"""

from __future__ import annotations

from typing import Any

from .alphabet import COMPARATORS, Attr
from .schema_blocks import counter_ref, described_enum, flag_ref, ref


def attr_doc(a: Attr) -> str:
    """An event attribute for hover: name, type, values if closed, and what it means."""
    values = f", one of {', '.join(a.values)}" if a.values else ""
    return f"{a.name} ({a.type}{values}): {a.doc}"


def _attr_value(a: Attr) -> dict[str, Any]:
    if a.values:
        return {"enum": list(a.values)}
    return {"bool": {"type": "boolean"}, "int": {"type": "integer"}, "float": {"type": "number"}, "str": {"type": "string"}, "list": {"type": "array"}}[a.type]


def _attr_guard(attrs: tuple[Attr, ...]) -> dict[str, Any]:
    ordered = {"eq", "ne"}
    cases = []
    for a in attrs:
        value = _attr_value(a)
        props: dict[str, Any] = {op: (value if a.type not in ("bool", "list") or op in ordered else False) for op in COMPARATORS}
        props["in"] = {"type": "array", "items": value}
        props["contains"] = {"type": "string"} if a.type in ("str", "list") else False
        cases.append({"if": {"properties": {"attr": {"const": a.name}}, "required": ["attr"]}, "then": {"properties": props}})
    return {
        "type": "object",
        "required": ["attr"],
        "additionalProperties": False,
        "maxProperties": 2,
        "properties": {
            "attr": described_enum({a.name: attr_doc(a) for a in attrs}, "an attribute of this event; alone, it tests that the value is truthy"),
            "in": {"type": "array", "description": "the attribute equals one of these values"},
            "contains": {"description": "a str attribute contains this substring, or a list attribute this item"},
            **{op: {"description": f"compare the attribute ({op})"} for op in COMPARATORS},
        },
        "allOf": cases,
    }


def guard(sig: str, attrs: tuple[Attr, ...]) -> dict[str, Any]:
    """A guard under an event with these attributes; ``sig`` names its definition for recursion."""
    me = ref(f"guard.{sig}")
    forms: dict[str, dict[str, Any]] = {
        "all": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"all": {"type": "array", "items": me, "minItems": 1, "description": "every guard in the list holds"}},
        },
        "any": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"any": {"type": "array", "items": me, "minItems": 1, "description": "some guard in the list holds"}},
        },
        "not": {"type": "object", "additionalProperties": False, "properties": {"not": {**me, "description": "the guard does not hold"}}},
        "counter": ref("guard_counter"),
        "flag": ref("guard_flag"),
    }
    if attrs:
        forms["attr"] = _attr_guard(attrs)
    keys: set[str] = {"counter", *COMPARATORS, "flag", "is"}
    for body in forms.values():
        keys |= set(body.get("properties", ()))
    return {
        "description": "a structured predicate over this event's attributes, counters and flags; exactly one of "
        + ", ".join(forms),
        "type": "object",
        "propertyNames": {"enum": sorted(keys)},
        "oneOf": [{"required": [f]} for f in forms],
        "allOf": [{"if": {"required": [f]}, "then": body} for f, body in forms.items()],
    }


GUARD_COUNTER = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 2,
    "maxProperties": 2,
    "properties": {
        "counter": counter_ref("a counter or backstop", backstops=True),
        **{
            op: {"description": f"compare the counter ({op}) with an integer or its own cap", "anyOf": [{"type": "integer"}, {"const": "max"}]}
            for op in COMPARATORS
        },
    },
}
GUARD_FLAG = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "flag": flag_ref("a declared flag or a call flag"),
        "is": {"type": "boolean", "description": "test for set (true, the default) or not set (false)"},
    },
}
