"""A tool call parses its arguments once and every reader (approvals, the run, the loop
detectors) shares the result: it must read exactly as the string functions do."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from loopspec.engine.tools import ToolCall
from loopspec.wire.classify import canonical_arguments, parse_tool_arguments

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
argument_texts = st.one_of(
    json_values.map(json.dumps),
    json_values.map(lambda v: json.dumps(v, indent=1)),
    st.text(max_size=20),
    st.sampled_from(["", "  ", "{", '{"a": 1,}', "[1, 2]", "null", '"text"', '{"b": 2, "a": 1}']),
)


@given(argument_texts)
def test_the_parsed_and_canonical_arguments_of_a_call_are_those_of_its_argument_string(arguments: str) -> None:
    """For any argument text (objects, other JSON, garbage, blanks): ``parsed`` is
    ``parse_tool_arguments`` and ``canonical`` is ``canonical_arguments`` of the string."""
    call = ToolCall("id", "tool", arguments)
    assert call.parsed == parse_tool_arguments(arguments)
    assert call.canonical == canonical_arguments(arguments)


def test_the_arguments_are_parsed_once_per_call() -> None:
    call = ToolCall("id", "tool", '{"path": "a"}')
    assert call.parsed is call.parsed and call.canonical is call.canonical
    assert call == ToolCall("id", "tool", '{"path": "a"}'), "the cache is not part of the call's value"
