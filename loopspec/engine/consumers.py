"""Consumers: who hears about a turn while it runs.

A halt whose text the model did not stream is fanned out once to every consumer, so a streaming
client never sees "role chunk, finish chunk, nothing between" (hermes-agent #30770). Each callback
is isolated: a consumer that raises is recorded and never stops the turn.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Consumers:
    on_delta: Callable[[str], Any] | None = None
    """Streamed visible text, as it arrives (and a halt message the model did not stream)."""
    on_end: Callable[[], Any] | None = None
    """End of the visible stream for the delta consumer; called once per turn."""
    on_interim: Callable[[str, bool], Any] | None = None
    """A complete message for non-streaming clients: (text, already_streamed)."""
    on_status: Callable[[str], Any] | None = None
    """Lifecycle notes: retries, backoffs, escalations, the halt outcome."""
    errors: list[str] = field(default_factory=list)

    async def emit(self, name: str, *args: Any) -> None:
        callback = getattr(self, name)
        if callback is None:
            return
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # isolation is the point: record, never propagate
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
