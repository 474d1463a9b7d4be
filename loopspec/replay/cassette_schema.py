"""The JSON Schema of a cassette file, for editors and external tools.

It describes what :mod:`loopspec.replay.cassette_reader` reads, built from the same key lists (in
:mod:`loopspec.replay.cassette`), so the two cannot drift apart on names. The reader remains the
authority: it also checks what a schema cannot say (an ``sse_file`` exists, a fault position is
inside the stream, positions for diagnostics).
Cheap to import: no litellm.
"""

from __future__ import annotations

from typing import Any

from loopspec.language.alphabet import OUTCOMES

from loopspec.language.properties import PROPERTY_DOCS as _PROPERTY_DOCS
from loopspec.language.properties import RUN_PROPERTIES

from .cassette import CASSETTE_VERSION, EXPECT_KEYS, FAULT_KEYS, INTERACTION_FORMS, PROPERTIES, TOP_KEYS
from .cassette_model import CANCEL_KEYS, CANCEL_POINTS, INTERACTION_KEYS, REQUEST_EXPECT_KEYS, REQUEST_KEYS, USAGE_KEYS

__all__ = ["cassette_json_schema", "SCHEMA_ID"]

SCHEMA_ID = "https://loopspec.dev/schemas/cassette-v1.json"


def _strings_or_one() -> dict[str, Any]:
    return {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}


UNDESCRIBED = "accepted by the reader; not yet described by this schema"

# What each expectation property checks, for hover: the one definition's own docs.
PROPERTY_DOCS: dict[str, str] = {name: _PROPERTY_DOCS[name] for name in RUN_PROPERTIES}


def _enum(values: dict[str, str], description: str) -> dict[str, Any]:
    """An enumeration whose values each have a description (shown by VS Code on completion)."""
    return {"description": description, "enum": list(values), "enumDescriptions": list(values.values())}


