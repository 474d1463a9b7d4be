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

# The server pulls in asyncio and sockets; the CLI imports this package for every command, so the
# server is loaded on first use (PEP 562) and `loopspec validate` stays fast to start.
_SERVER_NAMES = ("CHAT_PATH", "DIVERGED_HEADER", "LoopbackServer", "RecordedRequest")


def __getattr__(name: str) -> object:
    if name in _SERVER_NAMES:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module 'loopspec.replay' has no attribute {name!r}")


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
