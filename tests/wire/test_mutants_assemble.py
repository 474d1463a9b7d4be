"""Tests against the mutants of ``wire/assemble.py`` that the suite let live (a mutation analysis by
hand: each bug planted in the assembler, seen to survive the wire and engine tests, and killed by a
test here). The assembler is a pure fold over Deltas, so these feed it directly; each names the
plant it kills in its docstring."""

from __future__ import annotations

from loopspec.wire.assemble import ReplyAssembler
from loopspec.wire.deltas import Delta, ToolCallFragment


def fragment(index: int, name: str | None = None, arguments: str = "", call_id: str | None = None) -> Delta:
    return Delta(tool_calls=(ToolCallFragment(index, call_id, name, arguments),))


def test_text_or_reasoning_after_a_tool_call_means_the_call_is_over() -> None:
    """Plants A02 and A14: text (or reasoning) after a call's arguments left ``in_tool_call`` set, so
    a stall in the text that followed was reported as a cut tool call."""
    for after in (Delta(text="Done."), Delta(reasoning="Now I wait.")):
        a = ReplyAssembler()
        a.feed(fragment(0, "search", '{"q": "x"}', "call_0"))
        assert a.in_tool_call
        a.feed(after)
        assert not a.in_tool_call, after


def test_visible_text_is_counted_however_it_arrives() -> None:
    """Plant A08: text that went through the tag scanner (it held a ``<``) was not counted in
    ``chars``, so a stall's or a broken stream's ``chars`` missed it."""
    a = ReplyAssembler()
    a.feed(Delta(text="a < b"))
    a.feed(Delta(text="<think>plan</think>ok"))
    assert a.result().text == "a < bok" and a.chars == 7


def test_a_redacted_block_ends_the_thinking_before_it() -> None:
    """Plant A09: a redacted block did not close the unsigned thinking before it, whose text then
    ran into the next signed block (which Anthropic would reject on replay)."""
    a = ReplyAssembler()
    a.feed(Delta(thinking_blocks=({"type": "thinking", "thinking": "lost"},)))
    a.feed(Delta(thinking_blocks=({"type": "redacted_thinking", "data": "opaque"},)))
    a.feed(Delta(thinking_blocks=({"type": "thinking", "thinking": "kept", "signature": "sig"},)))
    assert a.result().thinking_blocks == [
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "thinking", "thinking": "kept", "signature": "sig"},
    ]


def test_unsigned_thinking_is_left_out_of_the_blocks() -> None:
    """Plant A10: a thinking block without a signature was kept as a block (Anthropic rejects it on
    replay); its text stays in ``reasoning`` only when it came as reasoning."""
    a = ReplyAssembler()
    a.feed(Delta(thinking_blocks=({"type": "thinking", "thinking": "unsigned"},)))
    a.feed(Delta(thinking_blocks=({"type": "redacted_thinking", "data": "opaque"},)))
    assert a.result().thinking_blocks == [{"type": "redacted_thinking", "data": "opaque"}]


def test_each_signed_block_holds_only_its_own_thinking() -> None:
    """Plant A15: the thinking text was not cleared when a signature closed its block, so every
    later block repeated the text of all the blocks before it."""
    a = ReplyAssembler()
    a.feed(Delta(thinking_blocks=({"type": "thinking", "thinking": "one", "signature": "s1"},)))
    a.feed(Delta(thinking_blocks=({"type": "thinking", "thinking": "two"},)))
    a.feed(Delta(thinking_blocks=({"type": "thinking", "signature": "s2"},)))
    assert [b["thinking"] for b in a.result().thinking_blocks] == ["one", "two"]


def test_tool_calls_are_in_index_order_whatever_order_they_start_in() -> None:
    """Plant A13: calls were listed in the order their first fragment arrived, not by index, so a
    provider that starts call 1 first had its calls (and their answers) swapped."""
    a = ReplyAssembler()
    a.feed(fragment(1, "second", "{}", "call_1"))
    a.feed(fragment(0, "first", "{}", "call_0"))
    a.feed(Delta(finish_reason="tool_calls"))
    assert [(c.index, c.name) for c in a.result().tool_calls] == [(0, "first"), (1, "second")]
    b = ReplyAssembler()
    b.feed(fragment(1, "second", "{", "call_1"))
    b.feed(fragment(0, "first", "{", "call_0"))
    assert b.cut_tool_names() == ["first", "second"]


