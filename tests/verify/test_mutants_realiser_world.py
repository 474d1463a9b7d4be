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


# ------------------------------------------------------------------------------- tool batches

GUARDED = load_policy_text(DEFAULT_TEXT.replace(
    "  same_tool_failure: {threshold: 4, verdict: correct}\n", "  same_tool_failure: {threshold: 4, verdict: allow}\n").replace(
    "  doom_loop: {threshold: 3, verdict: halt, max_period: 5}\n", "  doom_loop: {threshold: 2, verdict: halt, max_period: 3}\n"),
    "default.yaml")


def test_a_batch_with_no_calls_is_ok_and_nothing_else() -> None:
    r = Realiser(DEFAULT)
    assert r.options(Facts(), at(DEFAULT, "run_tools", "ok", {"tools": []})) == [Option({"tools": []})]
    assert r.options(Facts(), at(DEFAULT, "run_tools", "failed", {"tools": []})) == []


def test_a_batch_succeeds_whole_fails_whole_or_fails_one_call_at_a_time() -> None:
    r = Realiser(DEFAULT)
    two = Facts(calls=("a", "b"))
    assert r.options(two, at(DEFAULT, "run_tools", "ok", {"tools": ["a", "b"]})) == [
        Option({"tools": ["a", "b"]}, results=(Result("a", True), Result("b", True)))]
    assert r.options(two, at(DEFAULT, "run_tools", "failed", {"tools": ["a", "b"]})) == [
        Option({"tools": ["a", "b"]}, results=(Result("a", False), Result("b", False))),
        Option({"tools": ["a"]}, results=(Result("a", False), Result("b", True))),
        Option({"tools": ["b"]}, results=(Result("a", True), Result("b", False)))]


def test_each_tool_of_a_batch_may_be_the_one_that_waits_for_approval() -> None:
    r = Realiser(DEFAULT)
    assert r.options(Facts(calls=("a", "b", "a")), at(DEFAULT, "run_tools", "approval_required", {"tool": "a"})) == [
        Option({"tool": "a"}, approval="a"), Option({"tool": "b"}, approval="b")]


def test_a_guardrail_fires_on_each_tool_and_doom_loop_period_a_script_reaches() -> None:
    """Every period from 1 to max_period, when some script makes the loop fire with that period
    first (with threshold 3, a period-2 loop needs a third repeat that no_progress sees first)."""
    r = Realiser(GUARDED)
    doom = r.options(Facts(calls=("a",)), at(GUARDED, "run_tools", "doom_loop", {"tool": "a", "verdict": "halt", "period": 1}))
    assert [(o.attrs, o.guard) for o in doom] == [({"tool": "a", "verdict": "halt", "period": p}, "doom_loop") for p in (1, 2, 3)]
    default = Realiser(DEFAULT).options(Facts(calls=("a",)), at(DEFAULT, "run_tools", "doom_loop", {"tool": "a", "verdict": "halt", "period": 1}))
    assert [o.attrs["period"] for o in default] == [1]
    repeated = r.options(Facts(calls=("a", "b")), at(GUARDED, "run_tools", "repeated_exact_failure", {"tool": "a", "verdict": "halt"}))
    assert [(o.attrs, o.guard) for o in repeated] == [({"tool": t, "verdict": "halt"}, "repeated_exact_failure") for t in ("a", "b")]


def test_a_guardrail_that_only_allows_never_fires() -> None:
    r = Realiser(GUARDED)
    assert r.options(Facts(calls=("a",)), at(GUARDED, "run_tools", "same_tool_failure", {"tool": "a", "verdict": "allow"})) == []


def test_the_last_batch_answers_the_other_calls_with_distinct_successes() -> None:
    """The batch a guardrail fires on answers the watched tool with the script's result and every
    other call with a plain success of its own, so no other tool trips a detector."""
    r = Realiser(DEFAULT)
    script = r.guard_script("repeated_exact_failure", "tool_a", 0, ("other", "tool_a", "more"), ())
    assert script is not None
    inserted, last = script
    assert len(inserted) == 1 and last[1].tool == "tool_a" and not last[1].ok
    assert (last[0], last[2]) == (Result("other", True, "another result 0"), Result("more", True, "another result 2"))
    assert r.guard_script("repeated_exact_failure", "tool_a", 0, ("other",), ()) is None, "the tool is not called"


# ------------------------------------------------------------------------- what a step leaves


