"""Chunk conversion and assembly against the real recorded streams in fixtures/streams."""

from __future__ import annotations

import json
from pathlib import Path

from _paths import FIXTURES

import pytest

from loopspec.wire.assemble import ReplyAssembler
from loopspec.wire.classify import classify_reply
from loopspec.wire.deltas import Delta, ToolCallFragment, Usage
from loopspec.providers.base import StreamBroken
from loopspec.providers.chunks import delta_from_chunk_dict, iter_sse_data

STREAMS = FIXTURES / "streams"
ALL_SSE = sorted(p.name for p in STREAMS.glob("*.sse"))
BROKEN = {"openrouter_stream_length_then_error_chunk.sse", "groq_stream_reasoning_then_error_event.sse"}


def assemble(name: str) -> ReplyAssembler:
    a = ReplyAssembler()
    for d in iter_sse_data((STREAMS / name).read_text()):
        a.feed(delta_from_chunk_dict(d))
    return a


def test_every_fixture_is_covered():
    assert len(ALL_SSE) >= 11
    assert (STREAMS / "SOURCES.md").exists()


@pytest.mark.parametrize("name", ALL_SSE)
def test_every_stream_converts(name):
    """Every recorded stream converts; the two with in-band errors raise StreamBroken."""
    if name in BROKEN:
        with pytest.raises(StreamBroken) as ei:
            assemble(name)
        assert ei.value.event.name == "broken"
        return
    reply = assemble(name).result()
    assert reply.finish_reason in {"stop", "length", "tool_calls"}
    assert reply.text or reply.tool_calls or reply.finish_reason == "length"


def test_single_tool_call():
    r = assemble("openai_stream_tool_call_single.sse").result()
    assert [(c.index, c.id, c.name) for c in r.tool_calls] == [(0, "call_ZR5UUuTt3pf61kjwAJIYdVMj", "get_capital")]
    assert json.loads(r.tool_calls[0].arguments) == {"country": "UK"}
    assert r.tool_calls[0].arguments == '{"country":"UK"}'
    assert r.finish_reason == "tool_calls" and r.text == ""
    assert r.usage == Usage(53, 15, 0)
    ev = classify_reply(r, {"get_capital": {"type": "object", "required": ["country"],
                                            "properties": {"country": {"type": "string"}}}})
    assert (ev.name, ev.attrs) == ("tool_calls", {"tools": ["get_capital"], "count": 1, "chars": 0})


def test_parallel_tool_calls():
    r = assemble("openai_stream_tool_call_parallel.sse").result()
    assert [c.name for c in r.tool_calls] == ["get_weather", "get_product_name"]
    assert r.tool_calls[0].arguments == '{"city": "Mexico City"}'
    assert r.tool_calls[1].arguments == "{}"
    assert r.tool_calls[1].id == "call_SkGkkGDvHQEEk0CGbnAh2AQw"
    ev = classify_reply(r, {"get_weather": None, "get_product_name": None})
    assert ev.name == "tool_calls" and ev.attrs["tools"] == ["get_weather", "get_product_name"]
    assert ev.attrs["count"] == 2


def test_plain_text_with_usage_only_chunk():
    r = assemble("openai_stream_text.sse").result()
    assert r.text == "The capital of Mexico is Mexico City."
    assert r.usage == Usage(14, 8, 0)
    ev = classify_reply(r, {})
    assert (ev.name, ev.attrs) == ("text", {"finish_reason": "stop", "chars": 37})


def test_gpt5nano_length_all_reasoning():
    r = assemble("openai_stream_finish_length_reasoning_only_gpt5nano.sse").result()
    assert r.text == "" and r.reasoning == "" and r.finish_reason == "length"
    assert r.usage == Usage(12, 100, 100)
    ev = classify_reply(r, {})
    assert (ev.name, ev.attrs) == (
        "length",
        {"has_tool_calls": False, "dropped_tools": [], "thinking_only": True, "chars": 0},
    )


def test_length_with_text_and_no_usage():
    r = assemble("openai_stream_finish_length_text.sse").result()
    assert r.text.startswith("The meaning of life is a profound and philosophical question")
    assert r.usage is None
    ev = classify_reply(r, {})
    assert ev.name == "length" and ev.attrs["thinking_only"] is False and ev.attrs["chars"] == len(r.text)


