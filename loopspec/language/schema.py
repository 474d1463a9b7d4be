"""A JSON Schema of the policy language, for editors (yaml-language-server) to complete and check.

Built from the same alphabet tables the validator reads, so names cannot drift apart. Two things
make it useful in an editor rather than merely correct:

* **It is keyed on ``kind``.** A state is checked against the schema of its own kind (``if``/``then``
  on ``kind``), not against a ``oneOf`` of seven kinds, so a misspelt key is flagged on that key and a
  misspelt kind on ``kind``, instead of the whole state failing to match anything. Guards and actions
  are keyed the same way on their form key. ``on:`` lists the events of the state's kind, and a guard
  under an event offers that event's attributes, typed.
* **Everything has a description** (kinds, events with their attributes, outcomes, call flags,
  actions, settings), for hover and completion.

It is written in JSON Schema draft-07, the draft yaml-language-server (VS Code's YAML extension)
validates with: ``if``/``then``, ``const`` and ``propertyNames``, definitions under ``definitions``,
and ``dependencies`` rather than the later ``dependentRequired``.

It also rejects the values the validator rejects where a schema can say so (names that are not
lower_snake_case, a non-positive setting, a cap out of range, a template field that is not a known
variable). What it cannot say (a target state exists, a counter is declared, one counter incremented
twice in a transition) is still the validator's job: run ``loopspec validate``.
"""

from __future__ import annotations

from typing import Any

from .alphabet import (
    ACTION_NAMES,
    ACTIONS_WITHOUT_ARG,
    BACKSTOPS,
    CALL_FLAGS,
    COMPARATORS,
    FLAG_SHORTHANDS,
    GUARDRAIL_CODES,
    KINDS,
    NAME_RE,
    OUTCOMES,
    SETTINGS_KEYS,
    STATE_KEYS,
    TEMPLATE_GLOBALS,
    VERDICTS,
    Attr,
    template_variables,
)

SCHEMA_ID = "https://loopspec.dev/schema/policy-1.json"
DRAFT = "http://json-schema.org/draft-07/schema#"

NAME_PATTERN = NAME_RE.pattern
NAME_ERROR = "use lower_snake_case: a letter, then letters, digits or underscores"

# What each action does, for hover. The flag shorthands are described from CALL_FLAGS below.
ACTION_DOCS: dict[str, str] = {
    "increment": "add to a counter (by: N, default 1); the transition is not enabled if that would pass the counter's cap",
    "reset": "set a counter back to 0; every reset is written on a transition, so a reader sees it",
    "set": "set a flag (a declared flag or a call flag)",
    "clear": "clear a flag",
    "append": "append the rendered template as a user message before the next call",
    "nudge": "the same as append (reads better for a one-line reminder)",
    "drop_tool_calls": "drop the truncated, partial or invalid tool calls of the last reply: they never enter the history and never run",
    "backoff": "wait on a backoff schedule; attempt: COUNTER picks the entry (read before the counter's increment)",
    "compact": "compact the working copy of the prompt; the full trajectory is kept",
    "refuse_tools": "answer every call of the pending batch with the rendered template as its result; run none",
}
_SETTINGS_DOCS: dict[str, str] = {
    "stall_timeout": "seconds without a chunk before the stream emits `stalled` (default 60)",
    "request_timeout": "seconds without response headers before the call emits `timeout` (default 120)",
    "max_tokens": "output-token limit sent with each request",
    "boosted_max_tokens": "the limit sent while the call flag max_tokens_boosted is set",
    "fallback_model": "the model used while the call flag fallback_model is set",
    "compaction_keep_last": "messages kept verbatim when the prompt is compacted (default 6)",
    "reasoning_effort": "reasoning-effort parameter sent unless effort_omitted is set",
    "turn_deadline": "seconds a whole turn may take; past it the next call, stream read or tool batch observes `cancelled`",
}
_GUARDRAIL_DOCS: dict[str, str] = {
    "repeated_exact_failure": "the same call (tool and canonical arguments) failed again with the same result",
    "same_tool_failure": "one tool keeps failing whatever its arguments",
    "no_progress": "identical calls keep returning identical results",
    "doom_loop": "the batches repeat a cycle of 1 to max_period identical calls with identical results",
}
_VERDICT_DOCS: dict[str, str] = {
    "allow": "switch the detector off",
    "warn": "the event carries verdict 'warn'",
    "correct": "the event carries verdict 'correct'",
    "halt": "the event carries verdict 'halt'",
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/definitions/{name}"}


def _by_type(description: str, **cases: dict[str, Any]) -> dict[str, Any]:
    """A value of one of several JSON types, each checked by its own schema.

    Unlike ``anyOf``, an error is reported against the schema of the value's own type, at the key
    that is wrong, instead of "not valid under any of the given schemas" on the whole value.
    """
    return {
        "description": description,
        "type": list(cases),
        "allOf": [{"if": {"type": t}, "then": schema} for t, schema in cases.items()],
    }


def _enum(values: dict[str, str], description: str) -> dict[str, Any]:
    """An enumeration whose values each have a description (shown by VS Code on completion)."""
    return {
        "description": description,
        "enum": list(values),
        "enumDescriptions": list(values.values()),
    }


def _name(description: str) -> dict[str, Any]:
    return {**_ref("name"), "description": description}


def _template_text() -> dict[str, Any]:
    """A template string: ``{name}`` of a known variable, ``{{``/``}}`` for a literal brace."""
    variables = "|".join(sorted(template_variables(), key=lambda v: (-len(v), v)))
    return {
        "type": "string",
        "pattern": r"^(?:[^{}]|\{\{|\}\}|\{(?:" + variables + r")\})*$",
        "patternErrorMessage": "a template substitutes {name} for a known variable only "
        "(an event attribute or a global such as {response}); write a literal brace as {{ or }}",
        "description": "template text. Variables: the attributes of any event, plus "
        + "; ".join(f"{{{k}}} {v}" for k, v in TEMPLATE_GLOBALS.items()),
    }


def _flag_name(description: str) -> dict[str, Any]:
    return {**_ref("flag_name"), "description": description}


def _counter_name(description: str, backstops: bool) -> dict[str, Any]:
    # a backstop is counted by entering its kind of state, never by an action
    return {**_ref("name" if backstops else "counter_name"), "description": description}


# -- guards ---------------------------------------------------------------------------------------


def _attr_doc(a: Attr) -> str:
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
            "attr": _enum({a.name: _attr_doc(a) for a in attrs}, "an attribute of this event; alone, it tests that the value is truthy"),
            "in": {"type": "array", "description": "the attribute equals one of these values"},
            "contains": {"description": "a str attribute contains this substring, or a list attribute this item"},
            **{op: {"description": f"compare the attribute ({op})"} for op in COMPARATORS},
        },
        "allOf": cases,
    }


