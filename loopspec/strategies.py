"""Hypothesis strategies for loopspec users' own tests.

- :func:`events` — events of the closed alphabet, with typed attributes;
- :func:`replies` — realistic chunk streams: answers, tool calls (valid, malformed, unknown),
  thinking-only and empty replies, length cut-offs (also inside a tool call), stalls (also inside a
  tool call's arguments), dropped connections and in-band provider errors;
- :func:`provider_errors` — HTTP errors shaped like the recorded ones in fixtures/streams;
- :func:`tool_outcomes` — recorded tool results and failures;
- :func:`cassettes` — whole cassettes built from the above, ready for
  :func:`loopspec.replay.harness.replay`.

Example::

    from hypothesis import given
    from loopspec import load_policy
    from loopspec.replay.harness import replay_sync
    from loopspec.strategies import cassettes

    @given(cassettes())
    def test_my_policy_always_halts_with_a_message(cassette):
        report = replay_sync(cassette, load_policy("machines/default.yaml"))
        assert report.result.message.strip()
"""

from __future__ import annotations

from typing import Any, Sequence

from hypothesis import strategies as st

from .replay.cassette import Cassette, ToolOutcome, ToolSpec
from .replay.interactions import ErrorResponse, Interaction, StreamResponse
from .replay.synth import inside_tool_arguments, reply_chunks
from .language.alphabet import KINDS, Attr, Event, EventSpec

DEFAULT_TOOLS = ("get_capital", "read_file")

_ERROR_BODIES: dict[int, dict[str, Any]] = {
    400: {"error": {"message": "This model's maximum context length is 128000 tokens.", "type": "invalid_request_error", "code": "context_length_exceeded"}},
    401: {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}},
    408: {"error": {"message": "Request timed out", "type": "timeout"}},
    429: {"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}},
    500: {"error": {"message": "The server had an error while processing your request.", "type": "server_error"}},
    503: {"error": {"message": "The engine is currently overloaded, please try again later", "type": "server_error"}},
}


def _attr_values(a: Attr) -> st.SearchStrategy[Any]:
    if a.values:
        return st.sampled_from(a.values)
    return {
        "bool": st.booleans(),
        "int": st.integers(0, 600),
        "float": st.floats(0, 120, allow_nan=False),
        "str": st.text(max_size=12),
        "list": st.lists(st.sampled_from(DEFAULT_TOOLS), max_size=3),
    }[a.type]


def _event_of(spec: EventSpec) -> st.SearchStrategy[Event]:
    return st.fixed_dictionaries({a.name: _attr_values(a) for a in spec.attrs}).map(lambda d: Event(spec.name, d))


def events(kind: str | None = None) -> st.SearchStrategy[Event]:
    """Events a state of ``kind`` can receive (any kind when None), with typed attributes."""
    specs = [e for k in KINDS.values() if kind in (None, k.name) for e in k.events]
    return st.sampled_from(specs).flatmap(_event_of)


_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=40).filter(str.strip)


