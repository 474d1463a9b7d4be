"""Every diagnostic code, once: its number, a short title and what to do about it.

Code elsewhere names a code by its constant (``codes.UNKNOWN_NAME``), never by its literal, so a
number is given out once and ``docs/errors.md`` (checked against :data:`REGISTRY` by
``tests/test_error_codes.py``) lists every one. The constants are plain strings, the value a
:class:`~loopspec.language.diagnostics.Diagnostic` carries.

Ranges: ``LS1xx`` reading the file, ``LS2xx`` the shape of the document, ``LS3xx`` names that
resolve to nothing, ``LS4xx`` warnings, ``LS6xx`` cassettes, ``LS7xx`` imported transcripts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    code: str
    """The stable identifier, e.g. ``LS301``."""
    title: str
    """What went wrong, in a few words."""
    fix: str
    """What to do, in one line."""


REGISTRY: dict[str, Code] = {}
"""Every code by its identifier, in number order."""


def _code(code: str, title: str, fix: str) -> str:
    if code in REGISTRY:  # pragma: no cover - caught at import, and by tests/test_error_codes.py
        raise ValueError(f"diagnostic code {code} is given out twice")
    REGISTRY[code] = Code(code, title, fix)
    return code


# -- LS1xx: reading the file ------------------------------------------------------------------------

UNREADABLE_FILE = _code("LS100", "the file cannot be read", "check the path; a policy is a UTF-8 text file under 4 MiB")
YAML_SYNTAX = _code("LS101", "YAML syntax error", "fix the YAML at the position shown; indent with spaces, not tabs")
DUPLICATE_KEY = _code("LS102", "a key appears twice", "keep one of the two keys (YAML would silently keep the last)")
YAML_TAG = _code("LS103", "a YAML tag or merge key", "write plain YAML: no !tags and no << merge keys")
TOO_DEEP = _code("LS104", "nesting too deep", "flatten the document to at most 64 levels")
TOO_MANY_NODES = _code("LS105", "the document expands too far", "remove the aliases that expand it past 50 000 nodes")
BAD_SCALAR = _code("LS106", "a bad scalar or key", "write mapping keys as plain scalars and quote unusual values")
EMPTY_FILE = _code("LS107", "the file is empty", "start from machines/default.yaml")

# -- LS2xx: the shape of the document ---------------------------------------------------------------

UNKNOWN_KEY = _code("LS201", "unknown key", "remove the key or fix its spelling (the hint lists the allowed keys)")
WRONG_TYPE = _code("LS202", "wrong type", "give the value the type the message names")
BAD_NAME = _code("LS203", "invalid name", "use lower_snake_case: a letter, then letters, digits or underscores")
OUT_OF_RANGE = _code("LS204", "value out of range", "choose a value within the range or closed set the message names")
MISSING_KEY = _code("LS205", "required key missing", "add the key the message names")
BAD_TEMPLATE = _code("LS206", "bad template field", "substitute plain names only; write a literal brace as {{ or }}")
RESERVED_NAME = _code(
    "LS207", "reserved name misused", "configure backstops under 'backstops'; use built-in flags without declaring them"
)
BAD_GUARD = _code("LS208", "malformed guard", "write exactly one of all, any, not, counter, flag, attr, with one test")
UNBOUNDED_INCREMENT = _code(
    "LS209", "a counter incremented twice, or in apply", "increment a counter at most once, on the transition"
)

# -- LS3xx: names that resolve to nothing -----------------------------------------------------------

UNKNOWN_NAME = _code("LS301", "unknown name", "declare the name, or fix its spelling as the did-you-mean suggests")
UNKNOWN_TEMPLATE_VARIABLE = _code(
    "LS302", "unknown template variable", "use a template variable listed in docs/language.md"
)
WRONG_STATE_KIND = _code(
    "LS303", "a backstop names a state of the wrong kind", "exhausted names a halt state, wrap_up an escalate state"
)
UNKNOWN_EVENT = _code("LS304", "an event the state never receives", "use an event of the state's kind")
UNKNOWN_ATTRIBUTE = _code("LS305", "an attribute the event does not carry", "test an attribute the hint lists")

# -- LS4xx: warnings --------------------------------------------------------------------------------

EMPTY_HALT_MESSAGE = _code("LS401", "a halt delivers an empty message", "say in the message why the turn ended")
STREAM_WITHOUT_RESPONSE = _code(
    "LS402", "a stream state entered with no response open", "enter a stream state only from a call state's 'opened'"
)

# -- LS6xx, LS7xx: cassettes and imported transcripts -----------------------------------------------

BAD_CASSETTE = _code("LS601", "invalid cassette", "fix the field the message names, or record the cassette again")
CASSETTE_UNKNOWN_KEY = _code("LS602", "unknown key in a cassette", "check the spelling against `loopspec cassette-schema`")
CASSETTE_WRONG_TYPE = _code("LS603", "a cassette field has the wrong type", "give the field the type the message names")
CASSETTE_VERSION = _code("LS604", "not a cassette of this version", "start the file with 'loopspec_cassette: 1'")
BAD_REQUEST_INDEX = _code(
    "LS605", "a request index that names no request", "number requests from 1, or from the end with -1 (the last)"
)
BAD_BOUND = _code("LS606", "a malformed bound", "write a number, or {max: N} and/or {min: N}")
BAD_CANCEL_POINT = _code(
    "LS607",
    "a malformed cancellation point",
    "give one of before_call: N, during_call: N (with after_chunks: K), during_tool: NAME, during_backoff: N",
)
BAD_REQUEST_OPTIONS = _code(
    "LS608", "malformed request options", "tool_choice is a string or a mapping, max_tokens a positive integer, extra a mapping"
)
BAD_TRANSCRIPT = _code("LS701", "the transcript cannot be imported", "fix the transcript at the position shown")

