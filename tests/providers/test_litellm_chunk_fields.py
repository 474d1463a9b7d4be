"""How a litellm chunk's fields are read (``fields_of``, ``field_of``, ``delta_from_litellm_chunk``).

litellm keeps most of a chunk's fields as pydantic extras, its hidden usage as a private
attribute, and a provider may hand back plain objects; these tests build each shape with litellm's
own types, so a reader that looks in the wrong place (or too few places) gives a wrong Delta.
"""

from __future__ import annotations

import litellm
import pytest
from litellm.types.utils import Delta as LiteLLMDelta
from litellm.types.utils import ModelResponseStream, StreamingChoices

from loopspec.providers.chunks import delta_from_litellm_chunk, field_of, fields_of


def chunk_of(*choices: StreamingChoices) -> ModelResponseStream:
    return ModelResponseStream(choices=list(choices))


def test_choice_zero_is_read_whatever_its_position() -> None:
    chunk = chunk_of(
        StreamingChoices(index=1, delta=LiteLLMDelta(content="second choice")),
        StreamingChoices(index=0, delta=LiteLLMDelta(content="first choice")),
    )
    assert delta_from_litellm_chunk(chunk).text == "first choice"


def test_a_chunk_with_no_choice_zero_carries_only_its_usage() -> None:
    chunk = chunk_of(StreamingChoices(index=2, delta=LiteLLMDelta(content="other")))
    delta = delta_from_litellm_chunk(chunk)
    assert delta.text == "" and delta.finish_reason is None


def test_the_usage_litellm_hides_on_the_last_chunk_is_read() -> None:
    """Without a usage field, the private ``_hidden_params`` usage counts when it is non-zero."""
    chunk = chunk_of(StreamingChoices(index=0, delta=LiteLLMDelta(content="x"), finish_reason="stop"))
    chunk._hidden_params = {"usage": litellm.Usage(prompt_tokens=3, completion_tokens=4)}
    usage = delta_from_litellm_chunk(chunk).usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (3, 4)
    chunk._hidden_params = {"usage": litellm.Usage(prompt_tokens=0, completion_tokens=0)}
    assert delta_from_litellm_chunk(chunk).usage is None


def test_fields_kept_as_pydantic_extras_are_read() -> None:
    """litellm stores a choice's delta and finish reason, and a delta's content, as extras."""
    choice = StreamingChoices(index=0, delta=LiteLLMDelta(content="hello"), finish_reason="length")
    assert "delta" not in vars(choice)  # litellm's layout, which the fast path relies on
    assert fields_of(choice).get("finish_reason") == "length"
    delta = delta_from_litellm_chunk(chunk_of(choice))
    assert (delta.text, delta.finish_reason) == ("hello", "length")


class PlainChunk:
    """A chunk as a plain object whose fields are properties (no pydantic, no ``__dict__`` entries)."""

    @property
    def choices(self) -> list:
        return [PlainChoice()]


class PlainChoice:
    index = 0
    finish_reason = "stop"

    @property
    def delta(self) -> object:
        return PlainDelta()


class PlainDelta:
    content = "from a plain object"
    tool_calls = None


def test_a_plain_object_chunk_is_read_through_its_attributes() -> None:
    delta = delta_from_litellm_chunk(PlainChunk())
    assert (delta.text, delta.finish_reason) == ("from a plain object", "stop")
    assert field_of(PlainChoice(), "finish_reason") == "stop"
    assert fields_of(PlainChoice()).get("delta") is not None


def test_a_missing_pydantic_field_reads_as_none() -> None:
    choice = StreamingChoices(index=0, delta=LiteLLMDelta(content="x"))
    assert field_of(choice.delta, "reasoning_content") is None
    assert fields_of(choice.delta).get("thinking_blocks") is None
    assert field_of(None, "anything") is None and fields_of(None).get("anything") is None


