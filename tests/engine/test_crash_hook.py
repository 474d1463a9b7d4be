"""The crash hook ends the process at exactly the K-th decision it takes, counted over every turn of
the process, and never before; ``os._exit`` is replaced here so the test's own process survives."""

from __future__ import annotations

from typing import Any

import pytest

import loopspec.engine.crash_hook as crash_hook
from loopspec.engine.crash_hook import CRASH_EXIT, CrashAfterStep


class Exited(BaseException):
    pass


def test_the_hook_exits_at_the_kth_decision_across_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise Exited

    monkeypatch.setattr(crash_hook.os, "_exit", fake_exit)
    hook = CrashAfterStep(5)
    for _ in range(3):  # a first turn of three decisions: no exit
        hook.step_taken(None, None)  # type: ignore[arg-type]
    assert codes == []
    hook.step_taken(None, None)  # type: ignore[arg-type]
    with pytest.raises(Exited):  # the fifth decision of the process, in its second turn
        hook.step_taken(None, None)  # type: ignore[arg-type]
    assert codes == [CRASH_EXIT] == [137]


@pytest.mark.parametrize("k", [0, -3])
def test_decisions_are_counted_from_one(k: Any) -> None:
    with pytest.raises(ValueError, match="counts decisions from 1"):
        CrashAfterStep(k)
