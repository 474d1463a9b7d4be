"""The tools a replay runs: each call answered with the result the cassette recorded for that
tool, in order; a tool that blocks until the turn is cancelled, when the cassette says so."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from loopspec.engine.tools import ToolRegistry
from loopspec.language.errors import LoopspecError

from .cancel import CancelPlan
from .cassette import Cassette


class ToolResultsExhausted(LoopspecError):
    """The policy ran a tool more often than the cassette recorded."""


@dataclass
class RecordedTools:
    """A tool registry that answers each call with the cassette's next recorded result. A result
    that ``blocks`` never returns: the tool waits until the turn is cancelled."""

    cassette: Cassette
    registry: ToolRegistry = field(default_factory=ToolRegistry)
    exhausted: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    """The tools that started running, in order."""
    cancel: CancelPlan = field(default_factory=lambda: CancelPlan(None))

    def __post_init__(self) -> None:
        queues: dict[str, list[Any]] = {t.name: [] for t in self.cassette.tools}
        for r in self.cassette.tool_results:
            queues.setdefault(r.tool, []).append(r)
        self.queues = queues
        for spec in self.cassette.tools:
            # idempotent: a replayed call has no effect but taking its recorded result, so a call a
            # crash interrupted is played again on resume (from the same result, see skip_played)
            self.registry.register(
                self._player(spec.name), name=spec.name, parameters=spec.parameters,
                description=spec.description, needs_approval=spec.needs_approval, idempotent=True,
            )

    def skip_played(self, played: dict[str, int]) -> None:
        """Go on from a journal: ``played[name]`` calls of each tool already took their results
        (they ran before a crash), so the next call of that tool takes the result after them."""
        for name, n in played.items():
            queue = self.queues.get(name) or []
            taken = min(n, len(queue))
            del queue[:taken]
            self.ran += [name] * taken
            self.exhausted += [name] * (n - taken)

    def _player(self, name: str):  # type: ignore[no-untyped-def]
        """A coroutine, so it runs on the event loop (a sync tool would run in a thread, and the
        calls of a batch would take the recorded results in whatever order the threads ran); one
        that waits for the cancel when the cassette cancels during the tool or the tool blocks.

        The player closes over the queues and lists it updates, never over ``self``: the registry
        holds the player, so a player holding ``self`` would make a reference cycle, and a corpus
        run would leave every replayed turn to the cyclic garbage collector."""
        queues, exhausted, ran, cancel = self.queues, self.exhausted, self.ran, self.cancel

        def answer() -> Any:
            queue = queues.get(name) or []
            if not queue:
                exhausted.append(name)
                raise ToolResultsExhausted(f"the cassette recorded no further result for tool '{name}'")
            outcome = queue.pop(0)
            ran.append(name)
            return outcome

        def result(outcome: Any) -> str:
            if outcome.error is not None:
                raise RuntimeError(outcome.error)
            return outcome.result or ""

        async def play(**_arguments: Any) -> str:  # on the event loop: results go out in call order
            return result(answer())

        async def play_until_cancelled(**_arguments: Any) -> str:
            outcome = answer()
            await cancel.tool_started(name)
            if outcome.blocks:
                await asyncio.Event().wait()  # until the turn is cancelled
            return result(outcome)

        point = self.cassette.cancel
        waits = (point is not None and point.during_tool == name) or any(r.blocks for r in self.queues.get(name) or [])
        return play_until_cancelled if waits else play
