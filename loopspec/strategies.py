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

_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "context_length": (400, {"error": {"message": "This model's maximum context length is 128000 tokens.", "type": "invalid_request_error", "code": "context_length_exceeded"}}),
    "effort": (400, {"error": {"message": "This model does not support effort level 'xhigh'. Supported levels: high, low, max, medium.", "type": "invalid_request_error"}}),
    "signature": (400, {"error": {"message": "messages.1.content.0: Invalid `signature` in `thinking` block", "type": "invalid_request_error"}}),
    "auth": (401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}),
    "timeout": (408, {"error": {"message": "Request timed out", "type": "timeout"}}),
    "rate_limit": (429, {"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}}),
    "server_error": (500, {"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}),
    "overloaded": (503, {"error": {"message": "The engine is currently overloaded, please try again later", "type": "server_error"}}),
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


SHAPES = (
    "text", "tool_call", "tool_calls", "malformed", "unknown", "thinking", "empty", "length_text",
    "length_tool", "length_thinking", "stall_text", "stall_tool", "disconnect", "error_chunk",
)
"""Every response shape :func:`replies` draws."""

PERSISTENT_SHAPES = tuple(s for s in SHAPES if s != "text")
"""Shapes that never end a turn by themselves (no final answer): what a model stuck in a loop sends."""

PERSISTENT_ERRORS = ("effort", "signature", "timeout", "rate_limit", "server_error", "overloaded")
"""Provider errors a policy recovers from rather than ends on."""


REPEATED_FAULTS = ("context_length", "malformed", "unknown", "thinking", "empty")
"""Faults an "alternate" world repeats between tool batches: the ones whose per-turn totals a tool
batch's streak reset leaves standing (compactions, bad calls, empty replies)."""


@st.composite
def replies(draw: st.DrawFn, tools: Sequence[str] = DEFAULT_TOOLS, shapes: Sequence[str] = SHAPES) -> StreamResponse:
    """One streamed model response, in the shapes real providers send, possibly faulty."""
    shape = draw(st.sampled_from(list(shapes)))
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


def provider_errors(kinds: Sequence[str] | None = None) -> st.SearchStrategy[ErrorResponse]:
    """HTTP errors shaped like recorded ones, which the classifier maps to context_overflow,
    effort_unsupported, thinking_signature_invalid, auth, timeout, rate_limit and transient.
    ``kinds`` picks some by name: context_length, effort, signature, auth, timeout, rate_limit,
    server_error, overloaded."""
    return st.sampled_from(sorted(kinds or _ERRORS)).map(lambda k: ErrorResponse(*_ERRORS[k]))


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
    max_run: int = 4,
    worlds: Sequence[str] = ("mixed", "streak", "loop", "alternate"),
) -> Cassette:
    """A whole turn the outside world might produce: messages, tools, responses, tool results.

    Responses come in runs of one kind (up to ``max_run`` in a row), because a model that repeats
    itself is what streak guards, retry budgets and escalations exist for. The defaults make short
    turns; to reach a policy's caps and backstops, make ``max_interactions`` at least the worst-case
    model calls ``loopspec check`` prints, and ``max_run`` at least the largest cap. Tool results
    either progress (each one new, as a poll that advances: no loop detector fires) or repeat a few
    recorded outcomes, failures included. ``worlds`` picks among the kinds of world (see below).
    """
    # Four kinds of world. "mixed": anything, in short runs and sometimes long ones. "streak":
    # long runs of one kind, which spend one budget to its cap. "loop": the model is stuck calling
    # tools and never answers, with a single fault now and then; no fatal error, so only the
    # policy's own caps and backstops can end the turn (the loops the incidents describe).
    # "alternate": one fault again and again, each time after a tool batch that resets its streak
    # guard, which spends the per-turn totals that streaks alone never reach.
    world = draw(st.sampled_from(list(worlds)))
    n = max_interactions if world in ("loop", "alternate") else draw(st.integers(1, max_interactions))
    errors = provider_errors(PERSISTENT_ERRORS if world == "loop" else None)
    shaped = replies(tools, PERSISTENT_SHAPES if world == "loop" else SHAPES)
    tool_loop = replies(tools, ("tool_call", "tool_calls"))
    interactions: list[Interaction] = []
    repeated: Interaction | None = None
    if world == "alternate":
        kind = draw(st.sampled_from(REPEATED_FAULTS))
        repeated = ErrorResponse(*_ERRORS[kind]) if kind in _ERRORS else draw(replies(tools, (kind,)))
    while len(interactions) < n:
        if world == "alternate":
            # tool batches first: they grow the history (compaction needs something to compact)
            # and reset the fault's streak guard
            assert repeated is not None
            interactions += [draw(tool_loop)] * draw(st.integers(3 if not interactions else 1, 4))
            interactions += [repeated] * draw(st.integers(1, 2))
            continue
        if world == "loop":
            fault = draw(st.integers(0, 9)) < 4
            one = draw(st.one_of(errors, shaped) if fault else tool_loop)
            run = 1 if fault else draw(st.integers(1, 3) if draw(st.booleans()) else st.integers(1, max_run))
        else:
            one = draw(errors) if draw(st.floats(0, 1)) < error_weight else draw(shaped)
            long_run = world == "streak" or draw(st.integers(0, 3)) == 0
            run = draw(st.integers(1, max_run) if long_run else st.integers(1, 3))
        interactions += [one] * run
    interactions = interactions[:n]
    results: list[ToolOutcome]
    if world in ("loop", "alternate") or draw(st.booleans()):
        # enough distinct results for every call the responses can make (two per response at most)
        results = [ToolOutcome(t, result=f"result {i}") for i in range(2 * n) for t in tools]
    else:
        results = [draw(tool_outcomes(draw(st.sampled_from(list(tools))))) for _ in range(draw(st.integers(0, 2 * n)))]
    specs = tuple(
        ToolSpec(t, {"type": "object", "properties": {"country": {"type": "string"}}}, needs_approval=world == "mixed" and draw(st.booleans()) and t == "read_file")
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
