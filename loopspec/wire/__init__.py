"""What a model said, in loopspec's own terms: the normalised stream deltas every provider yields,
the reply they assemble into, and the classifier that turns a reply or a provider error into an
event of the language's alphabet. Below the providers and the engine; never imports litellm."""

from loopspec.wire.assemble import AssembledReply, AssembledToolCall, ReplyAssembler
from loopspec.wire.classify import canonical_arguments, classify_exception, classify_reply
from loopspec.wire.deltas import Delta, ToolCallFragment, Usage

__all__ = [
    "AssembledReply",
    "AssembledToolCall",
    "Delta",
    "ReplyAssembler",
    "ToolCallFragment",
    "Usage",
    "canonical_arguments",
    "classify_exception",
    "classify_reply",
]
