"""The :class:`Realiser` as the checker's world model (loopspec/verify/realiser.py), pinned
against the survivors of its mutation run: what entering a halt records about its message, that
the recordings of a step depend on what the run left behind (and are not mixed up between two
runs that left different things), and which steps some run could make happen at all."""

from __future__ import annotations

from typing import Any

from loopspec import load_policy_text
from loopspec.language.alphabet import Event
from loopspec.language.model import Policy, Step
from loopspec.verify.event_options import Facts, Option, Result
from loopspec.verify.realiser import Realiser

from _paths import DEFAULT_POLICY
from test_check import CALL, HALTS, TOOLS, policy, stream

DEFAULT_TEXT = DEFAULT_POLICY.read_text()


def at(p: Policy, state: str, event: str, attrs: dict[str, Any] | None = None) -> Step:
    """The step ``event`` takes from ``state`` (with the initial counters)."""
    cfg = p.initial_config()
    return p.step(type(cfg)(state, cfg.counters, cfg.flags), Event(event, attrs or {}))


def edited(old: str, new: str) -> Policy:
    assert DEFAULT_TEXT.count(old) == 1, old
    return load_policy_text(DEFAULT_TEXT.replace(old, new), "default.yaml")


# ---------------------------------------------------------------------------- the halt's message

LENGTH = {"has_tool_calls": False, "dropped_tools": [], "thinking_only": False, "chars": 0}


def walk(p: Policy, r: Realiser, events: list[tuple[str, dict[str, Any]]]) -> Any:
    world, cfg = r.start(), p.initial_config()
    for name, attrs in events:
        step = p.step(cfg, Event(name, attrs))
        world = r.advance(world, step)
        assert world is not None, name
        cfg = step.after
    return world


def test_entering_a_halt_records_whether_some_recording_leaves_its_message_empty() -> None:
    """A cut-off reply may hold no text (all reasoning, or nothing), so '{response}' can render
    empty; a text reply always holds some."""
    p = policy(CALL, stream(length="done"), TOOLS, HALTS)
    r = Realiser(p, halts={"done": "{response}"})
    assert walk(p, r, [("opened", {})])[1] is False, "not a halt"
    assert walk(p, r, [("opened", {}), ("length", LENGTH)])[1] is True
    assert walk(p, r, [("opened", {}), ("text", {"finish_reason": "stop", "chars": 5})])[1] is False


def test_a_halt_after_a_tool_batch_renders_the_reply_the_run_left() -> None:
    """From a tool batch the message's '{response}' is the reply before it: the natural tool-call
    reply has no text, so the message can be empty."""
    p = policy(CALL, stream(), TOOLS.replace("      ok: ask\n", "      ok: done\n"), HALTS)
    r = Realiser(p, halts={"done": "{response}"})
    calls = {"tools": ["tool_a"], "count": 1, "chars": 0}
    assert walk(p, r, [("opened", {}), ("tool_calls", calls), ("ok", {"tools": ["tool_a"]})])[1] is True


def test_a_halt_whose_message_reads_no_attribute_of_the_step_is_never_empty() -> None:
    p = policy(CALL, stream(length="out"), TOOLS, HALTS)
    r = Realiser(p, halts={"out": "stopped"})
    assert walk(p, r, [("opened", {}), ("length", LENGTH)])[1] is False


# ---------------------------------------------------------- recordings depend on what came before

DEFAULT = load_policy_text(DEFAULT_TEXT, "default.yaml")


def test_a_tool_batchs_recordings_are_those_of_the_calls_the_reply_made() -> None:
    r = Realiser(DEFAULT)
    a = r.options(Facts(calls=("tool_a",)), at(DEFAULT, "run_tools", "ok", {"tools": ["tool_a"]}))
    b = r.options(Facts(calls=("search",)), at(DEFAULT, "run_tools", "ok", {"tools": ["search"]}))
    assert a == [Option({"tools": ["tool_a"]}, results=(Result("tool_a", True),))]
    assert b == [Option({"tools": ["search"]}, results=(Result("search", True),))]


def test_an_escalations_recordings_are_those_its_entry_left() -> None:
    r = Realiser(DEFAULT)
    step = at(DEFAULT, "compact_context", "failed", {"message": "x"})
    assert r.options(Facts(escalation="either"), step) == [Option({"message": "nothing left to compact"})]
    assert r.options(Facts(escalation="failed:no fallback_model in settings"), step) == [
        Option({"message": "no fallback_model in settings"})]
    assert r.options(Facts(escalation="done"), step) == []


