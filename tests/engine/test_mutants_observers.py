"""The observer hub (``loopspec/engine/observers.py``), written against the survivors of planting
mutmut's mutants of it: an observer need not derive from :class:`TurnObserver` (the hub reads its
``wants_checkpoints`` and ``required`` with defaults), and what a turn tells observers about itself."""

from __future__ import annotations

import asyncio
from typing import Any

from loopspec import InProcessProvider, Turn, VirtualClock, load_policy
from loopspec.engine.observers import TurnInfo
from loopspec.replay.synth import reply

from _paths import DEFAULT_POLICY

USER = [{"role": "user", "content": "Say hello."}]


class DuckObserver:
    """Every hook, none of :class:`TurnObserver`'s class attributes; ``turn_started`` raises."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    def turn_started(self, info: Any, messages: Any) -> None:
        raise RuntimeError("not ready")

    def checkpoint(self, point: Any) -> None:
        self.heard.append("checkpoint")

    def model_call_started(self, index: int, request: Any) -> None:
        self.heard.append("model_call_started")

    def model_call_finished(self, index: int, event: Any, reply: Any) -> None:
        self.heard.append("model_call_finished")

    def tool_started(self, call: Any) -> None:
        self.heard.append("tool_started")

    def tool_finished(self, call: Any, result: Any) -> None:
        self.heard.append("tool_finished")

    def step_taken(self, step: Any, record: Any) -> None:
        self.heard.append("step_taken")

    def turn_halted(self, result: Any) -> None:
        self.heard.append("turn_halted")


def test_an_observer_without_the_class_attributes_is_neither_asked_for_checkpoints_nor_required() -> None:
    """A duck-typed observer: no checkpoint is asked of it (the hub's default is False, not an
    error and not True), and its failing hook is recorded without stopping the turn, as for any
    observer that is not ``required``."""
    duck = DuckObserver()
    turn = Turn(load_policy(DEFAULT_POLICY), InProcessProvider([reply("Hello.")]), model="replay",
                clock=VirtualClock(), observers=[duck])
    assert turn.observers.wants_checkpoints is False
    result = asyncio.run(turn.run(USER))
    assert result.outcome == "completed" and result.response == "Hello."
    assert result.observer_errors == ["DuckObserver.turn_started: RuntimeError: not ready"]
    assert turn.observers.broken is None
    assert "checkpoint" not in duck.heard
    assert duck.heard[0] == "model_call_started" and "model_call_finished" in duck.heard and duck.heard[-1] == "turn_halted"


def test_turn_info_says_a_turn_is_not_resumed_unless_told() -> None:
    """What an observer's own tests build: a fresh turn's info."""
    info = TurnInfo("p", "m", None, replayed=False)
    assert (info.policy, info.model, info.api_base, info.replayed, info.resumed) == ("p", "m", None, False, False)
