"""Tests against the mutants of ``engine/tool_batch.py`` that the suite let live (a mutation analysis
by hand: each bug planted in the batch runner, seen to survive the engine tests, and killed by a test
here). All run whole turns through the public API, in virtual time (a tool that never returns is
bounded by a real fraction of a second); each names the plant it kills in its docstring."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy, load_policy_text
from loopspec.engine.clock import StallTimeout
from loopspec.engine.history import history_problems
from loopspec.journal import SqliteJournal
from loopspec.replay.synth import reply

from _doubles import Stop, answered_before_resume
from _paths import DEFAULT_POLICY

DEFAULT_TEXT = DEFAULT_POLICY.read_text()
POLICY = load_policy(str(DEFAULT_POLICY))
USER = [{"role": "user", "content": "What are the capitals of the UK and France?"}]
SHORT = 0.05
"""Real seconds: the timeout of a tool that never returns (it always runs out)."""
TWO_CALLS = reply("Looking both up.", tool_calls=[("get_capital", {"country": "UK"}), ("get_capital", {"country": "FR"})])
ANSWER = reply("London and Paris.")


def variant(old: str, new: str) -> Any:
    """default.yaml with one passage changed (the change must apply)."""
    assert DEFAULT_TEXT.count(old) == 1, old
    return load_policy_text(DEFAULT_TEXT.replace(old, new), "default.yaml")


def with_settings(**settings: Any) -> Any:
    text = DEFAULT_TEXT
    for key, value in settings.items():
        line = f"  {key}: {value}\n"
        if f"\n  {key}:" in text:
            start = text.index(f"\n  {key}:") + 1
            text = text[:start] + line + text[text.index("\n", start) + 1:]
        else:
            text = text.replace("settings:\n", "settings:\n" + line, 1)
    return load_policy_text(text, "default.yaml")


def capitals(ran: list[str], *, needs_approval: bool = False, fail: str = "", hang: str = "") -> ToolRegistry:
    """get_capital, and a second tool get_flag; ``fail``/``hang`` name a country whose call raises /
    never returns."""
    reg = ToolRegistry()

    async def get_capital(country: str) -> str:
        ran.append(country)
        if country == fail:
            raise LookupError(f"no capital for {country}")
        if country == hang:
            await asyncio.Event().wait()
        return {"UK": "London", "FR": "Paris"}.get(country, "?")

    def get_flag(country: str) -> str:
        ran.append(f"flag:{country}")
        return "a flag"

    schema = {"type": "object", "properties": {"country": {"type": "string"}}}
    reg.register(get_capital, parameters=schema, needs_approval=needs_approval)
    reg.register(get_flag, parameters=schema, needs_approval=needs_approval)
    return reg


def play(interactions: list[Any], policy: Any = POLICY, **kw: Any) -> Any:
    kw.setdefault("tools", capitals([]))
    kw.setdefault("clock", VirtualClock())
    turn = Turn(policy, InProcessProvider(interactions), model="replay", **kw)

    async def main() -> Any:
        return await asyncio.wait_for(turn.run(USER), 10)  # a safety net, not an assertion

    return asyncio.run(main())


def steps(result: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(s.event, s.attrs) for s in result.trace]


class Recorder:
    """A turn observer that writes down the tool hooks it hears, in order."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, str]] = []

    def tool_started(self, call: Any) -> None:
        self.heard.append(("started", call.id))

    def tool_finished(self, call: Any, result: Any) -> None:
        self.heard.append(("finished", call.id))

    def __getattr__(self, name: str) -> Any:
        return lambda *a: None


class CutAtAnswer:
    """A turn observer that ends the turn, as a crash would, when it hears the n-th answer of the
    turn (the journal, which hears first, has written that answer and none after it)."""

    def __init__(self, n: int = 1) -> None:
        self.n = n

    def tool_finished(self, call: Any, result: Any) -> None:
        self.n -= 1
        if self.n == 0:
            raise Stop

    def __getattr__(self, name: str) -> Any:
        return lambda *a: None


