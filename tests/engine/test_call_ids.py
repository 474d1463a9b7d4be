"""A history remembers where the search for each repeated id's first free suffix may start (a
replayed reply repeats its ids every round). Whatever the replies, the ids it gives must be the
plain rule's: the provider's id if fresh, else ``{id}_{n}`` with the first free ``n``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loopspec.engine.history import Trajectory, tool_calls_of
from loopspec.engine.tools import ToolResult
from loopspec.wire.assemble import AssembledReply, AssembledToolCall

ids = st.sampled_from([None, "a", "a_2", "a_3", "b", "call_0", "call_0_2", "call_1"])
replies = st.lists(st.lists(ids, min_size=1, max_size=3), max_size=12)


def _reply(call_ids: list[str | None]) -> AssembledReply:
    return AssembledReply(tool_calls=[AssembledToolCall(i, cid, "f", "{}") for i, cid in enumerate(call_ids)])


@given(replies, st.lists(st.booleans(), max_size=12), st.integers(0, 12))
def test_a_history_gives_each_round_the_ids_the_plain_first_free_rule_gives(
    rounds: list[list[str | None]], kept: list[bool], new_set_at: int
) -> None:
    """Rounds of replies, each round's calls entered into the history or (for a batch that never
    ran) not, and at one point the history handed a new, empty id set: every round's ids
    are those :func:`tool_calls_of` computes from the set alone, with no remembered start."""
    history = Trajectory()
    for k, round_ids in enumerate(rounds):
        if k == new_set_at:
            history.call_ids = set()  # a history handed a new (here: empty) set of ids starts over
        reply = _reply(round_ids)
        expected = [c.id for c in tool_calls_of(reply, frozenset(history.call_ids))]
        calls = history.calls_of(reply)
        assert [c.id for c in calls] == expected
        assert len(set(expected)) == len(expected) and not set(expected) & history.call_ids
        if k >= len(kept) or kept[k]:
            history.add_tool_round("", calls, [ToolResult(c, "ok", True) for c in calls])


def test_a_reply_that_repeats_its_id_every_round_gets_the_next_suffix_each_time() -> None:
    history = Trajectory()
    got = []
    for _ in range(5):
        calls = history.calls_of(_reply(["a"]))
        history.add_tool_round("", calls, [ToolResult(c, "ok", True) for c in calls])
        got.append(calls[0].id)
    assert got == ["a", "a_2", "a_3", "a_4", "a_5"]


def test_the_search_for_a_free_suffix_starts_where_the_history_says() -> None:
    """``taken_below`` is trusted: every smaller suffix counts as taken (that is what makes a
    repeated id cost one lookup), and it is moved on to the first suffix not in ``taken``."""
    below = {"a": 3}
    assert [c.id for c in tool_calls_of(_reply(["a", None]), set(), below)] == ["a_3", "call_1"]
    assert below == {"a": 3, "call_1": 1}
    below = {"a": 2}
    assert [c.id for c in tool_calls_of(_reply(["a"]), {"a_2", "a_3"}, below)] == ["a_4"] and below["a"] == 4
