"""A replayed turn is freed by reference counting, not left to the cyclic garbage collector.

A corpus run replays thousands of turns in one process; when each turn (its trace, requests and
history) sat in a reference cycle (turn -> tools -> player -> recorded tools -> cancel plan ->
turn), every one of them waited for a full collection, and the collector's passes over that heap
were a tenth of a corpus replay's time."""

from __future__ import annotations

import gc
import pytest

from loopspec import load_policy
from loopspec.replay.cassette import load_cassette
from loopspec.replay.harness import replay_sync

from _paths import DEFAULT_POLICY, ROOT

# Turns with tool batches. A turn cancelled mid-batch is left out: asyncio's gather keeps the
# CancelledError, whose traceback holds the frames that hold the turn; that cycle is asyncio's and
# costs only the rare cancelled turn.
CASSETTES = ["openhands-3663-syntax-error-loop", "nat-1705-recursion-limit-silent", "netclaw-1358-tools-reenabled"]


@pytest.mark.parametrize("name", CASSETTES)
def test_a_replayed_turn_and_its_tools_leave_no_reference_cycle(name: str) -> None:
    """Replaying a cassette whose turn runs tool batches, then dropping the report,
    leaves no turn, tool registry, recorded tools or cancel plan for the cyclic collector."""
    policy = load_policy(str(DEFAULT_POLICY))
    cassette = load_cassette(str(ROOT / "fixtures" / "incidents" / f"{name}.cassette.yaml"))
    gc.collect()
    gc.disable()
    try:
        report = replay_sync(cassette, policy)
        assert report.result.usage.tool_batches >= 1
        del report
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        kinds = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not kinds & {"Turn", "ToolRegistry", "RecordedTools", "CancelPlan", "TraceStep", "Trajectory"}, sorted(kinds)


def test_a_corpus_batch_collects_less_often_and_restores_the_collector_after() -> None:
    """While a corpus batch replays, the collector's young generation waits for thousands of
    allocations (not 700); afterwards, even after a failing batch, the thresholds are as before."""
    from loopspec.replay.corpus import _fewer_collections

    before = gc.get_threshold()
    with _fewer_collections():
        assert gc.get_threshold()[0] >= 10 * before[0]
    assert gc.get_threshold() == before
    with pytest.raises(ZeroDivisionError), _fewer_collections():
        1 / 0
    assert gc.get_threshold() == before
