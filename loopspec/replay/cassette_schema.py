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


def cassette_json_schema() -> dict[str, Any]:
    """JSON Schema (draft-07, what yaml-language-server validates with) for ``loopspec_cassette: 1`` files."""
    count = {"type": "integer", "minimum": 0}
    interaction_props: dict[str, Any] = {
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
        "disconnect_after": dict(count, description="drop the connection after this many data events, no [DONE]"),
        "doc": {"type": "string", "description": "a note for readers"},
    }
    _cover(interaction_props, (*INTERACTION_FORMS, *FAULT_KEYS, "doc"))
    expect_props: dict[str, Any] = {
        "outcome": _enum(OUTCOMES, "the turn's outcome"),
        "model_calls": dict(count, description="the number of model calls the turn made"),
        "tool_batches": dict(count, description="the number of tool batches the turn ran"),
        "final_response_contains": dict(_strings_or_one(), description="text the final model response contains"),
        "message_contains": dict(_strings_or_one(), description="text the halt message delivered to the user contains"),
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
                    )
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
                    "finish": {"type": "string", "description": "default tool_calls when there are calls, else stop"},
                },
            },
            "error": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"type": "integer", "description": "the HTTP status, e.g. 429"},
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
                },
                "oneOf": [{"required": ["result"]}, {"required": ["error"]}],
            },
            "request_expectation": {
                "type": "object",
                "required": ["index"],
                "properties": {
                    "index": {"type": "integer", "minimum": 1, "description": "1 = the first model call"},
                    "tools": {"enum": ["present", "absent"], "description": "whether the request offered tools"},
                    "prompt_contains": {"type": "string", "description": "text the request's messages contain"},
                },
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