def test_a_stubs_recording_is_the_stub_the_stalled_reply_left() -> None:
    r = Realiser(DEFAULT)
    step = at(DEFAULT, "make_stub", "mid_text", {"chars": 3})
    three = Facts(stub=("mid_text", (("chars", 3),), True))
    none = Facts(stub=("mid_text", (("chars", 0),), False))
    assert r.options(three, step) == [Option({"chars": 3}, text=True)]
    assert r.options(none, step) == [Option({"chars": 0}, text=False)]
    assert r.options(Facts(stub=("mid_tool_call", (("chars", 0), ("cut_tools", ())), False)), step) == []


def test_a_continuation_is_always_possible_and_records_nothing() -> None:
    r = Realiser(DEFAULT)
    assert r.options(Facts(), at(DEFAULT, "continue_generic", "done")) == [Option({})]


def test_a_call_error_guarded_on_its_message_is_realised_through_the_step() -> None:
    """The recordings pass the check that both transports agree on the guard (``alt``)."""
    p = edited("      rate_limit:\n", "      rate_limit:\n        - when: {attr: message, contains: quota}\n          to: halt_quota\n")
    r = Realiser(p)
    quota = r.options(Facts(), at(p, "call_model", "rate_limit", {"message": "quota"}))
    assert quota and all("quota" in str(o.attrs["message"]) for o in quota)


def test_a_guard_one_transport_always_satisfies_is_realised_only_where_both_agree() -> None:
    """In process the message is the error body (it always says "type"); over HTTP it is litellm's
    words (they always say "OpenAIException"). Neither word can be absent on both transports, so
    the guard's false side has no recording; its true side has those that say the word itself."""
    for word in ("OpenAIException", "type"):
        p = edited("      rate_limit:\n", f"      rate_limit:\n        - when: {{attr: message, contains: {word}}}\n          to: halt_quota\n")
        r = Realiser(p)
        assert r.options(Facts(), at(p, "call_model", "rate_limit", {"message": ""})) == [], word
        said = r.options(Facts(), at(p, "call_model", "rate_limit", {"message": word}))
        assert said and all(f"({word})" in o.interaction.body["error"]["message"] for o in said), word


# ------------------------------------------------------------------------ what some run can do


def test_a_tool_batch_that_fails_or_waits_is_possible() -> None:
    r = Realiser(DEFAULT)
    assert r.possible(at(DEFAULT, "run_tools", "failed", {"tools": ["tool_a"]}))
    assert r.possible(at(DEFAULT, "run_tools", "approval_required", {"tool": "tool_a"}))


def test_an_escalation_fails_for_each_reason_its_entry_can_leave() -> None:
    guard = "      failed:\n        - when: {{attr: message, contains: {}}}\n          to: halt_context_exceeded\n        - call_model\n"
    for word, message in (("compact", "nothing left to compact"), ("fallback", "no fallback_model in settings")):
        p = edited("      done: call_model\n      failed: halt_context_exceeded\n", "      done: call_model\n" + guard.format(word))
        assert Realiser(p).possible(at(p, "compact_context", "failed", {"message": message})), word


def test_a_stub_is_possible_with_what_a_stalled_or_whole_reply_leaves() -> None:
    """A stub's attributes come from the reply before it: the natural stalled text (19 characters),
    a whole text (5), a stalled tool call (cut 'tool_a') or a whole one (nothing cut)."""
    cases = [("mid_text", "{attr: chars, eq: 19}", {"chars": 19}), ("mid_text", "{attr: chars, eq: 5}", {"chars": 5}),
             ("mid_tool_call", "{attr: cut_tools, contains: tool_a}", {"chars": 0, "cut_tools": ["tool_a"]}),
             ("mid_tool_call", "{attr: cut_tools, eq: []}", {"chars": 0, "cut_tools": []})]
    for event, guard, attrs in cases:
        p = edited(f"      {event}:\n", f"      {event}:\n        - when: {guard}\n          to: halt_stalled\n")
        r = Realiser(p)
        assert r.possible(at(p, "make_stub", event, attrs)), (event, guard)
    p = edited("      mid_text:\n", "      mid_text:\n        - when: {attr: chars, eq: 7}\n          to: halt_stalled\n")
    assert not Realiser(p).possible(at(p, "make_stub", "mid_text", {"chars": 7})), "no natural reply leaves 7"
