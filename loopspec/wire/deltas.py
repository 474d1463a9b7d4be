"""The normalised delta stream: the one internal boundary between providers and the engine.

The live litellm provider and the in-process replay both turn whatever they read (litellm
``ModelResponseStream`` objects, raw OpenAI chunk JSON) into these small immutable records, so the
assembler, the classifier and the interpreter never see a provider-specific object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["ToolCallFragment", "Usage", "Delta"]


@dataclass(frozen=True, slots=True)
class ToolCallFragment:
    """One streamed piece of a tool call; fragments with the same ``index`` belong to one call."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage as reported by the provider (kept so budgets can count tokens later)."""

    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int = 0
    cost: float | None = None
    """US dollars for this reply, when known: the provider's own figure (OpenRouter's
    ``usage.cost``, a cassette's recorded one) or litellm's local cost map on the live path. None:
    unknown, and a ``cost`` budget is not charged for it."""


class Delta(NamedTuple):
    """What one chunk added to the reply.

    ``thinking_blocks`` carries Anthropic-style thinking fragments (dicts with ``type``
    ``thinking``/``redacted_thinking`` and ``thinking``/``signature``/``data``); the assembler
    merges them the way the provider expects them replayed.

    A named tuple rather than a frozen dataclass: one is built per streamed chunk (a corpus replay
    builds tens of thousands), and a tuple is built in a third of the time. Change one with
    ``delta._replace(...)``.
    """

    text: str = ""
    reasoning: str = ""
    tool_calls: tuple[ToolCallFragment, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None
    thinking_blocks: tuple[dict, ...] = ()

