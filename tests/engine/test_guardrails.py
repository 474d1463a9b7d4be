"""Tool-loop detectors: canonical arguments, progress by result, cycles of period 2-5, memory that
survives compaction."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loopspec.engine.guardrails import GuardrailState
from loopspec.engine.tools import ToolCall, ToolResult
from loopspec.language.model import Guardrail


def config(**codes: tuple[int, str]) -> dict[str, Guardrail]:
    return {code: Guardrail(code, threshold, verdict) for code, (threshold, verdict) in codes.items()}


def result(name: str, args: str, content: str, ok: bool = True) -> ToolResult:
    return ToolResult(ToolCall(f"id-{name}-{args}", name, args), content, ok)


def test_repeated_exact_failure_ignores_key_order_and_whitespace() -> None:
    g = GuardrailState(config(repeated_exact_failure=(2, "halt")))
    assert g.observe([result("read", '{"path": "a", "n": 1}', "boom", ok=False)]) is None
    event = g.observe([result("read", '{"n":1,"path":"a"}', "boom", ok=False)])
    assert event is not None and event.name == "repeated_exact_failure"
    assert event.attrs == {"tool": "read", "verdict": "halt"}


def test_a_poll_whose_result_changes_is_progress_not_a_loop() -> None:
    g = GuardrailState(config(no_progress=(3, "warn"), doom_loop=(3, "halt")))
    for i in range(10):
        assert g.observe([result("status", "{}", f"running {i}")]) is None
    same = GuardrailState(config(no_progress=(3, "warn")))
    events = [same.observe([result("status", "{}", "running")]) for _ in range(3)]
    assert events[:2] == [None, None] and events[2] is not None and events[2].name == "no_progress"


def test_doom_loop_catches_a_b_a_b_cycles() -> None:
    g = GuardrailState(config(doom_loop=(3, "halt")))
    seen = []
    for _ in range(3):
        seen.append(g.observe([result("open", '{"f": 1}', "x")]))
        seen.append(g.observe([result("close", '{"f": 1}', "y")]))
    assert seen[:5] == [None] * 5
    assert seen[5] is not None and seen[5].name == "doom_loop" and seen[5].attrs["period"] == 2


def test_cycles_up_to_period_five_and_not_beyond_max_period() -> None:
    cycle = [("t%d" % i, "{}", "r") for i in range(5)]
    g = GuardrailState({"doom_loop": Guardrail("doom_loop", 2, "halt", max_period=5)})
    events = [g.observe([result(*c)]) for c in cycle * 2]
    assert events[-1] is not None and events[-1].attrs["period"] == 5
    short = GuardrailState({"doom_loop": Guardrail("doom_loop", 2, "halt", max_period=4)})
    assert all(short.observe([result(*c)]) is None for c in cycle * 2)


def test_allow_verdict_never_fires_and_precedence_prefers_doom_loop() -> None:
    g = GuardrailState(config(repeated_exact_failure=(2, "allow")))
    assert all(g.observe([result("x", "{}", "e", ok=False)]) is None for _ in range(5))
    both = GuardrailState(config(repeated_exact_failure=(3, "halt"), doom_loop=(3, "warn")))
    events = [both.observe([result("x", "{}", "e", ok=False)]) for _ in range(3)]
    assert events[2] is not None and events[2].name == "doom_loop"


def test_detector_memory_survives_compaction_of_the_prompt() -> None:
    """The detector lives in the turn, not in the messages: compacting the prompt forgets nothing."""
    import asyncio
    import json

    from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy
    from loopspec.replay.interactions import ErrorResponse
    from loopspec.replay.synth import reply

    from _paths import DEFAULT_POLICY

    overflow = ErrorResponse(400, {"error": {"message": "maximum context length exceeded", "code": "context_length_exceeded"}})
    call = reply(tool_calls=[("read", {"path": "a"})])
    reg = ToolRegistry()

    def read(path: str) -> str:
        raise OSError("disk unavailable")

    reg.register(read, parameters={"type": "object", "properties": {"path": {"type": "string"}}})
    history = [{"role": "user", "content": f"m{i}"} for i in range(12)]
    turn = Turn(load_policy(str(DEFAULT_POLICY)), InProcessProvider([call, overflow, call]), model="r", tools=reg, clock=VirtualClock())
    result_ = asyncio.run(turn.run(history))
    events = [s.event for s in result_.trace]
    assert "context_overflow" in events and events[-1] == "repeated_exact_failure", events
    assert json.dumps(result_.messages).count("disk unavailable") == 2


def test_the_memory_a_checkpoint_carries_holds_no_result_text_and_a_bounded_call_window() -> None:
    """Every journal checkpoint writes this memory: a large result must not be copied into it, and
    the ordered window is only as long as the doom-loop detector looks back (max_period x threshold)."""
    g = GuardrailState({"doom_loop": Guardrail("doom_loop", 3, "halt", max_period=5), **config(no_progress=(3, "warn"))})
    big = "x" * 10_000
    for i in range(200):
        g.observe([result("read", f'{{"n": {i}}}', big + str(i))])
    memory = g.to_json()
    assert len(g.signatures) == 15 and big not in repr(memory)
    assert len(repr(memory)) < 200 * 120, "about one digest per distinct call, not its text"


def test_memory_restored_from_a_checkpoint_detects_as_the_uninterrupted_state_does() -> None:
    """A restored state (also from an older journal that wrote texts) goes on firing where the
    uninterrupted one fires."""
    cfg = config(no_progress=(3, "warn"), repeated_exact_failure=(2, "halt"), doom_loop=(3, "halt"))
    batches = [[result("a", "{}", "1")], [result("b", "{}", "2", ok=False)], [result("a", "{}", "1")], [result("b", "{}", "2", ok=False)]]
    whole = GuardrailState(cfg)
    fired = [whole.observe(b) for b in batches]
    half = GuardrailState(cfg)
    for b in batches[:2]:
        half.observe(b)
    resumed = GuardrailState(cfg)
    resumed.restore(half.to_json())
    assert [resumed.observe(b) for b in batches[2:]] == fired[2:] and fired[3] is not None
    older = {"signatures": [["a", "{}", "1"], ["b", "{}", "2"]], "failures": [["b", "{}", "2", 1]],
             "tool_fail_streak": {"a": 0, "b": 1}, "repeats": [["a", "{}", "1", 1], ["b", "{}", "2", 1]]}
    from_old = GuardrailState(cfg)
    from_old.restore(older)
    assert [from_old.observe(b) for b in batches[2:]] == fired[2:]


def _plain_period(sigs: list[tuple[str, str]], threshold: int, max_period: int) -> int:
    """The doom-loop definition, written out with no shortcut: the shortest p in 1..max_period
    whose last p calls repeat ``threshold`` times at the end (and, for p > 1, are not all one call)."""
    for p in range(1, max_period + 1):
        need = p * threshold
        if len(sigs) < need:
            return 0
        tail = sigs[-need:]
        if all(tail[i] == tail[i % p] for i in range(need)) and (p == 1 or len(set(tail[:p])) > 1):
            return p
    return 0


@given(st.lists(st.integers(0, 2), max_size=24), st.integers(1, 4), st.integers(1, 6))
def test_the_doom_loop_period_is_the_shortest_repeating_cycle_by_its_plain_definition(
    tools: list[int], threshold: int, max_period: int
) -> None:
    """Whatever the sequence of calls, threshold and longest period, the detector's period (its
    early rejections included) is the one the plain definition gives."""
    g = GuardrailState({"doom_loop": Guardrail("doom_loop", threshold, "halt", max_period=max_period)})
    for t in tools:
        g.observe([result(f"t{t}", "{}", "same")])
        assert g._cycle_period() == _plain_period(g.signatures, threshold, max_period)


def test_a_copy_remembers_the_same_calls_and_goes_on_alone() -> None:
    """What the checker relies on when it tries several scripts from one state: the copy fires as
    the original would, and what it observes never reaches the original."""
    g = GuardrailState(config(repeated_exact_failure=(2, "halt"), same_tool_failure=(3, "correct"),
                              no_progress=(3, "warn"), doom_loop=(3, "halt")))
    assert g.observe([result("read", "{}", "boom", ok=False)]) is None
    before = g.to_json()
    twin = g.copy()
    assert twin.to_json() == before and twin.config is g.config
    event = twin.observe([result("read", "{}", "boom", ok=False)])
    assert event is not None and event.name == "repeated_exact_failure"
    assert g.to_json() == before, "the copy's calls stay its own"
    assert g.observe([result("read", "{}", "boom", ok=False)]) == event