def _guard(sig: str, attrs: tuple[Attr, ...]) -> dict[str, Any]:
    """A guard under an event with these attributes; ``sig`` names its definition for recursion."""
    me = _ref(f"guard.{sig}")
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
        "counter": _ref("guard_counter"),
        "flag": _ref("guard_flag"),
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
        "counter": _counter_name("a counter or backstop", backstops=True),
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
        "flag": _flag_name("a declared flag or a call flag"),
        "is": {"type": "boolean", "description": "test for set (true, the default) or not set (false)"},
    },
}


# -- actions --------------------------------------------------------------------------------------


def _action_docs() -> dict[str, str]:
    docs = dict(ACTION_DOCS)
    for short, (flag, value) in FLAG_SHORTHANDS.items():
        docs[short] = f"{'set' if value else 'clear'} the call flag {flag}: {CALL_FLAGS[flag]}"
    return {a: docs[a] for a in ACTION_NAMES}


def _action() -> dict[str, Any]:
    docs = _action_docs()
    bare = {a: d for a, d in docs.items() if a in (*ACTIONS_WITHOUT_ARG, *FLAG_SHORTHANDS)}
    arg: dict[str, dict[str, Any]] = {
        "increment": {"increment": _counter_name(docs["increment"], backstops=False), "by": {"type": "integer", "minimum": 1, "description": "how much to add (default 1)"}},
        "reset": {"reset": _counter_name(docs["reset"], backstops=False)},
        "set": {"set": _flag_name(docs["set"])},
        "clear": {"clear": _flag_name(docs["clear"])},
        "append": {"append": _name(docs["append"] + " (a template name)")},
        "nudge": {"nudge": _name(docs["nudge"] + " (a template name)")},
        "refuse_tools": {"refuse_tools": _name(docs["refuse_tools"] + " (a template name)")},
        "backoff": {"backoff": _name(docs["backoff"] + " (a schedule name)"), "attempt": _name("the counter whose value picks the delay")},
        **{a: {a: {"enum": [True, None], "description": d}} for a, d in bare.items()},
    }
    keys = sorted({k for props in arg.values() for k in props})
    mapping = {
        "type": "object",
        "description": "an action with its argument, {name: argument}",
        "propertyNames": {"enum": keys},
        "oneOf": [{"required": [a]} for a in arg],
        "allOf": [{"if": {"required": [a]}, "then": {"additionalProperties": False, "properties": props}} for a, props in arg.items()],
    }
    names = {a: d for a, d in bare.items()}
    return _by_type(
        "an action from the closed set: a bare name, or {name: argument}",
        string=_enum(names, "an action without an argument"),
        object=mapping,
    )