def test_a_batch_with_nothing_complete_to_run_is_ok_and_runs_nothing() -> None:
    """Plant B01: the empty batch (a policy that drops the calls and still enters its tool_exec
    state) reported ``failed`` instead of ``ok`` with no tools."""
    policy = variant("        - do: [{reset: empty_streak}, {reset: bad_call_streak}, reset_tool_choice]\n",
                     "        - do: [{reset: empty_streak}, {reset: bad_call_streak}, reset_tool_choice, drop_tool_calls]\n")
    ran: list[str] = []
    result = play([TWO_CALLS, ANSWER], policy, tools=capitals(ran))
    assert ran == [] and result.outcome == "completed"
    assert steps(result)[2] == ("ok", {"tools": []})


def cut_in_batch_and_resume(tmp_path: Path, approve: Any) -> tuple[Any, list[str], SqliteJournal, Recorder]:
    """A two-call batch cut once its first answer is journaled, resumed by a new Turn."""
    ran: list[str] = []
    journal = SqliteJournal(tmp_path / "j.db")
    cut = Turn(POLICY, InProcessProvider([TWO_CALLS, ANSWER]), model="replay", tools=capitals(ran, needs_approval=True),
               clock=VirtualClock(), journal=journal, turn_id="t", approve=approve)
    cut.observers.observers.append(CutAtAnswer())
    try:
        asyncio.run(cut.run(USER))
    except Stop:
        pass
    else:
        raise AssertionError("the turn was not cut")
    assert ran == ["UK", "FR"]
    heard = Recorder()
    again = Turn(POLICY, InProcessProvider([TWO_CALLS, ANSWER][answered_before_resume(journal, "t"):]), model="replay",
                 tools=capitals(ran, needs_approval=True), clock=VirtualClock(), journal=journal, turn_id="t",
                 approve=approve, observers=[heard])
    return asyncio.run(again.resume("t")), ran, journal, heard


def test_a_resumed_batch_neither_runs_nor_asks_approval_for_calls_already_answered(tmp_path: Path) -> None:
    """Plant B02: the resumed batch handed every call, answered ones included, to the approval step,
    so a person (or the auto-approval cap) was asked again about calls that had already run."""
    asked: list[str] = []
    result, ran, _, _ = cut_in_batch_and_resume(tmp_path, lambda call: asked.append(call.id) or True)
    assert asked == ["call_0_get_capital", "call_1_get_capital"], "asked once, before the cut"
    assert ran == ["UK", "FR"], "nothing ran again"
    assert result.outcome == "completed" and history_problems(result.messages) == []


def test_a_resumed_batch_tells_the_journal_and_the_observers_only_of_new_answers(tmp_path: Path) -> None:
    """Plant B03: the observers heard again of the answers already journaled (``announced``), so
    the journal held two answers for one call and a caller's observer counted a call twice."""
    result, _, journal, heard = cut_in_batch_and_resume(tmp_path, lambda call: True)
    finishes = [e.body["id"] for e in journal.entries("t") if e.kind == "tool_finish"]
    assert finishes == ["call_0_get_capital", "call_1_get_capital"]
    assert heard.heard == [("finished", "call_1_get_capital")], "only the interrupted call's answer is new"
    assert [s.event for s in result.trace][2] == "interrupted_tool"


def test_a_batch_that_waits_for_approval_answers_every_call_to_the_observers() -> None:
    """Plant B06: the placeholder answers of a batch that waits for a person went into the history
    but not to the observers (the journal, a caller's), so they heard of calls that never finished."""
    heard = Recorder()
    ran: list[str] = []
    result = play([TWO_CALLS, ANSWER], tools=capitals(ran, needs_approval=True), observers=[heard])
    assert result.outcome == "approval_required" and ran == []
    assert heard.heard == [("finished", "call_0_get_capital"), ("finished", "call_1_get_capital")]