def test_a_usage_object_missing_fields_counts_them_as_zero() -> None:
    """A provider's usage object may lack any field: a missing count is 0, never an error (and
    never 1), and a missing reasoning breakdown is 0 reasoning tokens."""
    from types import SimpleNamespace

    from loopspec.providers.chunks import usage_from_obj

    u = usage_from_obj(SimpleNamespace(completion_tokens=3))
    assert u is not None and (u.prompt_tokens, u.completion_tokens, u.reasoning_tokens, u.cost) == (0, 3, 0, None)
    u = usage_from_obj(SimpleNamespace(prompt_tokens=4))
    assert u is not None and (u.prompt_tokens, u.completion_tokens) == (4, 0)
    assert usage_from_obj(None) is None


def test_a_cost_the_provider_reports_is_kept() -> None:
    from types import SimpleNamespace

    from loopspec.providers.chunks import usage_from_obj

    u = usage_from_obj(SimpleNamespace(prompt_tokens=1, completion_tokens=2, cost=0.25,
                                       completion_tokens_details=SimpleNamespace(reasoning_tokens=1)))
    assert u is not None and (u.cost, u.reasoning_tokens) == (0.25, 1)


@pytest.mark.parametrize(
    "reported, kept",
    [(0, 0.0), (0.0, 0.0), (0.5, 0.5), (1, 1.0), (2.5, 2.5), (-0.01, None), (float("inf"), None),
     (float("nan"), None), (True, None), ("0.1", None), (None, None)],
)
def test_a_reported_cost_is_kept_only_as_a_finite_amount_of_zero_or_more(reported: object, kept: object) -> None:
    from loopspec.providers.chunks import usage_cost

    assert usage_cost(reported) == kept


def test_a_reasoning_breakdown_without_a_count_or_with_zero_is_no_reasoning() -> None:
    from types import SimpleNamespace

    from loopspec.providers.chunks import usage_from_obj

    for details in (SimpleNamespace(), SimpleNamespace(reasoning_tokens=0), SimpleNamespace(reasoning_tokens=None)):
        u = usage_from_obj(SimpleNamespace(prompt_tokens=1, completion_tokens=2, completion_tokens_details=details))
        assert u is not None and u.reasoning_tokens == 0, details