# -- states ---------------------------------------------------------------------------------------


def _signature(attrs: tuple[Attr, ...]) -> str:
    return "-".join(a.name for a in attrs) or "none"


def _transitions(sig: str) -> dict[str, Any]:
    transition = {
        "type": "object",
        "required": ["to"],
        "additionalProperties": False,
        "description": "a transition: taken when its guard holds and its increments stay within their caps",
        "properties": {
            "when": {**_ref(f"guard.{sig}"), "description": "the guard; without it the transition is always enabled"},
            "do": {"type": "array", "items": _ref("action"), "description": "actions, run in order"},
            "to": _name("the target state"),
            "bounded_by": {
                **_enum(BACKSTOPS, "declares that this edge repeats until that backstop ends it (the normal tool loop)")
            },
            "doc": {"type": "string", "description": "a note for readers"},
        },
    }
    target = _name("a target state: the transition is always taken")
    one = _by_type("a state name or a transition", string=target, object=transition)
    return _by_type(
        "a state name, one transition, or a list of them tried in order (the first enabled one wins)",
        string=target,
        object=transition,
        array={"items": one, "minItems": 1},
    )


def _event_doc(kind: str, event: Any) -> str:
    attrs = "; ".join(_attr_doc(a) for a in event.attrs)
    return f"{event.doc}" + (f". Attributes: {attrs}" if attrs else ". No attributes")


def _state(kind: str) -> dict[str, Any]:
    spec = KINDS[kind]
    props: dict[str, Any] = {"kind": {"const": kind}, "doc": {"type": "string", "description": "what this state is for"}}
    required = ["kind"]
    if kind == "halt":
        props["outcome"] = _enum(OUTCOMES, "why the turn ended")
        props["message"] = {**_ref("template_text"), "description": "the template delivered to every consumer when the turn ends here; never leave it empty"}
        required += ["outcome", "message"]
    else:
        props["on"] = {
            "type": "object",
            "description": f"the events a {kind} state receives, each with its transitions; handle every one",
            "additionalProperties": False,
            "properties": {
                e.name: {**_ref(f"transitions.{_signature(e.attrs)}"), "description": _event_doc(kind, e)} for e in spec.events
            },
        }
        required.append("on")
    if kind == "continue":
        props["prompt"] = _name("the template appended as the continuation prompt")
        required.append("prompt")
    if kind == "escalate":
        props["apply"] = {"type": "array", "items": _ref("apply_action"), "description": "the actions performed on entering this state"}
        required.append("apply")
    assert set(props) == set(STATE_KEYS[kind]), kind
    return {
        "type": "object",
        "description": f"a {kind} state: {spec.doc}",
        "required": required,
        "additionalProperties": False,
        "properties": props,
    }


def _state_dispatch() -> dict[str, Any]:
    """A state, checked against the schema of its own kind."""
    return {
        "type": "object",
        "description": "a state; its kind is the effect the interpreter performs on entering it",
        "required": ["kind"],
        "properties": {"kind": _enum({k: s.doc for k, s in KINDS.items()}, "the effect performed on entering the state")},
        "allOf": [
            {"if": {"properties": {"kind": {"const": k}}, "required": ["kind"]}, "then": _ref(f"state.{k}")} for k in KINDS
        ],
    }


# -- the document ---------------------------------------------------------------------------------


def _settings() -> dict[str, Any]:
    props: dict[str, Any] = {}
    for key, types in SETTINGS_KEYS.items():
        if str in types:
            t: dict[str, Any] = {"type": ["string", "null"]}
        else:
            t = {"type": ["number" if float in types else "integer", "null"], "exclusiveMinimum": 0}
        props[key] = {**t, "description": _SETTINGS_DOCS.get(key, key)}
    return {"type": "object", "additionalProperties": False, "properties": props, "description": "request and effect settings"}


def _backstop(name: str) -> dict[str, Any]:
    props: dict[str, Any] = {
        "max": {"type": "integer", "minimum": 1, "maximum": 100_000, "description": f"the most {name.replace('_', ' ')} in one turn"},
        "exhausted": _name(
            "the state a transition goes to instead when the budget is spent"
            + (" (a halt state)" if name == "model_calls" else " (not a tool_exec state)")
        ),
        "warn_at": {"type": "integer", "minimum": 1, "description": "when the counter reaches this, append the warning template once"},
        "warning": _name("the template appended at warn_at"),
        "doc": {"type": "string"},
    }
    if name == "model_calls":
        props["wrap_up"] = _name("where ordinary calls go when one call is left: an escalate (or continue) state that prepares the last call")
    return {
        "type": "object",
        "description": BACKSTOPS[name],
        "required": ["max", "exhausted"],
        "additionalProperties": False,
        "dependencies": {"warn_at": ["warning"]},
        "properties": props,
    }


