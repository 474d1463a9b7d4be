"""The action sub-schema: the closed set of actions under ``do:`` and ``apply:``, a bare name or
``{name: argument}``, keyed on the action's name, each described for hover.
"""

from __future__ import annotations

from typing import Any

from .alphabet import ACTION_NAMES, ACTIONS_WITHOUT_ARG, CALL_FLAGS, FLAG_SHORTHANDS
from .schema_blocks import by_type, counter_ref, described_enum, flag_ref, name_ref

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


def _action_docs() -> dict[str, str]:
    docs = dict(ACTION_DOCS)
    for short, (flag, value) in FLAG_SHORTHANDS.items():
        docs[short] = f"{'set' if value else 'clear'} the call flag {flag}: {CALL_FLAGS[flag]}"
    return {a: docs[a] for a in ACTION_NAMES}


def action() -> dict[str, Any]:
    """An action from the closed set: a bare name, or ``{name: argument}``."""
    docs = _action_docs()
    bare = {a: d for a, d in docs.items() if a in (*ACTIONS_WITHOUT_ARG, *FLAG_SHORTHANDS)}
    arg: dict[str, dict[str, Any]] = {
        "increment": {"increment": counter_ref(docs["increment"], backstops=False), "by": {"type": "integer", "minimum": 1, "description": "how much to add (default 1)"}},
        "reset": {"reset": counter_ref(docs["reset"], backstops=False)},
        "set": {"set": flag_ref(docs["set"])},
        "clear": {"clear": flag_ref(docs["clear"])},
        "append": {"append": name_ref(docs["append"] + " (a template name)")},
        "nudge": {"nudge": name_ref(docs["nudge"] + " (a template name)")},
        "refuse_tools": {"refuse_tools": name_ref(docs["refuse_tools"] + " (a template name)")},
        "backoff": {"backoff": name_ref(docs["backoff"] + " (a schedule name)"), "attempt": name_ref("the counter whose value picks the delay")},
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
    return by_type(
        "an action from the closed set: a bare name, or {name: argument}",
        string=described_enum(names, "an action without an argument"),
        object=mapping,
    )