def test_a_model_call_or_stub_sets_whether_the_reply_has_text_and_other_steps_keep_it() -> None:
    r = Realiser(DEFAULT)
    opened = at(DEFAULT, "call_model", "opened")
    assert r.after(Facts(text=True), opened, Option({}, text=False)).text is False
    stub = at(DEFAULT, "make_stub", "mid_text", {"chars": 3})
    assert r.after(Facts(text=False), stub, Option({"chars": 3}, text=True)).text is True
    ok = at(DEFAULT, "run_tools", "ok", {"tools": []})
    assert r.after(Facts(text=True), ok, Option({"tools": []})).text is True


def test_only_calls_that_will_run_are_left_for_the_batch() -> None:
    r = Realiser(DEFAULT)
    calls = {"tools": ["a"], "count": 1, "chars": 0}
    runs = at(DEFAULT, "read_stream", "tool_calls", calls)
    dropped = at(DEFAULT, "read_stream", "malformed_args", {"tools": ["a"]})
    assert r.after(Facts(), runs, Option(calls, calls=("a",))).calls == ("a",)
    assert r.after(Facts(), dropped, Option({"tools": ["a"]}, calls=("a",))).calls == ()


ESCALATIONS = """\
  ask:
    kind: call
    on:
      opened: read
      rate_limit: swap
      transient: both
      timeout: squeeze
      context_overflow: plain
      auth: fail
      bad_request: fail
      effort_unsupported: fail
      thinking_signature_invalid: fail
      cancelled: fail
  swap: {kind: escalate, apply: [switch_model], on: {done: fail, failed: fail}}
  both: {kind: escalate, apply: [compact, switch_model], on: {done: fail, failed: fail}}
  squeeze: {kind: escalate, apply: [compact], on: {done: fail, failed: fail}}
  plain: {kind: escalate, apply: [disable_tools], on: {done: fail, failed: fail}}
"""


def test_entering_an_escalation_leaves_what_it_will_report() -> None:
    """Switching to a fallback model that settings do not name fails; a compaction may find
    nothing to compact; an escalation that does neither is done."""
    def entered(p: Policy, event: str) -> str:
        return Realiser(p).after(Facts(escalation="either"), at(p, "ask", event, {}), Option({}, text=False)).escalation

    p = policy(ESCALATIONS, stream(), TOOLS, HALTS)
    assert [entered(p, e) for e in ("rate_limit", "transient", "timeout", "context_overflow", "opened")] == [
        "failed:no fallback_model in settings", "failed:nothing left to compact|no fallback_model in settings",
        "either", "done", "done"]
    named = policy(ESCALATIONS, stream(), TOOLS, HALTS,
                   head="loopspec: 1\ninitial: ask\nsettings: {fallback_model: openai/backup}\n"
                        "backstops:\n  model_calls: {max: 5, exhausted: out}\n  tool_batches: {max: 3, exhausted: out}\n")
    assert [entered(named, e) for e in ("rate_limit", "transient")] == ["done", "either"]


def test_an_event_the_state_does_not_handle_has_no_guard_to_split_on() -> None:
    """The events_handled search steps through events a state has no transition for."""
    p = policy(CALL.replace("      timeout: fail\n", ""), stream(), TOOLS, HALTS)
    r = Realiser(p)
    assert r.atoms("ask", "timeout") == ()
    assert r.options(Facts(), at(p, "ask", "timeout", {"status": 408}))


def test_a_stub_is_possible_with_what_a_guarded_streams_replies_leave() -> None:
    """The stream state's own guards widen the replies a stub may follow: a text guard on 7
    characters makes a 7-character text, and so a 7-character stub, possible."""
    stub_guard = "      mid_text:\n        - when: {attr: chars, eq: 7}\n          to: halt_stalled\n"
    text_guard = "      text:\n        - when: {attr: chars, eq: 7}\n          to: halt_completed\n"
    p = load_policy_text(DEFAULT_TEXT.replace("      mid_text:\n", stub_guard, 1).replace("      text:\n", text_guard, 1), "d.yaml")
    assert Realiser(p).possible(at(p, "make_stub", "mid_text", {"chars": 7}))


def test_a_halt_message_that_reads_the_events_message_is_empty_only_when_the_error_says_nothing() -> None:
    """Every recorded call error says something, so '{message}' never renders empty after one."""
    p = policy(CALL, stream(), TOOLS, HALTS)
    r = Realiser(p, halts={"fail": "{message}"})
    assert walk(p, r, [("rate_limit", {})])[1] is False


def test_an_escalation_that_can_fail_two_ways_offers_both_reasons() -> None:
    r = Realiser(DEFAULT)
    step = at(DEFAULT, "compact_context", "failed", {"message": "x"})
    assert r.options(Facts(escalation="failed:nothing left to compact|no fallback_model in settings"), step) == [
        Option({"message": "nothing left to compact"}), Option({"message": "no fallback_model in settings"})]