def json_schema() -> dict[str, Any]:
    """The schema document (draft-07)."""
    sigs = {_signature(e.attrs): e.attrs for k in KINDS.values() for e in k.events}
    defs: dict[str, Any] = {
        "name": {"type": "string", "pattern": NAME_PATTERN, "patternErrorMessage": NAME_ERROR},
        "action": _action(),
        "apply_action": {
            "description": "an action performed on entering an escalate state; it cannot increment a counter "
            "(nothing could stop it at its cap): increment on the transition into the state instead",
            "allOf": [_ref("action"), {"not": {"type": "object", "required": ["increment"]}}],
        },
        "flag_name": {"anyOf": [_enum(CALL_FLAGS, "a built-in call flag"), _ref("name")]},
        "counter_name": {"allOf": [_ref("name"), {"not": {"enum": list(BACKSTOPS)}}]},
        "template_text": _template_text(),
        "guard_counter": GUARD_COUNTER,
        "guard_flag": GUARD_FLAG,
        "state": _state_dispatch(),
        **{f"state.{k}": _state(k) for k in KINDS},
        **{f"guard.{s}": _guard(s, attrs) for s, attrs in sigs.items()},
        **{f"transitions.{s}": _transitions(s) for s in sigs},
    }
    names = _ref("name")
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "title": "loopspec policy",
        "description": "An LLM agent's turn lifecycle as a state machine (loopspec language version 1). "
        "Shapes only: run `loopspec validate` for references between names.",
        "type": "object",
        "required": ["loopspec", "initial", "backstops", "states"],
        "additionalProperties": False,
        "properties": {
            "loopspec": {"const": 1, "description": "the language version; must be 1"},
            "name": {"type": "string", "description": "the policy's name, used in graphs and reports"},
            "doc": {"type": "string", "description": "what the policy is for"},
            "initial": _name("the state a turn starts in, usually a call state"),
            "settings": _settings(),
            "backoff": {
                "type": "object",
                "description": "named wait schedules: seconds before attempt 1, 2, ...; the last entry repeats",
                "propertyNames": names,
                "additionalProperties": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 86400}, "minItems": 1},
            },
            "backstops": {
                "type": "object",
                "description": "the global ceilings of one turn; both are required",
                "required": list(BACKSTOPS),
                "additionalProperties": False,
                "properties": {name: _backstop(name) for name in BACKSTOPS},
            },
            "guardrails": {
                "type": "object",
                "description": "tool-loop detectors to switch on; a detector not listed is off",
                "additionalProperties": False,
                "properties": {
                    code: {
                        "type": "object",
                        "description": _GUARDRAIL_DOCS[code],
                        "additionalProperties": False,
                        "properties": {
                            "threshold": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "fire when the count reaches this (default 3)"},
                            "verdict": _enum({v: _VERDICT_DOCS[v] for v in VERDICTS}, "what the detector asks the policy for (default halt)"),
                            "max_period": {"type": "integer", "minimum": 1, "maximum": 5, "description": "longest cycle doom_loop looks for (default 5)"},
                            "doc": {"type": "string"},
                        },
                    }
                    for code in GUARDRAIL_CODES
                },
            },
            "counters": {
                "type": "object",
                "description": "bounded counters: a cap can never be exceeded, by construction",
                "propertyNames": {"allOf": [names, {"not": {"enum": list(BACKSTOPS)}}]},
                "additionalProperties": {
                    "type": "object",
                    "required": ["max"],
                    "additionalProperties": False,
                    "properties": {
                        "max": {"type": "integer", "minimum": 1, "maximum": 10_000, "description": "the cap; starts at 0 each turn"},
                        "doc": {"type": "string"},
                    },
                },
            },
            "flags": {
                "type": "object",
                "description": "the policy's own flags (the call flags are built in; do not declare them)",
                "propertyNames": {"allOf": [names, {"not": {"enum": list(CALL_FLAGS)}}]},
                "additionalProperties": {
                    "anyOf": [
                        {"type": "null"},
                        {"type": "object", "additionalProperties": False, "properties": {"doc": {"type": "string"}}},
                    ]
                },
            },
            "templates": {
                "type": "object",
                "description": "named message templates",
                "propertyNames": names,
                "additionalProperties": _ref("template_text"),
            },
            "states": {
                "type": "object",
                "description": "the states of the machine, by name",
                "minProperties": 1,
                "propertyNames": names,
                "additionalProperties": _ref("state"),
            },
        },
        "definitions": defs,
    }