def test_in_tool_call_is_a_bool_from_the_start_and_after_text_or_reasoning() -> None:
    """mutmut ``__init___14``/``_15``, ``feed_6``: the flag began as None (or True), or turned None
    after reasoning. It becomes the ``mid_tool_call`` attribute of ``stalled``, which a policy guard
    compares (``{attr: mid_tool_call, eq: false}`` does not hold for None), and True would turn a
    stall before any chunk into a cut tool call."""
    a = ReplyAssembler()
    assert a.in_tool_call is False, "nothing has arrived"
    for after in (Delta(text="Done."), Delta(reasoning="Now I wait."), Delta(finish_reason="stop")):
        a = ReplyAssembler()
        a.feed(fragment(0, "search", '{"q": "x"}', "call_0"))
        a.feed(after)
        assert a.in_tool_call is False, after


def test_a_call_id_that_arrives_after_the_name_is_kept() -> None:
    """mutmut ``feed_17``: a later fragment's id was taken only while the name was still missing,
    so a call whose first fragment named the tool and whose id came next lost its id."""
    a = ReplyAssembler()
    a.feed(fragment(0, "search", '{"q": '))
    a.feed(fragment(0, None, '"x"}', "call_7"))
    a.feed(fragment(0, None, "", "call_8"))  # a repeated id does not replace the first
    (call,) = a.result().tool_calls
    assert (call.id, call.name, call.arguments) == ("call_7", "search", '{"q": "x"}')


def test_a_tool_name_that_arrives_after_the_id_is_kept() -> None:
    """mutmut ``feed_22``/``_24``: a later fragment's name was never taken, so a call whose first
    fragment carried only its id had no name (and would be judged an unknown tool)."""
    a = ReplyAssembler()
    a.feed(fragment(0, None, "", "call_1"))
    a.feed(fragment(0, "search", '{"q": 1}'))
    a.feed(fragment(0, "other", ""))  # a repeated name does not replace the first
    (call,) = a.result().tool_calls
    assert (call.id, call.name, call.arguments) == ("call_1", "search", '{"q": 1}')


def test_two_think_blocks_in_one_chunk_are_split_in_order() -> None:
    """mutmut ``_feed_text_19``: the tag was looked for from the end of the chunk, so a chunk with
    two ``<think>`` blocks put the first one, tags and all, into the visible text."""
    a = ReplyAssembler()
    a.feed(Delta(text="x<think>a</think>y<think>b</think>z"))
    r = a.result()
    assert (r.text, r.reasoning, a.chars) == ("xyz", "ab", 3)


def test_blocks_after_a_redacted_one_in_the_same_chunk_are_kept() -> None:
    """mutmut ``_feed_thinking_19``: the blocks after a redacted block of the same chunk were
    dropped, so the signed thinking that followed was never replayed to the provider."""
    a = ReplyAssembler()
    a.feed(Delta(thinking_blocks=({"type": "redacted_thinking", "data": "opaque"},
                                  {"type": "thinking", "thinking": "plan", "signature": "sig-1"})))
    assert a.result().thinking_blocks == [{"type": "redacted_thinking", "data": "opaque"},
                                          {"type": "thinking", "thinking": "plan", "signature": "sig-1"}]


def test_a_cut_call_that_has_no_name_yet_is_named_empty() -> None:
    """mutmut ``cut_tool_names_4``: a call cut before its name arrived was named with a stand-in,
    which the ``cut_tools`` attribute (read by a policy's message) then showed as a tool."""
    a = ReplyAssembler()
    a.feed(fragment(0, "search", '{"q": 1}', "call_0"))
    a.feed(fragment(1, None, '{"p', "call_1"))
    assert a.cut_tool_names() == ["search", ""]