@st.composite
def replies(draw: st.DrawFn, tools: Sequence[str] = DEFAULT_TOOLS) -> StreamResponse:
    """One streamed model response, in the shapes real providers send, possibly faulty."""
    shape = draw(
        st.sampled_from(
            ["text", "tool_call", "tool_calls", "malformed", "unknown", "thinking", "empty", "length_text",
             "length_tool", "length_thinking", "stall_text", "stall_tool", "disconnect", "error_chunk"]
        )
    )
    name = draw(st.sampled_from(list(tools)))
    args = {"country": draw(st.sampled_from(["UK", "France", "Japan"]))}
    if shape == "text":
        return StreamResponse(chunks=tuple(reply_chunks(draw(_TEXT))))
    if shape == "tool_call":
        return StreamResponse(chunks=tuple(reply_chunks(tool_calls=[(name, args)])))
    if shape == "tool_calls":
        other = draw(st.sampled_from(list(tools)))
        return StreamResponse(chunks=tuple(reply_chunks(tool_calls=[(name, args), (other, {})])))
    if shape == "malformed":
        return StreamResponse(chunks=tuple(reply_chunks(tool_calls=[(name, '{"country": ')])))
    if shape == "unknown":
        return StreamResponse(chunks=tuple(reply_chunks(tool_calls=[("no_such_tool", {})])))
    if shape == "thinking":
        return StreamResponse(chunks=tuple(reply_chunks(reasoning=draw(_TEXT))))
    if shape == "empty":
        return StreamResponse(chunks=tuple(reply_chunks()))
    if shape == "length_text":
        return StreamResponse(chunks=tuple(reply_chunks(draw(_TEXT), finish="length")))
    if shape == "length_tool":
        return StreamResponse(chunks=tuple(reply_chunks(tool_calls=[(name, '{"country": "Fr')], finish="length")))
    if shape == "length_thinking":
        return StreamResponse(chunks=tuple(reply_chunks(reasoning=draw(_TEXT), finish="length")))
    if shape == "stall_text":
        chunks = reply_chunks(draw(_TEXT))
        return StreamResponse(chunks=tuple(chunks), stall_after=draw(st.integers(0, len(chunks) - 1)), stall_seconds=600)
    if shape == "stall_tool":  # cut inside a tool call's arguments
        chunks = reply_chunks(tool_calls=[(name, {"country": "United Kingdom of Great Britain"})], piece=4)
        k = draw(st.sampled_from(inside_tool_arguments(chunks)))
        return StreamResponse(chunks=tuple(chunks), stall_after=k, stall_seconds=600)
    if shape == "disconnect":
        chunks = reply_chunks(draw(_TEXT))
        return StreamResponse(chunks=tuple(chunks), disconnect_after=draw(st.integers(0, len(chunks) - 1)))
    chunks = reply_chunks(draw(_TEXT))[:2]
    message = draw(st.sampled_from(["maximum context length exceeded", "upstream provider error"]))
    return StreamResponse(chunks=tuple(chunks + [{"error": {"message": message, "code": 500}}]))


def provider_errors() -> st.SearchStrategy[ErrorResponse]:
    """HTTP errors the classifier maps to rate_limit, transient, timeout, context_overflow, auth."""
    return st.sampled_from(sorted(_ERROR_BODIES)).map(lambda s: ErrorResponse(s, _ERROR_BODIES[s]))


def tool_outcomes(tool: str) -> st.SearchStrategy[ToolOutcome]:
    """A recorded result or failure of ``tool``; results repeat sometimes, as polls do."""
    return st.one_of(
        st.integers(0, 3).map(lambda i: ToolOutcome(tool, result=f"result {i}")),
        st.sampled_from(["TimeoutError: upstream timed out", "ValueError: bad input"]).map(lambda e: ToolOutcome(tool, error=e)),
    )


@st.composite
def cassettes(
    draw: st.DrawFn,
    tools: Sequence[str] = DEFAULT_TOOLS,
    max_interactions: int = 12,
    error_weight: float = 0.15,
) -> Cassette:
    """A whole turn the outside world might produce: messages, tools, responses, tool results."""
    n = draw(st.integers(1, max_interactions))
    interactions: list[Interaction] = []
    while len(interactions) < n:
        # Models repeat themselves: the same kind of reply several times in a row is what streak
        # guards, retry budgets and escalations exist for, so responses come in runs.
        one = draw(provider_errors()) if draw(st.floats(0, 1)) < error_weight else draw(replies(tools))
        interactions += [one] * draw(st.integers(1, 4))
    interactions = interactions[:n]
    results = [draw(tool_outcomes(draw(st.sampled_from(list(tools))))) for _ in range(draw(st.integers(0, 2 * n)))]
    specs = tuple(
        ToolSpec(t, {"type": "object", "properties": {"country": {"type": "string"}}}, needs_approval=draw(st.booleans()) and t == "read_file")
        for t in tools
    )
    return Cassette(
        name="generated",
        file="<generated>",
        messages=({"role": "user", "content": draw(_TEXT)},),
        interactions=tuple(interactions),
        tools=specs,
        tool_results=tuple(results),
    )


__all__ = ["cassettes", "events", "provider_errors", "replies", "tool_outcomes"]
