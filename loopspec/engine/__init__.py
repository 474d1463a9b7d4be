"""The engine: normalised deltas, reply assembly and event classification (interpreter too).

Re-exports only litellm-free modules, so importing ``loopspec.engine`` stays cheap.
"""

from loopspec.engine.assemble import AssembledReply, AssembledToolCall, ReplyAssembler
from loopspec.engine.classify import canonical_arguments, classify_exception, classify_reply
from loopspec.engine.deltas import Delta, ToolCallFragment, Usage

__all__ = [
    "AssembledReply",
    "AssembledToolCall",
    "ReplyAssembler",
    "canonical_arguments",
    "classify_exception",
    "classify_reply",
    "Delta",
    "ToolCallFragment",
    "Usage",
]