def test_deepseek_reasoning_content():
    r = assemble("deepseek_stream_reasoning_content.sse").result()
    assert r.reasoning.startswith('We are asked: "What is 17 * 23?"')
    assert r.text == "The product of 17 and 23 is 391."
    assert r.usage == Usage(17, 47, 34)
    assert classify_reply(r, {}).name == "text"


def test_openrouter_reasoning_keeps_signature():
    r = assemble("openrouter_stream_reasoning.sse").result()
    assert r.text == "2 + 2 = 4"
    assert r.reasoning == "This is a simple arithmetic question. 2+2 equals 4."
    assert len(r.thinking_blocks) == 1
    block = r.thinking_blocks[0]
    assert block["type"] == "thinking" and block["thinking"] == r.reasoning
    assert block["signature"].startswith("Et0BCkgIChACGAIqQA2s7h7tA7IG35fbwVkou9PM2hANVJNUwcEM4q12")


def test_groq_reasoning_tool_call_single_fragment():
    r = assemble("groq_stream_reasoning_tool_call.sse").result()
    assert r.reasoning.startswith("We need to call the function")
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("get_something_by_name", '{"name":"example"}')]
    assert r.usage == Usage(304, 49, 23)


def test_n2_stream_reads_choice_zero_only():
    r = assemble("openai_stream_n2_multiple_choices.sse").result()
    chunks = list(iter_sse_data((STREAMS / "openai_stream_n2_multiple_choices.sse").read_text()))
    want = "".join(
        (c["choices"][0]["delta"].get("content") or "")
        for c in chunks
        if c["choices"] and c["choices"][0]["index"] == 0
    )
    assert r.text == want and r.text.startswith("Hey there!")
    assert "Not much" in r.text


def test_openrouter_length_then_error_chunk():
    a = ReplyAssembler()
    with pytest.raises(StreamBroken) as ei:
        for d in iter_sse_data((STREAMS / "openrouter_stream_length_then_error_chunk.sse").read_text()):
            a.feed(delta_from_chunk_dict(d))
    assert ei.value.event.attrs == {"cause": "overflow", "chars": 0, "message": "Token limit reached"}
    # what arrived before the error is kept: reasoning only, finish_reason length
    r = a.result()
    assert r.reasoning == "We need to respond to a greeting. The user" and r.finish_reason == "length"
    assert ei.value.with_chars(a.chars).event.attrs["chars"] == 0


def test_groq_event_error_frame():
    seen = 0
    with pytest.raises(StreamBroken) as ei:
        for _ in iter_sse_data((STREAMS / "groq_stream_reasoning_then_error_event.sse").read_text()):
            seen += 1
    assert seen == 94  # 94 chunks (role + reasoning), then the error frame
    ev = ei.value.event
    assert ev.attrs["cause"] == "provider_error"
    assert ev.attrs["message"].startswith("Tool call validation failed")


def test_anthropic_error_event_payload():
    payload = (STREAMS / "anthropic_stream_error_event_payload.json").read_text()
    with pytest.raises(StreamBroken) as ei:
        list(iter_sse_data(f"event: error\ndata: {payload}\n\n"))
    assert ei.value.event.attrs["cause"] == "provider_error"
    assert ei.value.event.attrs["message"] == "Overloaded"
    # the same payload without framing still stops the stream in chunk conversion
    with pytest.raises(StreamBroken):
        delta_from_chunk_dict(json.loads(payload))


@pytest.mark.parametrize(
    "name,names,args",
    [
        ("openai_nonstream_tool_call.json", ["get_current_weather"], [{"location": "Boston, MA", "unit": "fahrenheit"}]),
        ("openai_nonstream_tool_calls_parallel.json", ["delete_file", "create_file"], [{"path": ".env"}, {"path": "test.txt"}]),
    ],
)
def test_nonstream_bodies(name, names, args):
    a = ReplyAssembler()
    a.feed(delta_from_chunk_dict(json.loads((STREAMS / name).read_text())))
    r = a.result()
    assert [c.name for c in r.tool_calls] == names
    assert [json.loads(c.arguments) for c in r.tool_calls] == args
    assert [c.index for c in r.tool_calls] == list(range(len(names)))