def test_a_whole_litellm_response_reads_its_text_tool_calls_finish_and_usage() -> None:
    """The non-streaming path (``LiteLLMProvider(stream=False)``) reads a litellm ``ModelResponse``
    field by field: the message, its tool calls, the finish reason and the usage."""
    from loopspec.providers.litellm_provider import delta_from_litellm_response

    response = litellm.ModelResponse(
        choices=[{
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": "Looking it up.",
                "tool_calls": [{"id": "call_1", "type": "function",
                                "function": {"name": "get_capital", "arguments": '{"country": "UK"}'}}],
            },
        }],
        usage={"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    )
    delta = delta_from_litellm_response(response)
    assert delta.text == "Looking it up."
    assert delta.finish_reason == "tool_calls"
    assert [(f.index, f.id, f.name, f.arguments) for f in delta.tool_calls] == [(0, "call_1", "get_capital", '{"country": "UK"}')]
    assert delta.usage is not None and (delta.usage.prompt_tokens, delta.usage.completion_tokens) == (11, 7)


class Slotted:
    """An object with no ``__dict__`` (a provider SDK's slotted class)."""

    __slots__ = ("finish_reason",)

    def __init__(self) -> None:
        self.finish_reason = "stop"


def test_an_object_without_a_dict_is_read_through_its_attributes() -> None:
    assert field_of(Slotted(), "finish_reason") == "stop"
    assert field_of(Slotted(), "missing") is None


def test_hidden_usage_with_only_one_count_is_still_read() -> None:
    chunk = chunk_of(StreamingChoices(index=0, delta=LiteLLMDelta(content="x"), finish_reason="stop"))
    chunk._hidden_params = {"usage": litellm.Usage(prompt_tokens=5, completion_tokens=0)}
    usage = delta_from_litellm_chunk(chunk).usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (5, 0)


def test_a_usage_only_chunk_without_choices_carries_its_usage() -> None:
    """The chunk OpenAI sends after the last choice chunk when usage is asked for: no choices."""
    chunk = ModelResponseStream(choices=[])
    chunk.usage = litellm.Usage(prompt_tokens=9, completion_tokens=2)
    delta = delta_from_litellm_chunk(chunk)
    assert delta.usage is not None and (delta.usage.prompt_tokens, delta.usage.completion_tokens) == (9, 2)
    assert delta.text == "" and delta.finish_reason is None


class NativeFinishChoice:
    """A choice from a server that passes its native finish reason through unmapped."""

    index = 0
    delta = None

    def __init__(self, finish_reason: str) -> None:
        self.finish_reason = finish_reason


class ChunkOf:
    def __init__(self, *choices: object) -> None:
        self.choices = list(choices)


@pytest.mark.parametrize("native, mapped", [("max_output_tokens", "length"), ("end_turn", "stop"), ("tool_use", "tool_calls"), ("stop", "stop")])
def test_a_native_finish_reason_is_mapped_to_openais(native: str, mapped: str) -> None:
    assert delta_from_litellm_chunk(ChunkOf(NativeFinishChoice(native))).finish_reason == mapped


class SlottedChunk:
    """A chunk object with no ``__dict__`` (a provider SDK's slotted class)."""

    __slots__ = ("choices",)

    def __init__(self) -> None:
        self.choices = [NativeFinishChoice("stop")]


def test_a_chunk_without_a_dict_is_read_through_its_attributes() -> None:
    assert fields_of(SlottedChunk()).get("choices") is not None
    assert delta_from_litellm_chunk(SlottedChunk()).finish_reason == "stop"


# ------------------------------------------------------------ tool calls, thinking, reasoning


class Obj:
    """A plain provider object with the given attributes."""

    def __init__(self, **fields: object) -> None:
        self.__dict__.update(fields)


def test_a_finish_only_choice_keeps_the_chunks_usage() -> None:
    chunk = Obj(choices=[Obj(index=0, delta=None, finish_reason="stop")],
                usage=Obj(prompt_tokens=3, completion_tokens=1))
    delta = delta_from_litellm_chunk(chunk)
    assert delta.finish_reason == "stop"
    assert delta.usage is not None and (delta.usage.prompt_tokens, delta.usage.completion_tokens) == (3, 1)


def test_a_text_chunk_has_no_tool_calls_and_no_thinking_blocks() -> None:
    delta = delta_from_litellm_chunk(chunk_of(StreamingChoices(index=0, delta=LiteLLMDelta(content="hi"))))
    assert delta.tool_calls == () and delta.thinking_blocks == ()


def test_a_tool_call_fragment_keeps_its_index_id_name_and_arguments() -> None:
    from litellm.types.utils import ChatCompletionDeltaToolCall, Function

    first = ChatCompletionDeltaToolCall(index=1, id="call_7", type="function", function=Function(name="get_capital", arguments=""))
    chunk = chunk_of(StreamingChoices(index=0, delta=LiteLLMDelta(tool_calls=[first])))
    [frag] = delta_from_litellm_chunk(chunk).tool_calls
    assert (frag.index, frag.id, frag.name, frag.arguments) == (1, "call_7", "get_capital", "")


@pytest.mark.parametrize(
    "arguments, text", [(None, ""), ('{"a": 1}', '{"a": 1}'), ({"a": 1}, '{"a": 1}')], ids=["none", "text", "object"]
)
def test_tool_call_arguments_are_text_whatever_the_provider_sent(arguments: object, text: str) -> None:
    """Missing arguments are empty text, and an already-parsed object is sent back as JSON."""
    call = Obj(index=None, id=None, function=Obj(name=None, arguments=arguments))
    chunk = Obj(choices=[Obj(index=0, finish_reason=None, delta=Obj(content=None, tool_calls=[call]))])
    [frag] = delta_from_litellm_chunk(chunk).tool_calls
    assert frag.arguments == text
    assert (frag.index, frag.id, frag.name) == (0, None, None)  # no index: its position


def test_thinking_blocks_are_kept_as_dicts() -> None:
    from collections import UserDict

    block = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    mapping = UserDict({"type": "redacted_thinking", "data": "xyz"})
    chunk = Obj(choices=[Obj(index=0, finish_reason=None, delta=Obj(content=None, thinking_blocks=[block, mapping]))])
    blocks = delta_from_litellm_chunk(chunk).thinking_blocks
    assert blocks == (block, {"type": "redacted_thinking", "data": "xyz"})
    assert blocks[0] is block and type(blocks[1]) is dict


DETAILS = [{"type": "reasoning.text", "text": "Let me think.", "signature": "s1"}]


@pytest.mark.parametrize("where", ["delta", "provider_specific_fields"])
def test_openrouter_reasoning_details_give_thinking_blocks_and_reasoning(where: str) -> None:
    """OpenRouter's reasoning_details arrive on the delta or inside provider_specific_fields
    (litellm moves them there); either way they give the thinking block and, when the chunk has
    no reasoning text of its own, the reasoning."""
    fields = {"reasoning_details": DETAILS} if where == "delta" else {"provider_specific_fields": {"reasoning_details": DETAILS}}
    chunk = Obj(choices=[Obj(index=0, finish_reason=None, delta=Obj(content=None, **fields))])
    delta = delta_from_litellm_chunk(chunk)
    assert delta.thinking_blocks == ({"type": "thinking", "thinking": "Let me think.", "signature": "s1"},)
    assert delta.reasoning == "Let me think."


def test_reasoning_text_of_the_chunk_wins_over_the_details_text() -> None:
    chunk = Obj(choices=[Obj(index=0, finish_reason=None,
                             delta=Obj(content=None, reasoning_content="own words", reasoning_details=DETAILS))])
    delta = delta_from_litellm_chunk(chunk)
    assert delta.reasoning == "own words" and len(delta.thinking_blocks) == 1


def test_every_kind_of_reasoning_detail_is_kept_in_order() -> None:
    """An entry that is not a mapping is skipped (not the end of the list); an encrypted entry
    becomes a redacted_thinking block with its data, and one without data is dropped; a text
    entry gives a thinking block, and a signature alone still does; the texts join as they are."""
    details = [
        "not a mapping",
        {"type": "reasoning.encrypted", "data": "opaque"},
        {"type": "reasoning.encrypted", "data": ""},
        {"type": "reasoning.text", "text": "First. "},
        {"type": "reasoning.text", "text": "", "signature": "sig"},
        {"type": "reasoning.text", "text": "Second."},
        {"type": "reasoning.summary", "summary": "ignored"},
    ]
    chunk = Obj(choices=[Obj(index=0, finish_reason=None, delta=Obj(content=None, reasoning_details=details))])
    delta = delta_from_litellm_chunk(chunk)
    assert delta.thinking_blocks == (
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "thinking", "thinking": "First. ", "signature": None},
        {"type": "thinking", "thinking": "", "signature": "sig"},
        {"type": "thinking", "thinking": "Second.", "signature": None},
    )
    assert delta.reasoning == "First. Second."


def test_pydantic_model_types_are_told_from_plain_ones_every_time() -> None:
    """``fields_of`` reads a pydantic model from its dicts and anything else through its attributes;
    which is which is remembered per type, so the second answer must equal the first."""
    from loopspec.providers.chunks import _is_model

    class Plain:
        model_field = 1

    for _ in range(2):
        assert _is_model(ModelResponseStream) is True
        assert _is_model(StreamingChoices) is True
        assert _is_model(Plain) is False
        assert _is_model(dict) is False