def test_the_approval_halt_names_the_first_call_that_waits() -> None:
    """Plant B08: ``blocked[-1]``: the halt message named the last waiting call's tool, not the
    first (the one the model asked for first)."""
    mixed = reply(tool_calls=[("get_capital", {"country": "UK"}), ("get_flag", {"country": "UK"})])
    result = play([mixed, ANSWER], tools=capitals([], needs_approval=True))
    assert result.outcome == "approval_required"
    assert steps(result)[-1] == ("approval_required", {"tool": "get_capital"})
    assert "'get_capital'" in result.message and "get_flag" not in result.message


class LeavingClock(VirtualClock):
    """A clock whose ``within`` stops waiting at the timeout and leaves what it waited for running
    (``asyncio.wait``'s way): the Clock protocol allows it, so the batch must stop its own calls."""

    async def within(self, awaitable: Any, timeout: float) -> Any:
        task = asyncio.ensure_future(awaitable)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # what it left is not an error to log
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            raise StallTimeout()
        return task.result()


def test_the_calls_a_deadline_stops_stop_running() -> None:
    """Plant B16: the batch's tasks were left running when the deadline (or a cancel) ended it: on a
    clock that does not cancel what it stops waiting for, the calls answered "not run" went on, after
    the turn had ended, to do what they were asked."""
    stopped: list[str] = []
    reg = ToolRegistry()

    async def slow_write(path: str) -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.append(path)
            raise
        return "written"

    reg.register(slow_write, parameters={"type": "object", "properties": {"path": {"type": "string"}}})
    two = reply(tool_calls=[("slow_write", {"path": "a"}), ("slow_write", {"path": "b"})])
    policy = variant("  tool_timeout: 600 ", "  turn_deadline: 0.05\n  # was: ")  # no per-call timeout: the batch owns its calls
    assert policy.settings.tool_timeout is None
    turn = Turn(policy, InProcessProvider([two, ANSWER]), model="replay", tools=reg, clock=LeavingClock())

    async def main() -> tuple[Any, list[str]]:
        result = await asyncio.wait_for(turn.run(USER), 10)
        await asyncio.sleep(0)  # one turn of the loop for a cancelled call to see its cancellation
        return result, list(stopped)  # before asyncio.run cancels whatever is left

    result, when_returned = asyncio.run(main())
    assert result.outcome == "cancelled"
    assert sorted(when_returned) == ["a", "b"]
    assert {m["content"] for m in result.messages if m["role"] == "tool"} == {"Not run: the turn's deadline passed before this call finished."}


def test_the_observers_hear_the_answers_of_a_batch_the_deadline_stopped() -> None:
    """Plant B20: the "not run" answers of a stopped batch went into the history but not to the
    observers, so a journal resumed from there would look for answers it never got."""
    heard = Recorder()
    result = play([TWO_CALLS, ANSWER], with_settings(turn_deadline=SHORT), tools=capitals([], hang="FR"), observers=[heard])
    assert result.outcome == "cancelled"
    assert heard.heard == [("started", "call_0_get_capital"), ("started", "call_1_get_capital"),
                           ("finished", "call_0_get_capital"), ("finished", "call_1_get_capital")]
    answers = [m["content"] for m in result.messages if m["role"] == "tool"]
    assert answers == ["London", "Not run: the turn's deadline passed before this call finished."]


def test_the_observers_hear_a_batchs_answers_in_call_order() -> None:
    """Plant B27: the answers were told in reverse, so a journal (and a caller) saw them out of the
    order the history holds them in."""
    heard = Recorder()
    result = play([TWO_CALLS, ANSWER], observers=[heard])
    assert result.outcome == "completed"
    assert [h for h in heard.heard if h[0] == "finished"] == [("finished", "call_0_get_capital"), ("finished", "call_1_get_capital")]


