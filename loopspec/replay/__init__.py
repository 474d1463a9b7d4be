"""Replay: feed a recorded turn (model responses, errors, stalls) back through a policy.

``interactions`` holds the transport-neutral description of what the world said; ``server`` plays
it over real loopback HTTP for litellm.
"""

from .interactions import (
    CompletionResponse,
    Disconnect,
    ErrorResponse,
    Interaction,
    PlanStep,
    Stall,
    StreamResponse,
    completion_chunks,
    fold_stream,
    is_data_event,
    split_sse,
    sse_events,
    stream_chunks,
    stream_plan,
)
from .server import CHAT_PATH, DIVERGED_HEADER, LoopbackServer, RecordedRequest

__all__ = [
    "CHAT_PATH",
    "CompletionResponse",
    "DIVERGED_HEADER",
    "Disconnect",
    "ErrorResponse",
    "Interaction",
    "LoopbackServer",
    "PlanStep",
    "RecordedRequest",
    "Stall",
    "StreamResponse",
    "completion_chunks",
    "fold_stream",
    "is_data_event",
    "split_sse",
    "sse_events",
    "stream_chunks",
    "stream_plan",
]
