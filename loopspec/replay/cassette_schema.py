"""The JSON Schema of a cassette file, for editors and external tools.

It describes what :mod:`loopspec.replay.cassette` reads, built from the same key lists, so the two
cannot drift apart on names. The reader remains the authority: it also checks what a schema cannot
say (an ``sse_file`` exists, a fault position is inside the stream, positions for diagnostics).
Cheap to import: no litellm.
"""

from __future__ import annotations

from typing import Any

from loopspec.spec.alphabet import OUTCOMES

from .cassette import CASSETTE_VERSION, EXPECT_KEYS, FAULT_KEYS, INTERACTION_FORMS, PROPERTIES, TOP_KEYS

__all__ = ["cassette_json_schema", "SCHEMA_ID"]

SCHEMA_ID = "https://loopspec.dev/schemas/cassette-v1.json"


def _strings_or_one() -> dict[str, Any]:
    return {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}


UNDESCRIBED = "accepted by the reader; not yet described by this schema"


def _cover(props: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Keep the schema's key set equal to the reader's: a key the reader accepts but this module
    does not describe yet is allowed (marked UNDESCRIBED, which a test rejects) rather than refused;
    a key the reader no longer accepts is dropped."""
    for k in keys:
        props.setdefault(k, {"description": UNDESCRIBED})
    for k in [k for k in props if k not in keys]:
        del props[k]


def cassette_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) for ``loopspec_cassette: 1`` files."""
    count = {"type": "integer", "minimum": 0}
    interaction_props: dict[str, Any] = {
        "sse": {"type": "string", "description": "the raw SSE text, played byte for byte"},
        "sse_file": {"type": "string", "description": "a file of raw SSE, relative to the cassette's folder"},
        "chunks": {
            "type": "array",
            "items": {"type": "object"},
            "description": "OpenAI chat.completion.chunk objects, rendered as 'data: <json>' events then [DONE]",
        },
        "reply": {"$ref": "#/$defs/reply"},
        "error": {"$ref": "#/$defs/error"},
        "completion": {"type": "object", "description": "a non-streaming chat.completion body"},
        "stall_after": dict(count, description="pause stall_seconds after this many data events (0 = before the first)"),
        "stall_seconds": {"type": "number", "minimum": 0},
        "disconnect_after": dict(count, description="drop the connection after this many data events, no [DONE]"),
        "doc": {"type": "string"},
    }
    _cover(interaction_props, (*INTERACTION_FORMS, *FAULT_KEYS, "doc"))
    expect_props: dict[str, Any] = {
        "outcome": {"enum": list(OUTCOMES), "description": "the turn's outcome"},
        "model_calls": count,
        "tool_batches": count,
        "final_response_contains": _strings_or_one(),
        "message_contains": _strings_or_one(),
        "all_played": {"type": "boolean", "description": "every recorded response was played"},
        "requests": {"type": "array", "items": {"$ref": "#/$defs/request_expectation"}},
        "properties": {"type": "array", "items": {"enum": list(PROPERTIES)}},
        "max_fires": {
            "type": "object",
            "additionalProperties": {"type": "integer", "minimum": 0},
            "description": "transition label -> the most times it may fire in the turn",
        },
    }
    _cover(expect_props, EXPECT_KEYS)
    top_props: dict[str, Any] = {
        "loopspec_cassette": {"const": CASSETTE_VERSION},
        "name": {"type": "string"},
        "doc": {"type": "string"},
        "source": {"type": "object", "description": "free-form provenance (incident, recording, import)"},
        "model": {"type": "string", "description": "litellm model name for in-process replay (default openai/replay)"},
        "messages": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/message"}},
        "tools": {"type": "array", "items": {"$ref": "#/$defs/tool"}},
        "interactions": {
            "type": "array",
            "items": {"$ref": "#/$defs/interaction"},
            "description": "one per model request, in order",
        },
        "tool_results": {"type": "array", "items": {"$ref": "#/$defs/tool_result"}},
        "expect": {"type": "object", "additionalProperties": False, "properties": expect_props},
        "trace": {"type": "array", "items": {"$ref": "#/$defs/trace_step"}},
    }
    _cover(top_props, TOP_KEYS)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "loopspec cassette",
        "description": "What the outside world said during one agent turn: model responses, provider errors, "
        "stalls, tool results, and optionally the expected outcome and the recorded decision trace.",
        "type": "object",
        "required": ["loopspec_cassette", "messages", "interactions"],
        "additionalProperties": False,
        "properties": top_props,
        "$defs": {
            "message": {
                "type": "object",
                "required": ["role"],
                "properties": {"role": {"enum": ["system", "user", "assistant", "tool"]}},
                "description": "an OpenAI chat message, passed to the model as is",
            },
            "tool": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "parameters": {"type": "object", "description": "JSON Schema of the arguments"},
                    "description": {"type": "string"},
                    "needs_approval": {"type": "boolean"},
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
                    "text": {"type": "string"},
                    "reasoning": {"type": "string"},
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
                    "status": {"type": "integer"},
                    "body": {"oneOf": [{"type": "string"}, {"type": "object"}]},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "tool_result": {
                "type": "object",
                "required": ["tool"],
                "additionalProperties": False,
                "properties": {
                    "tool": {"type": "string"},
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
                    "tools": {"enum": ["present", "absent"]},
                    "prompt_contains": {"type": "string"},
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