def test_the_guardrails_read_a_resumed_batch_whose_other_call_was_interrupted(tmp_path: Path) -> None:
    """Plant B32: the detectors were skipped for a batch holding a call that did not run (here the
    call a crash interrupted), so the failure it repeated exactly went unnoticed on resume and the
    turn went on where the uninterrupted one halted."""
    bad = reply(tool_calls=[("get_capital", {"country": "XX"})])
    again = reply(tool_calls=[("get_capital", {"country": "XX"}), ("get_capital", {"country": "FR"})])
    recording = [bad, again, ANSWER]
    whole = play(recording, tools=capitals([], fail="XX"))
    assert whole.outcome == "guardrail" and whole.trace[-1].event == "repeated_exact_failure"
    journal = SqliteJournal(tmp_path / "j.db")
    cut = Turn(POLICY, InProcessProvider(recording), model="replay", tools=capitals([], fail="XX"), clock=VirtualClock(),
               journal=journal, turn_id="t")
    cut.observers.observers.append(CutAtAnswer(2))  # the first answer of the second batch
    try:
        asyncio.run(cut.run(USER))
    except Stop:
        pass
    resumed = Turn(POLICY, InProcessProvider(recording[answered_before_resume(journal, "t"):]), model="replay",
                   tools=capitals([], fail="XX"), clock=VirtualClock(), journal=journal, turn_id="t")
    result = asyncio.run(resumed.resume("t"))
    assert result.outcome == "guardrail" and result.trace[-1].event == "repeated_exact_failure"


# --- plants of the 2026-12-02 analysis (tools/plant_mutants.py, mutmut's numbering) --------------