def _cover(props: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Keep the schema's key set equal to the reader's: a key the reader accepts but this module
    does not describe yet is allowed (marked UNDESCRIBED, which a test rejects) rather than refused;
    a key the reader no longer accepts is dropped."""
    for k in keys:
        props.setdefault(k, {"description": UNDESCRIBED})
    for k in [k for k in props if k not in keys]:
        del props[k]


def _bound(kind: str, description: str) -> dict[str, Any]:
    """An exact number, or ``{min, max}`` (either or both)."""
    number = {"type": kind, "minimum": 0}
    return {
        "description": description,
        "oneOf": [
            number,
            {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {"min": dict(number, description="at least"), "max": dict(number, description="at most")},
            },
        ],
    }


def _served_props(count: dict[str, Any]) -> dict[str, Any]:
    """The keys of one response: its form and its faults."""
    return {
        "sse": {"type": "string", "description": "the raw SSE text, played byte for byte"},
        "sse_file": {"type": "string", "description": "a file of raw SSE, relative to the cassette's folder"},
        "chunks": {
            "type": "array",
            "items": {"type": "object"},
            "description": "OpenAI chat.completion.chunk objects, rendered as 'data: <json>' events then [DONE]",
        },
        "reply": {"$ref": "#/definitions/reply"},
        "error": {"$ref": "#/definitions/error"},
        "completion": {"type": "object", "description": "a non-streaming chat.completion body"},
        "stall_after": dict(count, description="pause stall_seconds after this many data events (0 = before the first)"),
        "stall_seconds": {"type": "number", "minimum": 0, "description": "how long the stall lasts (virtual in-process, scaled over HTTP)"},
        "keepalive": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "send an SSE comment ': ping' every this many seconds during the pause (bytes, no content)",
        },
        "pauses": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["after", "seconds"],
                "additionalProperties": False,
                "properties": {
                    "after": dict(count, description="data events before the pause (0 = before the first)"),
                    "seconds": {"type": "number", "minimum": 0, "description": "how long it lasts"},
                    "keepalive": {"type": "number", "exclusiveMinimum": 0, "description": "': ping' every this many seconds inside it"},
                },
            },
            "description": "further waits anywhere in the stream (a slow stream with gaps); a pause past the stall_timeout is a stall",
        },
        "disconnect_after": dict(count, description="drop the connection after this many data events, no [DONE]"),
        "doc": {"type": "string", "description": "a note for readers"},
    }


def cassette_json_schema() -> dict[str, Any]:
    """JSON Schema (draft-07, what yaml-language-server validates with) for ``loopspec_cassette: 1`` files."""
    count = {"type": "integer", "minimum": 0}
    interaction_props: dict[str, Any] = _served_props(count)
    interaction_props["when_no_tools"] = {
        "$ref": "#/definitions/response",
        "description": "the response played instead when the request offered no tools (a toolless wrap-up call)",
    }
    response_props = _served_props(count)
    _cover(response_props, tuple(k for k in INTERACTION_KEYS if k != "when_no_tools"))
    _cover(interaction_props, INTERACTION_KEYS)
    expect_props: dict[str, Any] = {
        "outcome": {
            "description": "the turn's outcome, or {any_of: [...]} for one of several",
            # the outcomes' descriptions stay at the top, where editors look for them on hover
            "enumDescriptions": list(OUTCOMES.values()),
            "oneOf": [
                _enum(OUTCOMES, "the turn's outcome"),
                {
                    "type": "object",
                    "required": ["any_of"],
                    "additionalProperties": False,
                    "properties": {"any_of": {"type": "array", "minItems": 1, "items": _enum(OUTCOMES, "an outcome")}},
                },
            ],
        },
        "model_calls": _bound("integer", "the number of model calls the turn made: N, or {max: N} / {min: N}"),
        "tool_batches": _bound("integer", "the number of tool batches the turn ran: N, or {max: N} / {min: N}"),
        "final_response_contains": dict(_strings_or_one(), description="text the final model response contains"),
        "message_contains": dict(_strings_or_one(), description="text the halt message delivered to the user contains"),
        "message_not_contains": dict(_strings_or_one(), description="text the halt message must not contain"),
        "tools_never_ran": dict(_strings_or_one(), description="tools that must never start running in the turn"),
        "counters": {
            "type": "object",
            "additionalProperties": _bound("integer", "the counter's highest value over the turn: N, or {max: N} / {min: N}"),
            "description": "policy counter -> bound on its highest value over the turn (a name the policy does not declare fails the replay)",
        },
        "elapsed": _bound("number", "seconds on the turn's own clock, start to halt (virtual in-process): {max: S} / {min: S}"),
        "all_played": {"type": "boolean", "description": "every recorded response was played"},
        "requests": {
            "type": "array",
            "items": {"$ref": "#/definitions/request_expectation"},
            "description": "what individual requests carried",
        },
        "properties": {
            "type": "array",
            "items": _enum({p: PROPERTY_DOCS.get(p, p) for p in PROPERTIES}, "an invariant that should hold under every policy"),
            "description": "invariants checked on the replayed turn",
        },
        "max_fires": {
            "type": "object",
            "additionalProperties": {"type": "integer", "minimum": 0},
            "description": "transition label -> the most times it may fire in the turn",
        },
    }
    _cover(expect_props, EXPECT_KEYS)
    top_props: dict[str, Any] = {
        "loopspec_cassette": {"const": CASSETTE_VERSION, "description": "the format version; must be 1"},
        "name": {"type": "string", "description": "the cassette's name in reports (default: the file name)"},
        "doc": {"type": "string", "description": "what happened and why this cassette exists"},
        "source": {"type": "object", "description": "free-form provenance (incident, recording, import)"},
        "model": {"type": "string", "description": "litellm model name for in-process replay (default openai/replay)"},
        "request": {"$ref": "#/definitions/request_options", "description": "the options the caller passed to the Turn"},
        "cancel": {"$ref": "#/definitions/cancel", "description": "where the caller cancels the turn (Turn.cancel())"},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/definitions/message"},
            "description": "the turn's opening messages, sent as is",
        },
        "tools": {
            "type": "array",
            "items": {"$ref": "#/definitions/tool"},
            "description": "the tools the turn offers; replay answers them from tool_results",
        },
        "interactions": {
            "type": "array",
            "items": {"$ref": "#/definitions/interaction"},
            "description": "one per model request, in order",
        },
        "tool_results": {
            "type": "array",
            "items": {"$ref": "#/definitions/tool_result"},
            "description": "answers for the tool calls, used in order per tool name",
        },
        "expect": {
            "type": "object",
            "additionalProperties": False,
            "properties": expect_props,
            "description": "what the turn is expected to do; the replay verdict is fail if any of these does not hold",
        },
        "trace": {
            "type": "array",
            "items": {"$ref": "#/definitions/trace_step"},
            "description": "the decisions of the recorded run, one per step; a replay reports where its own part from them",
        },
    }
    _cover(top_props, TOP_KEYS)
    request_options_props: dict[str, Any] = {
        "tool_choice": {
            "oneOf": [{"type": "string"}, {"type": "object"}],
            "description": "the caller's tool_choice (auto, required, none, or a named function); sent only with requests that offer tools",
        },
        "reasoning_effort": {"type": "string", "description": "the caller's reasoning effort (low, medium, high)"},
        "max_tokens": {"type": "integer", "minimum": 1, "description": "the caller's output-token limit"},
        "extra": {"type": "object", "description": "extra litellm keyword arguments, sent with every request"},
    }
    _cover(request_options_props, REQUEST_KEYS)
    request_options = {
        "type": "object",
        "additionalProperties": False,
        "properties": request_options_props,
        "description": "the options the caller passed to the Turn in the recorded run",
    }
    cancel_props: dict[str, Any] = {
        "before_call": {"type": "integer", "minimum": 1, "description": "cancel as model call N is about to be sent"},
        "during_call": {"type": "integer", "minimum": 1, "description": "cancel while model call N streams (after after_chunks chunks)"},
        "after_chunks": dict(count, description="with during_call: cancel after this many chunks (0 = as the stream opens)"),
        "during_tool": {"type": "string", "description": "cancel once this tool starts running"},
        "during_backoff": {"type": "integer", "minimum": 1, "description": "cancel as the N-th backoff starts waiting"},
    }
    _cover(cancel_props, CANCEL_KEYS)
    cancel = {
        "type": "object",
        "additionalProperties": False,
        "properties": cancel_props,
        "oneOf": [{"required": [p]} for p in CANCEL_POINTS],
        "description": "where the caller cancels the turn (Turn.cancel()); exactly one point",
    }
    request_expect_props: dict[str, Any] = {
        "index": {
            "type": "integer",
            "not": {"const": 0},
            "description": "1 = the first model call, -1 = the last (negative counts from the end); never 0",
        },
        "tools": {"enum": ["present", "absent"], "description": "whether the request offered tools"},
        "prompt_contains": {"type": "string", "description": "text the request's last user message contains"},
        "tool_choice": {"description": "the tool_choice the request carried (null: none sent)"},
        "reasoning_effort": {"type": ["string", "null"], "description": "the reasoning effort the request carried (null: none)"},
        "max_tokens": {"type": ["integer", "null"], "description": "the token limit the request carried (null: none)"},
        "model": {"type": "string", "description": "the model the request named"},
    }
    _cover(request_expect_props, REQUEST_EXPECT_KEYS)
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "loopspec cassette",
        "description": "What the outside world said during one agent turn: model responses, provider errors, "
        "stalls, tool results, and optionally the expected outcome and the recorded decision trace.",
        "type": "object",
        "required": ["loopspec_cassette", "messages", "interactions"],
        "additionalProperties": False,
        "properties": top_props,
        "definitions": {
            "message": {
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": _enum(
                        {
                            "system": "instructions for the model",
                            "user": "what the user said",
                            "assistant": "an earlier model reply",
                            "tool": "an earlier tool result",
                        },
                        "who speaks",
                    ),
                    "content": {"type": ["string", "array", "null"], "description": "text, a list of parts, or null"},
                },
                "description": "an OpenAI chat message, passed to the model as is",
            },
            "tool": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "description": "the tool's name, as the model calls it"},
                    "parameters": {"type": "object", "description": "JSON Schema of the arguments"},
                    "description": {"type": "string", "description": "the tool's description, sent to the model"},
                    "needs_approval": {"type": "boolean", "description": "the call waits for approval and is answered 'not run'"},
                },
            },
            "interaction": {
                "type": "object",
                "additionalProperties": False,
                "properties": interaction_props,
                "oneOf": [{"required": [form]} for form in INTERACTION_FORMS],
                "description": "exactly one of sse, sse_file, chunks, reply, error, completion; faults apply "
                "to the streamed forms (sse, sse_file, chunks, reply)",
            },
            "response": {
                "type": "object",
                "additionalProperties": False,
                "properties": response_props,
                "oneOf": [{"required": [form]} for form in INTERACTION_FORMS],
                "description": "one model response: exactly one form, optional faults",
            },
            "request_options": request_options,
            "cancel": cancel,
            "reply": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "text": {"type": "string", "description": "the visible text"},
                    "reasoning": {"type": "string", "description": "reasoning (thinking) text, streamed before the text"},
                    "tool_calls": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string"},
                                "arguments": {
                                    "oneOf": [{"type": "string"}, {"type": "object"}],
                                    "description": "an object (serialised) or the raw string, malformed JSON included",
                                },
                            },
                        },
                    },
                    "finish": {
                        "type": ["string", "null"],
                        "description": "default tool_calls when there are calls, else stop; null: the stream ends with no finish_reason",
                    },
                    "usage": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            **{k: dict(count, description=f"{k.replace('_', ' ')}") for k in USAGE_KEYS if k != "cost"},
                            "cost": {"type": "number", "minimum": 0, "description": "US dollars (sent as usage.cost, as OpenRouter does); what a cost budget charges in replay"},
                        },
                        "description": "token counts and cost, sent on the last chunk; they reach TurnResult.usage and the policy's budgets",
                    },
                },
            },
            "error": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"type": "integer", "minimum": 400, "maximum": 599,
                               "description": "the HTTP error status (4xx or 5xx), e.g. 429"},
                    "body": {"oneOf": [{"type": "string"}, {"type": "object"}], "description": "the error body, as the provider sent it"},
                    "headers": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "response headers, e.g. retry-after",
                    },
                },
            },
            "tool_result": {
                "type": "object",
                "required": ["tool"],
                "additionalProperties": False,
                "properties": {
                    "tool": {"type": "string", "description": "the tool this result answers"},
                    "result": {"description": "the tool's text (anything else is serialised as JSON)"},
                    "error": {"type": "string", "description": "the error the tool raised"},
                    "blocks": {"const": True, "description": "the tool never returns: it waits until the turn is cancelled (cancel.during_tool)"},
                },
                "oneOf": [{"required": ["result"]}, {"required": ["error"]}, {"required": ["blocks"]}],
            },
            "request_expectation": {
                "type": "object",
                "required": ["index"],
                "additionalProperties": False,
                "properties": request_expect_props,
            },
            "trace_step": {
                "type": "object",
                "required": ["state", "event", "target"],
                "properties": {
                    "state": {"type": "string"},
                    "event": {"type": "string"},
                    "target": {"type": "string"},
                    "transition": {"type": ["string", "null"]},
                },
            },
        },
    }
