"""Tests against the mutants of ``engine/guardrails.py`` that the suite let live (a mutation
analysis by hand: each bug planted in the loop detectors, seen to survive the engine tests, and
killed by a test here). The detectors are a pure function of the results they are shown, so these
feed them batches directly, as tests/engine/test_guardrails.py does; each names the plant it kills."""

from __future__ import annotations

import pytest

from loopspec.engine.guardrails import GuardrailState
from loopspec.engine.tools import ToolCall, ToolResult
from loopspec.language.model import Guardrail


def config(**codes: tuple[int, str]) -> dict[str, Guardrail]:
    return {code: Guardrail(code, threshold, verdict) for code, (threshold, verdict) in codes.items()}


def result(name: str, args: str, content: str, ok: bool = True, call_id: str = "") -> ToolResult:
    return ToolResult(ToolCall(call_id or f"id-{name}-{args}", name, args), content, ok)


def test_a_success_ends_a_tools_failure_streak() -> None:
    """Plant G05: a call that worked did not reset its tool's streak, so same_tool_failure fired on
    failures that a success had separated."""
    g = GuardrailState(config(same_tool_failure=(3, "correct")))
    fired = [g.observe([result("fetch", f'{{"n": {i}}}', "ok" if i == 2 else "boom", ok=i == 2)]) for i in range(5)]
    assert fired == [None] * 5, "fail, fail, ok, fail, fail: never three in a row"
    fired = g.observe([result("fetch", '{"n": 9}', "boom", ok=False)])
    assert fired is not None and fired.name == "same_tool_failure" and fired.attrs == {"tool": "fetch", "verdict": "correct"}


def test_a_doom_loop_names_the_tool_that_closed_the_cycle() -> None:
    """Plant G08: the event named the oldest call the detector remembers instead of the latest, the
    one whose repetition completed the cycle."""
    g = GuardrailState({"doom_loop": Guardrail("doom_loop", 2, "halt", max_period=5)})
    g.observe([result("list", "{}", "x")])  # older than the cycle
    fired = [g.observe([result(name, "{}", name)]) for name in ("open", "close", "open", "close")]
    assert fired[:3] == [None] * 3
    assert fired[3] is not None and fired[3].attrs == {"tool": "close", "verdict": "halt", "period": 2}


def test_the_first_call_of_a_batch_to_trip_a_detector_is_the_one_named() -> None:
    """Plant G12: a later call of the same batch tripping the same detector replaced the event, so
    the message named the wrong tool."""
    g = GuardrailState(config(repeated_exact_failure=(2, "halt")))
    batch = [result("read", "{}", "boom", ok=False, call_id="a"), result("write", "{}", "boom", ok=False, call_id="b")]
    assert g.observe(batch) is None
    fired = g.observe([result("read", "{}", "boom", ok=False, call_id="c"), result("write", "{}", "boom", ok=False, call_id="d")])
    assert fired is not None and fired.attrs["tool"] == "read"


def test_restored_memory_counts_repeats_on_from_the_checkpoint() -> None:
    """Plant G17 (also caught, more slowly, by test_resume.py through a killed process): the repeats were not restored, so no_progress counted a resumed turn's identical
    calls from zero and fired later than the uninterrupted turn."""
    cfg = config(no_progress=(3, "warn"))
    same = [result("status", "{}", "running")]
    whole = GuardrailState(cfg)
    assert [whole.observe(same) is None for _ in range(3)] == [True, True, False]
    half = GuardrailState(cfg)
    half.observe(same)
    half.observe(same)
    resumed = GuardrailState(cfg)
    resumed.restore(half.to_json())
    fired = resumed.observe(same)
    assert fired is not None and fired.name == "no_progress"


def test_restored_memory_from_an_older_journal_keeps_only_the_window() -> None:
    """Plant G04: restoring did not cut the remembered calls to the doom-loop window, so a memory
    from an older journal (which kept every call, with its text) was written into every checkpoint
    after the resume."""
    g = GuardrailState({"doom_loop": Guardrail("doom_loop", 3, "halt", max_period=2)})
    older = {"signatures": [["read", f'{{"n": {i}}}', "x" * 100] for i in range(40)], "failures": [],
             "tool_fail_streak": {}, "repeats": []}
    g.restore(older)
    assert len(g.to_json()["signatures"]) == 6


def test_a_result_with_a_lone_surrogate_is_still_compared() -> None:
    """mutmut ``signature_9`` and ``_12``: the result was encoded strictly, so a tool answer holding
    a lone surrogate (bytes decoded with ``surrogateescape``, a file name off a broken disk) raised
    in the loop detectors instead of being compared; two such answers that differ stay apart."""
    g = GuardrailState(config(repeated_exact_failure=(2, "correct")))
    assert g.observe([result("read", '{"p": 1}', "bad \udcff", ok=False)]) is None
    fired = g.observe([result("read", '{"p": 1}', "bad \udcff", ok=False)])
    assert fired is not None and fired.name == "repeated_exact_failure"
    g = GuardrailState(config(repeated_exact_failure=(2, "correct")))
    g.observe([result("read", '{"p": 1}', "bad \udcff", ok=False)])
    assert g.observe([result("read", '{"p": 1}', "bad \udcfe", ok=False)]) is None