def test_nonstream_length_reasoning_only():
    d = delta_from_chunk_dict(json.loads((STREAMS / "openai_nonstream_finish_length.json").read_text()))
    assert d == Delta(finish_reason="length", usage=Usage(12, 100, 100))


# -- SSE framing ---------------------------------------------------------------------------------


def test_sse_framing_variants():
    text = (
        ": comment\r\n\r\n"
        "event: message\r\ndata:{\"a\":1}\r\n\r\n"
        "id: 7\ndata: {\"b\":\ndata: 2}\n\n"
        "data: [DONE]\n\n"
        "data: {\"c\":3}"  # no trailing blank line
    )
    assert list(iter_sse_data(text)) == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert list(iter_sse_data(text.encode())) == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_sse_garbage_is_broken():
    with pytest.raises(StreamBroken) as ei:
        list(iter_sse_data("data: {not json\n\n"))
    assert ei.value.event.attrs["cause"] == "provider_error"


def test_empty_and_foreign_chunks_are_none():
    assert delta_from_chunk_dict({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}) is None
    assert delta_from_chunk_dict({"choices": []}) is None
    assert delta_from_chunk_dict({"choices": [{"index": 1, "delta": {"content": "x"}}]}) is None
    assert delta_from_chunk_dict({"type": "ping"}) is None
    d = delta_from_chunk_dict({"choices": [{"index": 0, "delta": {}, "finish_reason": "max_tokens"}]})
    assert d == Delta(finish_reason="length")


# -- assembler -----------------------------------------------------------------------------------


def feed_texts(*parts: str) -> ReplyAssembler:
    a = ReplyAssembler()
    for p in parts:
        a.feed(Delta(text=p))
    return a


@pytest.mark.parametrize(
    "parts",
    [
        ("<think>plan it</think>Answer.",),
        ("<thi", "nk>plan", " it</th", "ink>Ans", "wer."),
        ("<", "t", "h", "i", "n", "k", ">", "plan it", "<", "/think", ">", "Answer."),
    ],
)
def test_think_tags_split_across_chunks(parts):
    r = feed_texts(*parts).result()
    assert (r.text, r.reasoning) == ("Answer.", "plan it")


def test_unterminated_think_is_reasoning():
    a = feed_texts("<think>still thinking", " about it</thi")
    r = a.result()
    assert r.text == "" and r.reasoning == "still thinking about it</thi"
    assert classify_reply(r, {}).name == "thinking_only"
    assert a.chars == 0


def test_lone_angle_bracket_is_text():
    r = feed_texts("a < b", " and c <").result()
    assert r.text == "a < b and c <" and r.reasoning == ""


def test_tool_fragments_merge_first_seen_wins_and_in_tool_call():
    a = ReplyAssembler()
    a.feed(Delta(text="Let me look."))
    assert not a.in_tool_call
    a.feed(Delta(tool_calls=(ToolCallFragment(0, "call_a", "search", ""),)))
    a.feed(Delta(tool_calls=(ToolCallFragment(0, "call_other", "other", '{"q": "x'),)))
    assert a.in_tool_call
    a.feed(Delta(tool_calls=(ToolCallFragment(1, "call_b", "fetch", '{"url"'),)))
    assert a.in_tool_call
    assert a.cut_tool_names() == ["search", "fetch"]
    r = a.result()
    assert [(c.id, c.name, c.arguments) for c in r.tool_calls] == [
        ("call_a", "search", '{"q": "x'),
        ("call_b", "fetch", '{"url"'),
    ]
    a.feed(Delta(finish_reason="length"))
    assert not a.in_tool_call and a.cut_tool_names() == []
    ev = classify_reply(a.result(), {"search": None, "fetch": None})
    assert ev.name == "length"
    assert ev.attrs == {"has_tool_calls": True, "dropped_tools": ["search", "fetch"], "thinking_only": False, "chars": 12}


def test_result_is_a_snapshot():
    a = feed_texts("one")
    r1 = a.result()
    a.feed(Delta(text=" two"))
    assert r1.text == "one" and a.result().text == "one two"