class Flags:
    """A turn observer that writes down each answer's ``ok`` and ``ran`` as given (the journal
    writes them as JSON: ``false``, never ``null``)."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, Any, Any]] = []

    def tool_finished(self, call: Any, result: Any) -> None:
        self.heard.append((call.id, result.ok, result.ran))

    def __getattr__(self, name: str) -> Any:
        return lambda *a: None


def test_a_call_that_waits_for_a_person_is_answered_not_ok_and_not_run() -> None:
    """Plants run_batch 66, 67, 72: the placeholder answer of a call awaiting approval said ``ok``
    (or neither), so a journal held ``ok: true`` or ``null`` for a call that never ran."""
    flags = Flags()
    result = play([TWO_CALLS, ANSWER], tools=capitals([], needs_approval=True), observers=[flags])
    assert result.outcome == "approval_required"
    assert [(ok is False, ran is False) for _id, ok, ran in flags.heard] == [(True, True), (True, True)]


def test_a_denied_call_is_answered_not_ok_and_not_run(tmp_path: Path) -> None:
    """Plants run_batch 98, 99, 103, 106: a call a person refused was answered ``ran`` (or with
    neither flag), so the journal said a refused call had run."""
    flags = Flags()
    with SqliteJournal(tmp_path / "j.db") as journal:
        first = asyncio.run(Turn(POLICY, InProcessProvider([TWO_CALLS]), model="replay", tools=capitals([], needs_approval=True),
                                 clock=VirtualClock(), journal=journal, turn_id="t").run(USER))
        assert first.pause is not None
        ids = [c["id"] for c in first.pause.calls]
        again = Turn(POLICY, InProcessProvider([ANSWER]), model="replay", tools=capitals([], needs_approval=True),
                     clock=VirtualClock(), journal=journal, turn_id="t", observers=[flags])
        result = asyncio.run(again.resume("t", deny=ids))
        finishes = [e.body for e in journal.entries("t") if e.kind == "tool_finish"][-2:]
    assert result.outcome == "completed"
    assert [(ok, ran) for _id, ok, ran in flags.heard] == [(False, False), (False, False)]
    assert [(b["ok"], b["ran"]) for b in finishes] == [(False, False), (False, False)]


def test_calls_a_deadline_stopped_are_answered_not_ok_and_not_run() -> None:
    """Plants run_batch 201-208 (a batch of two, its calls as tasks) and 215-222 (a batch of one,
    run in the turn's task): a call the deadline stopped was answered ``ok`` or ``ran``."""
    two, one = Flags(), Flags()
    play([TWO_CALLS, ANSWER], with_settings(turn_deadline=SHORT), tools=capitals([], hang="FR"), observers=[two])
    single = reply(tool_calls=[("get_capital", {"country": "FR"})])
    play([single, ANSWER], with_settings(turn_deadline=SHORT), tools=capitals([], hang="FR"), observers=[one])
    assert [(ok, ran) for _id, ok, ran in two.heard] == [(True, True), (False, False)]
    assert [(ok, ran) for _id, ok, ran in one.heard] == [(False, False)]


def test_the_text_the_model_wrote_with_its_calls_stays_in_the_history() -> None:
    """Plants run_batch 232 (a batch that ran), 74 (one that waits for a person) and 223 (one the
    deadline stopped): the assistant message lost the reply's text."""
    ran_all = play([TWO_CALLS, ANSWER])
    waiting = play([TWO_CALLS, ANSWER], tools=capitals([], needs_approval=True))
    stopped = play([TWO_CALLS, ANSWER], with_settings(turn_deadline=SHORT), tools=capitals([], hang="FR"))
    for result in (ran_all, waiting, stopped):
        asked = next(m for m in result.messages if m.get("tool_calls"))
        assert asked["content"] == "Looking both up.", result.outcome


def test_the_batch_events_name_the_tools() -> None:
    """Plants run_batch 11, 265, 268, 269: the ``ok`` event lost its ``tools`` attribute (what a
    guard or a template may read)."""
    result = play([TWO_CALLS, ANSWER])
    assert steps(result)[2] == ("ok", {"tools": ["get_capital", "get_capital"]})


def test_an_interrupted_batch_names_the_calls_the_crash_cut(tmp_path: Path) -> None:
    """Plants run_batch 247, 250, 251: ``interrupted_tool`` lost its ``tools`` attribute."""
    result, _, _, _ = cut_in_batch_and_resume(tmp_path, lambda call: True)
    assert steps(result)[2] == ("interrupted_tool", {"tools": ["get_capital"]})


def test_a_policy_without_a_batch_timeout_runs_batches_of_one_and_of_two() -> None:
    """Plants run_batch 140, 166, 167: with no ``tool_batch_timeout`` (and no deadline) a batch's
    results were lost, on the one-call path and on the many-call path alike."""
    policy = variant("  tool_batch_timeout: 900 ", "  # tool_batch_timeout: 900 ")
    assert policy.settings.tool_batch_timeout is None
    one = play([reply(tool_calls=[("get_capital", {"country": "UK"})]), ANSWER], policy)
    two = play([TWO_CALLS, ANSWER], policy)
    assert [m["content"] for m in one.messages if m["role"] == "tool"] == ["London"]
    assert [m["content"] for m in two.messages if m["role"] == "tool"] == ["London", "Paris"]
    assert one.outcome == two.outcome == "completed"


def test_each_call_of_a_batch_of_two_keeps_its_own_timeout() -> None:
    """Plant run_batch 158: the calls of a many-call batch ran without ``tool_timeout``, so a hung
    call held the batch until the batch timeout instead of being answered "timed out" on its own."""
    result = play([TWO_CALLS, ANSWER], with_settings(tool_timeout=SHORT), tools=capitals([], hang="FR"))
    answers = [m["content"] for m in result.messages if m["role"] == "tool"]
    assert answers[0] == "London"
    assert answers[1].startswith(f"Timed out: 'get_capital' did not finish within {SHORT:g} s")
    assert steps(result)[2] == ("timeout", {"tools": ["get_capital"]})
