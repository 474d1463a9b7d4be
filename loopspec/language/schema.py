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

This module assembles the document (top-level keys, settings, backstops, guardrails, counters,
flags, templates); the sub-schemas it refers to are built in ``schema_guards``, ``schema_actions``
and ``schema_states`` from the fragments in ``schema_blocks``.
"""

from __future__ import annotations

from typing import Any

from .alphabet import (
    BACKSTOPS,
    BUDGETS,
    CALL_FLAGS,
    GUARDRAIL_CODES,
    KINDS,
    MAX_SECONDS,
    NAME_RE,
    SECONDS_SETTINGS,
    SETTINGS_KEYS,
    TEMPLATE_GLOBALS,
    VERDICTS,
    template_variables,
)
from .schema_actions import action
from .schema_blocks import described_enum, name_ref, ref
from .schema_guards import GUARD_COUNTER, GUARD_FLAG, guard
from .schema_states import signature, state, state_dispatch, transitions

SCHEMA_ID = "https://loopspec.dev/schema/policy-1.json"
DRAFT = "http://json-schema.org/draft-07/schema#"

NAME_PATTERN = NAME_RE.pattern
NAME_ERROR = "use lower_snake_case: a letter, then letters, digits or underscores"

_SETTINGS_DOCS: dict[str, str] = {
    "stall_timeout": "seconds without a chunk before the stream emits `stalled` (default 60)",
    "request_timeout": "seconds without response headers before the call emits `timeout` (default 120)",
    "max_tokens": "output-token limit sent with each request",
    "boosted_max_tokens": "the limit sent while the call flag max_tokens_boosted is set",
    "fallback_model": "the model used while the call flag fallback_model is set",
    "compaction_keep_last": "messages kept verbatim when the prompt is compacted (default 6)",
    "reasoning_effort": "reasoning-effort parameter sent unless effort_omitted is set",
    "turn_deadline": "seconds a whole turn may take; every wait (request, chunk, backoff, tool) is cut at it and the call, stream or tool batch observes `cancelled`",
    "tool_timeout": "seconds one tool call may run; past it the call is answered 'timed out' and the batch emits `timeout`",
    "tool_batch_timeout": "seconds a whole tool batch may run; past it the calls still running are answered 'timed out' and the batch emits `timeout`",
    "max_message_bytes": "the most a rendered halt message or prompt may hold, in UTF-8 bytes (one copy of {response} "
    "not counted); longer text is cut with a visible marker (default 65536)",
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


def _settings() -> dict[str, Any]:
    props: dict[str, Any] = {}
    for key, types in SETTINGS_KEYS.items():
        if str in types:
            t: dict[str, Any] = {"type": ["string", "null"]}
        else:
            t = {"type": ["number" if float in types else "integer", "null"], "exclusiveMinimum": 0}
            if key in SECONDS_SETTINGS:
                t["maximum"] = MAX_SECONDS
        props[key] = {**t, "description": _SETTINGS_DOCS.get(key, key)}
    return {"type": "object", "additionalProperties": False, "properties": props, "description": "request and effect settings"}


def _backstop(name: str) -> dict[str, Any]:
    props: dict[str, Any] = {
        "max": {"type": "integer", "minimum": 1, "maximum": 100_000, "description": f"the most {name.replace('_', ' ')} in one turn"},
        "exhausted": name_ref(
            "the state a transition goes to instead when the budget is spent"
            + (" (a halt state)" if name == "model_calls" else " (not a tool_exec state)")
        ),
        "warn_at": {"type": "integer", "minimum": 1, "description": "when the counter reaches this, append the warning template once"},
        "warning": name_ref("the template appended at warn_at"),
        "doc": {"type": "string"},
    }
    if name == "model_calls":
        props["wrap_up"] = name_ref("where ordinary calls go when one call is left: an escalate (or continue) state that prepares the last call")
    return {
        "type": "object",
        "description": BACKSTOPS[name],
        "required": ["max", "exhausted"],
        "additionalProperties": False,
        "dependencies": {"warn_at": ["warning"]},
        "properties": props,
    }


def _budget(name: str) -> dict[str, Any]:
    amount = {"type": "number", "exclusiveMinimum": 0, "maximum": 1e12}
    return {
        "type": "object",
        "description": BUDGETS[name],
        "required": ["max", "exhausted"],
        "additionalProperties": False,
        "dependencies": {"warn_at": ["warning"], "warning": ["warn_at"]},
        "properties": {
            "max": dict(amount, description="the cap; a model call entered once the amount reached it goes to wrap_up or exhausted"),
            "exhausted": name_ref("the halt state the turn ends in once the budget is spent"),
            "wrap_up": name_ref("where the first call past the cap goes instead: an escalate (or continue) state that prepares one last call"),
            "warn_at": dict(amount, description="when the amount reaches this, append the warning template once, with the next call"),
            "warning": name_ref("the template appended at warn_at"),
            "min_per_call": dict(amount, description="each model call counts as at least this much; then the budget bounds the turn's model calls, and check says which loops it bounds"),
            "doc": {"type": "string"},
        },
    }


def json_schema() -> dict[str, Any]:
    """The schema document (draft-07)."""
    sigs = {signature(e.attrs): e.attrs for k in KINDS.values() for e in k.events}
    defs: dict[str, Any] = {
        "name": {"type": "string", "pattern": NAME_PATTERN, "patternErrorMessage": NAME_ERROR},
        "action": action(),
        "apply_action": {
            "description": "an action performed on entering an escalate state; it cannot increment a counter "
            "(nothing could stop it at its cap): increment on the transition into the state instead",
            "allOf": [ref("action"), {"not": {"type": "object", "required": ["increment"]}}],
        },
        "flag_name": {"anyOf": [described_enum(CALL_FLAGS, "a built-in call flag"), ref("name")]},
        "counter_name": {"allOf": [ref("name"), {"not": {"enum": list(BACKSTOPS)}}]},
        "template_text": _template_text(),
        "guard_counter": GUARD_COUNTER,
        "guard_flag": GUARD_FLAG,
        "state": state_dispatch(),
        **{f"state.{k}": state(k) for k in KINDS},
        **{f"guard.{s}": guard(s, attrs) for s, attrs in sigs.items()},
        **{f"transitions.{s}": transitions(s) for s in sigs},
    }
    names = ref("name")
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
            "initial": name_ref("the state a turn starts in, usually a call state"),
            "settings": _settings(),
            "backoff": {
                "type": "object",
                "description": "named wait schedules: seconds before attempt 1, 2, ...; the last entry repeats; "
                "max_wait caps what a Retry-After may ask (default 60)",
                "propertyNames": names,
                "properties": {
                    "max_wait": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SECONDS,
                                 "description": "the longest a backoff waits, whatever Retry-After asks (seconds, default 60)"},
                },
                "additionalProperties": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": MAX_SECONDS}, "minItems": 1},
            },
            "backstops": {
                "type": "object",
                "description": "the global ceilings of one turn; both are required",
                "required": list(BACKSTOPS),
                "additionalProperties": False,
                "properties": {name: _backstop(name) for name in BACKSTOPS},
            },
            "budgets": {
                "type": "object",
                "description": "usage budgets (optional): amounts measured when a model call is entered",
                "additionalProperties": False,
                "properties": {name: _budget(name) for name in BUDGETS},
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
                            "verdict": described_enum({v: _VERDICT_DOCS[v] for v in VERDICTS}, "what the detector asks the policy for (default halt)"),
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
                "additionalProperties": ref("template_text"),
            },
            "approvals": _approvals_schema(defs),
            "states": {
                "type": "object",
                "description": "the states of the machine, by name",
                "minProperties": 1,
                "propertyNames": names,
                "additionalProperties": ref("state"),
            },
        },
        "definitions": defs,
    }


def _approvals_schema(defs: dict[str, Any]) -> dict[str, Any]:
    """The ``approvals:`` section (see :mod:`loopspec.language.approvals`); its condition goes in ``defs``."""
    from .approvals import APPROVAL_LEVELS, ARG_OPS

    condition: dict[str, Any] = {
        "type": "object",
        "description": "a test on the call's arguments: exactly one of all, any, not, arg",
        "minProperties": 1,
        "properties": {
            "all": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/approval_condition"}},
            "any": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/approval_condition"}},
            "not": {"$ref": "#/definitions/approval_condition"},
            "arg": {"type": "string", "minLength": 1, "description": "the argument tested"},
            "default": {"description": "stands in for an argument the call omits or sets to null"},
            **{op: {"description": f"the argument {op} this"} for op in ARG_OPS},
        },
        "additionalProperties": False,
    }
    defs["approval_condition"] = condition
    return {
        "type": "object",
        "description": "which tool calls need a person, and what auto-approval may run within a spending cap",
        "additionalProperties": False,
        "properties": {
            "auto_approve": {"type": "boolean", "description": "auto-approval is on unless the caller turns it off"},
            "spending_cap": {"type": "number", "minimum": 0, "description": "what auto-approved calls may spend in a session"},
            "doc": {"type": "string"},
            "rules": {
                "type": "array",
                "description": "first matching rule wins; a tool no rule names runs without asking",
                "items": {
                    "type": "object",
                    "required": ["tool", "approval"],
                    "additionalProperties": False,
                    "properties": {
                        "tool": {"type": "string", "minLength": 1},
                        "when": {"$ref": "#/definitions/approval_condition"},
                        "approval": {"enum": list(APPROVAL_LEVELS), "description": "none: runs; ask: a person or auto-approval "
                                     "under the cap; person: always a person"},
                        "doc": {"type": "string"},
                    },
                },
            },
        },
    }
