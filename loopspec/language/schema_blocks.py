"""The small JSON Schema fragments the policy schema is assembled from: references, per-type
dispatch, described enumerations and references to the name definitions.

Kept apart from the guard, action, state and document schemas that all use them, so each of those
reads as the shape it describes.
"""

from __future__ import annotations

from typing import Any


def ref(name: str) -> dict[str, Any]:
    """A reference to ``#/definitions/<name>``."""
    return {"$ref": f"#/definitions/{name}"}


def by_type(description: str, **cases: dict[str, Any]) -> dict[str, Any]:
    """A value of one of several JSON types, each checked by its own schema.

    Unlike ``anyOf``, an error is reported against the schema of the value's own type, at the key
    that is wrong, instead of "not valid under any of the given schemas" on the whole value.
    """
    return {
        "description": description,
        "type": list(cases),
        "allOf": [{"if": {"type": t}, "then": schema} for t, schema in cases.items()],
    }


def described_enum(values: dict[str, str], description: str) -> dict[str, Any]:
    """An enumeration whose values each have a description (shown by VS Code on completion)."""
    return {
        "description": description,
        "enum": list(values),
        "enumDescriptions": list(values.values()),
    }


def name_ref(description: str) -> dict[str, Any]:
    """A lower_snake_case name (a state, template, schedule or counter), described for hover."""
    return {**ref("name"), "description": description}


def flag_ref(description: str) -> dict[str, Any]:
    """A declared flag or a built-in call flag."""
    return {**ref("flag_name"), "description": description}


def counter_ref(description: str, backstops: bool) -> dict[str, Any]:
    """A counter name; with ``backstops`` a backstop too (read by guards, never changed by actions)."""
    # a backstop is counted by entering its kind of state, never by an action
    return {**ref("name" if backstops else "counter_name"), "description": description}