def test_a_journal_written_earlier_is_resumed_with_the_same_signatures() -> None:
    """mutmut ``signature_14``: the digest's size changed, and a journal's checkpoint holds the
    digests themselves, so a turn resumed from a journal written before the change no longer saw
    its repeated failure. The memory below is what a checkpoint holds after one failed ``read``."""
    g = GuardrailState(config(repeated_exact_failure=(2, "correct")))
    g.restore({"signatures": [], "failures": [["read", "aa938e71972cce1499047953", 1]],
               "tool_fail_streak": {"read": 1}, "repeats": [["read", "aa938e71972cce1499047953", 1]]})
    fired = g.observe([result("read", '{"p": 1}', "boom", ok=False)])
    assert fired is not None and fired.name == "repeated_exact_failure"


def test_a_tools_failure_streak_survives_the_journal() -> None:
    """mutmut ``to_json_6`` and ``_7``: the memory a checkpoint keeps lost each tool's failure
    streak, so a turn resumed after one failure needed two more before same_tool_failure fired."""
    before = GuardrailState(config(same_tool_failure=(2, "correct")))
    assert before.observe([result("fetch", '{"n": 1}', "boom", ok=False)]) is None
    after = GuardrailState(config(same_tool_failure=(2, "correct")))
    after.restore(before.to_json())
    fired = after.observe([result("fetch", '{"n": 2}', "bang", ok=False)])
    assert fired is not None and fired.name == "same_tool_failure"


@pytest.mark.parametrize("missing", ["signatures", "failures", "tool_fail_streak", "repeats", "all"])
def test_a_memory_missing_a_part_restores_the_rest_and_starts_that_part_afresh(missing: str) -> None:
    """mutmut ``restore_4``/``_6``/``_17``/``_19``/``_26``/``_28``: a part missing from the memory
    (a checkpoint with no guardrail memory is resumed with ``{}``) raised instead of starting empty.
    The parts still there keep counting: one more failure of ``read`` fires both failure detectors."""
    cfg = config(repeated_exact_failure=(2, "correct"), same_tool_failure=(2, "halt"))
    before = GuardrailState(cfg)
    before.observe([result("read", '{"p": 1}', "boom", ok=False)])
    memory = {} if missing == "all" else {k: v for k, v in before.to_json().items() if k != missing}
    after = GuardrailState(cfg)
    after.restore(memory)
    fired = after.observe([result("read", '{"p": 1}', "boom", ok=False)])
    remembered = {"failures": "same_tool_failure", "tool_fail_streak": "repeated_exact_failure"}
    if missing == "all":
        assert fired is None and after.to_json() == before.to_json()
    elif missing in remembered:
        assert fired is not None and fired.name == remembered[missing]
    else:
        assert fired is not None and fired.name in ("repeated_exact_failure", "same_tool_failure")
        assert after.to_json()["failures"] == [["read", "aa938e71972cce1499047953", 2]]


def test_a_call_that_worked_never_counts_as_a_repeated_failure() -> None:
    """mutmut ``observe_50``: a call that never failed was counted as failed once, so with a
    threshold of 1 (the language allows it) every successful call fired repeated_exact_failure."""
    g = GuardrailState(config(repeated_exact_failure=(1, "correct")))
    assert g.observe([result("read", '{"p": 1}', "fine")]) is None
    fired = g.observe([result("read", '{"p": 2}', "boom", ok=False)])
    assert fired is not None and fired.name == "repeated_exact_failure" and fired.attrs["tool"] == "read"


def test_no_progress_names_the_tool_that_repeated() -> None:
    """mutmut ``observe_68``: the no_progress event named no tool, so a policy's message (and the
    trace) could not say which call kept coming back with the same answer."""
    g = GuardrailState(config(no_progress=(2, "correct")))
    g.observe([result("poll", '{"job": 7}', "pending")])
    fired = g.observe([result("poll", '{"job": 7}', "pending")])
    assert fired is not None and fired.name == "no_progress" and fired.attrs == {"tool": "poll", "verdict": "correct"}


def test_a_doom_loop_fires_at_the_highest_threshold_the_language_allows() -> None:
    """mutmut ``observe_89``: the doom-loop event was checked against a stand-in count (90) instead
    of the cycle's repeats, so a threshold above it never fired. A cycle of two calls, 1000 rounds."""
    g = GuardrailState({"doom_loop": Guardrail("doom_loop", 1000, "halt", max_period=2)})
    calls = [result("ls", "{}", "a"), result("cd", '{"d": ".."}', "ok")]
    fired = [g.observe([calls[i % 2]]) for i in range(2000)]
    assert fired[:-1] == [None] * 1999
    last = fired[-1]
    assert last is not None and last.name == "doom_loop" and last.attrs == {"tool": "cd", "verdict": "halt", "period": 2}
