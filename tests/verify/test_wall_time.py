"""`check` bounds a turn's wall-clock time from the policy alone: the engine's own waits (request
opens, stall detection, backoffs with Retry-After capped by max_wait) and, when the policy sets
one, the turn deadline that bounds what nothing else does (streaming content, tool runs)."""

from __future__ import annotations

import json

import pytest

from loopspec.language import load_policy_text
from loopspec.verify import check_policy
from loopspec.verify.wall_time import APPROVAL, STREAMING, TOOLS

from _paths import DEFAULT_POLICY
from _policy_text import handles, tool_loop
from _soundness import compare, explore

DEFAULT_TEXT = DEFAULT_POLICY.read_text()


def retry_policy(*, schedule: str, retries: int, max_wait: int | None = None, event: str = "rate_limit", deadline: str = "") -> str:
    """A call that retries `event` with a backoff at most `retries` times, then halts."""
    wait = f"\n  max_wait: {max_wait}" if max_wait is not None else ""
    return f"""
loopspec: 1
name: retries
initial: ask
settings: {{request_timeout: 10, stall_timeout: 4{deadline}}}
backoff:
  again: {schedule}{wait}
backstops:
  model_calls: {{max: 20, exhausted: failed}}
  tool_batches: {{max: 5, exhausted: failed}}
counters:
  tries: {{max: {retries}}}
states:
  ask:
    kind: call
    on:
      {event}:
        - do: [{{backoff: again, attempt: tries}}, {{increment: tries}}]
          to: ask
        - to: failed
      opened: read
  read:
    kind: stream
    on: {handles("stream", "done")}
  done: {{kind: halt, outcome: completed, message: "{{response}}"}}
  failed: {{kind: halt, outcome: provider_error, message: "failed: {{reason}}"}}
"""


def fill_call_events(text: str) -> str:
    """Route every call event the text does not name to `failed`."""
    from loopspec.language.alphabet import KINDS

    named = {line.strip().split(":")[0] for line in text.split("  ask:")[1].split("  read:")[0].splitlines()}
    extra = "".join(f"      {e}: failed\n" for e in KINDS["call"].event_names if e not in named)
    return text.replace("      opened: read\n", "      opened: read\n" + extra)


def check_text(text: str):
    return check_policy(load_policy_text(fill_call_events(text), "retries.yaml"))


def test_a_retry_after_lengthens_each_backoff_up_to_max_wait_and_the_counter_bounds_how_many() -> None:
    result = check_text(retry_policy(schedule="[1, 7]", retries=3, max_wait=45))
    wall = result.wall_time
    assert wall is not None
    calls = result.worst_case["model_calls"].value
    assert calls == 4  # the first call and three retries
    # rate_limit carries retry_after: each of the 3 retries may wait max(7, 45) s
    assert wall.parts == {"request_open": 4 * 10.0, "stall_detection": 4 * 4.0, "backoff": 3 * 45.0}
    assert wall.waits == 40 + 16 + 135


def test_a_schedule_longer_than_max_wait_is_its_own_bound() -> None:
    wall = check_text(retry_policy(schedule="[1, 300]", retries=2, max_wait=45)).wall_time
    assert wall is not None and wall.parts["backoff"] == 2 * 300.0


def test_an_event_without_retry_after_waits_only_its_schedule() -> None:
    # `broken` (a stream cut mid-way) carries no Retry-After: max_wait does not apply to it
    text = retry_policy(schedule="[2, 5]", retries=2, max_wait=600, event="transient")
    text = text.replace("    on: " + handles("stream", "done"), "    on: " + handles("stream", "done", broken="again_state"))
    text = text.replace("  done: {", "  again_state:\n    kind: call\n    on: " + handles("call", "failed", opened="read") + "\n  done: {")
    wall = check_text(text).wall_time
    assert wall is not None
    # transient does carry retry_after, so its two retries may wait max_wait each
    assert wall.parts["backoff"] == 2 * 600.0


def test_without_a_deadline_the_turn_is_unbounded_and_the_report_says_why() -> None:
    result = check_policy(load_policy_text(DEFAULT_TEXT, "default.yaml"))
    wall = result.wall_time
    assert wall is not None and wall.seconds is None
    assert wall.unbounded == (STREAMING, APPROVAL)
    calls = result.worst_case["model_calls"].value
    batches = result.worst_case["tool_batches"].value
    assert wall.parts["request_open"] == calls * 120 and wall.parts["stall_detection"] == calls * 60
    # calls of a batch run side by side: a batch lasts at most min(tool_timeout 600, tool_batch_timeout 900)
    assert wall.parts["tool_runs"] == batches * 600
    # rate_limit_retries 2 x max_wait 60, transient_retries 3 x 60, stream_retries 2 x 5
    assert wall.parts["backoff"] == 2 * 60 + 3 * 60 + 2 * 5
    text = result.format_text()
    assert "worst-case wall time per turn: unbounded (set settings.turn_deadline)" in text
    assert f"only turn_deadline bounds {STREAMING}" in text
    data = result.to_json()["worst_case"]["wall_time"]
    assert data["seconds"] is None and data["bounded"] is False and data["waits"] == wall.waits


def test_a_turn_deadline_bounds_the_whole_turn() -> None:
    text = DEFAULT_TEXT.replace("  # turn_deadline: 900", "  turn_deadline: 900")
    assert text != DEFAULT_TEXT
    result = check_policy(load_policy_text(text, "default.yaml"))
    assert result.wall_time is not None and result.wall_time.seconds == 900
    assert "worst-case wall time per turn: <= 900 s (settings.turn_deadline)" in result.format_text()
    assert json.loads(json.dumps(result.to_json()))["worst_case"]["wall_time"]["seconds"] == 900


def test_a_policy_that_may_not_halt_has_no_wall_time() -> None:
    # an escalation that waits and escalates again, with no counter: no backstop is spent either
    text = retry_policy(schedule="[1]", retries=3).replace(
        "        - do: [{backoff: again, attempt: tries}, {increment: tries}]\n          to: ask",
        "        - to: pause",
    ).replace(
        "  done: {", "  pause:\n    kind: escalate\n    apply: [compact]\n    on: {done: {do: [{backoff: again}], to: pause}, failed: failed}\n  done: {"
    )
    result = check_text(text)
    assert not result.halts and result.wall_time is None
    assert "wall time" not in result.format_text()


@pytest.mark.parametrize("retries,schedule,max_wait", [(1, "[0]", 1), (3, "[2, 9]", 30), (4, "[120]", 60)])
def test_the_backoff_bound_is_never_below_the_reference_explorers_longest_run(retries: int, schedule: str, max_wait: int) -> None:
    """Soundness against the independent explorer, with Retry-After values beyond max_wait."""
    policy = load_policy_text(fill_call_events(retry_policy(schedule=schedule, retries=retries, max_wait=max_wait)), "r.yaml")
    ref = explore(policy)
    assert ref.halts and ref.worst_backoff > 0
    wall = check_policy(policy).wall_time
    assert wall is not None and wall.parts["backoff"] >= ref.worst_backoff
    assert not [f for f in compare(policy).findings if "backoff" in f.detail]


def test_edges_that_share_a_counter_are_charged_at_the_longest_wait_among_them() -> None:
    """rate_limit waits up to 100 s and transient up to max_wait 45 s; both spend `tries` (max 2),
    so the worst run is two rate limits: 200 s, which the explorer finds too."""
    text = retry_policy(schedule="[100]", retries=2, max_wait=45).replace(
        "        - to: failed\n      opened: read\n",
        "        - to: failed\n      transient:\n        - do: [{backoff: short, attempt: tries}, {increment: tries}]\n"
        "          to: ask\n        - to: failed\n      opened: read\n",
    ).replace("  again: [100]", "  again: [100]\n  short: [1]")
    policy = load_policy_text(fill_call_events(text), "r.yaml")
    wall = check_policy(policy).wall_time
    assert wall is not None and wall.parts["backoff"] == 2 * 100.0
    assert explore(policy).worst_backoff == 2 * 100.0


def test_without_tool_timeouts_tool_runs_are_unbounded_and_named() -> None:
    text = DEFAULT_TEXT
    for key in ("tool_timeout", "tool_batch_timeout"):
        line = next(x for x in text.splitlines() if x.strip().startswith(key + ":"))
        text = text.replace(line + "\n", "")
    wall = check_policy(load_policy_text(text, "default.yaml")).wall_time
    assert wall is not None and wall.unbounded == (STREAMING, TOOLS, APPROVAL)
    assert "tool_runs" not in wall.parts
    only_batch = DEFAULT_TEXT.replace(next(x for x in DEFAULT_TEXT.splitlines() if x.strip().startswith("tool_timeout:")) + "\n", "")
    wall = check_policy(load_policy_text(only_batch, "default.yaml")).wall_time
    assert wall is not None and TOOLS not in wall.unbounded
    assert wall.parts["tool_runs"] == check_policy(load_policy_text(only_batch, "d.yaml")).worst_case["tool_batches"].value * 900


def reset_policy(*, squeeze: bool) -> str:
    """``tries`` (3) bounds the rate-limit retries of one round and the tool loop's 'ok' resets it,
    so three rounds may each retry three times; with ``squeeze`` a transient error compacts and
    waits 50 s before asking again, an edge of no counter that the model-call backstop bounds."""
    call = {"rate_limit": "[{do: [{backoff: again, attempt: tries}, {increment: tries}], to: ask}, failed]", "opened": "read"}
    extra = ""
    if squeeze:
        call["transient"] = "squeeze"
        extra = "  squeeze:\n    kind: escalate\n    apply: [compact]\n    on: {done: {do: [{backoff: slow}], to: ask}, failed: failed}\n"
    body = tool_loop("failed", call, {"text": "done", "tool_calls": "{to: tools, bounded_by: tool_batches}"},
                     {"ok": "{do: [{reset: tries}], to: ask}"})
    return f"""
loopspec: 1
name: resets
initial: ask
settings: {{request_timeout: 10, stall_timeout: 4}}
backoff:
  again: [7]
  slow: [50]
backstops:
  model_calls: {{max: 20, exhausted: failed}}
  tool_batches: {{max: 2, exhausted: failed}}
counters:
  tries: {{max: 3}}
states:
{body}{extra}  done: {{kind: halt, outcome: completed, message: "{{response}}"}}
  failed: {{kind: halt, outcome: provider_error, message: "failed: {{reason}}"}}
"""


@pytest.mark.parametrize("squeeze", [False, True], ids=["reset-per-round", "and-a-backstop-bounded-wait"])
def test_a_counter_reset_in_the_turn_bounds_its_backoffs_per_round_only(squeeze: bool) -> None:
    """mutmut ``backoff_time_3/4/31/37/57``: a counter some edge resets is no bound on the whole
    turn's backoffs (three rounds of three retries at up to max_wait 60 s is 540 s, which the
    explorer finds); the bound then comes from the eliminations, each group charged on its own.
    Taking the counter as never reset, or merging or dropping the groups, fell below that run."""
    policy = load_policy_text(reset_policy(squeeze=squeeze), "resets.yaml")
    ref = explore(policy)
    assert ref.halts and ref.worst_backoff >= 540.0
    wall = check_policy(policy).wall_time
    assert wall is not None and wall.parts["backoff"] >= ref.worst_backoff
    assert not [f for f in compare(policy).findings if "backoff" in f.detail]


def test_an_event_with_no_transition_waits_nothing() -> None:
    """mutmut ``edge_wait_3``: the step into the policy error (an event nothing handles) makes
    no backoff."""
    from loopspec.verify.abstract_graph import build_graph
    from loopspec.verify.abstraction import build_analysis
    from loopspec.verify.wall_time import edge_wait

    text = fill_call_events(retry_policy(schedule="[5]", retries=1)).replace("      auth: failed\n", "")
    policy = load_policy_text(text, "r.yaml")
    unhandled = [e for e in build_graph(build_analysis(policy)).edges if e.transition is None]
    assert unhandled and all(edge_wait(policy, e) == 0.0 for e in unhandled)


def test_a_turn_with_no_model_call_is_bounded_by_its_waits_or_the_deadline() -> None:
    """mutmut ``wall_time_22/41/43/45-48``: with no model call nothing streams, so the turn is
    bounded without a deadline; its bound is its waits (here three compactions, each failed and
    waited 10 s), cut at the deadline when that comes first."""
    text = """
loopspec: 1
name: squeeze
initial: squeeze
settings: {request_timeout: 10, stall_timeout: 4DEADLINE}
backoff:
  slow: [10]
backstops:
  model_calls: {max: 5, exhausted: gave_up}
  tool_batches: {max: 1, exhausted: gave_up}
counters:
  tries: {max: 3}
states:
  squeeze:
    kind: escalate
    apply: [compact]
    on:
      done: gave_up
      failed: [{when: {counter: tries, lt: 3}, do: [{increment: tries}, {backoff: slow}], to: squeeze}, gave_up]
  gave_up: {kind: halt, outcome: context_exceeded, message: "could not make room"}
"""
    free = check_policy(load_policy_text(text.replace("DEADLINE", ""), "s.yaml"))
    assert free.worst_case["model_calls"].value == 0 and free.wall_time is not None
    assert (free.wall_time.seconds, free.wall_time.unbounded) == (30.0, ())
    cut = check_policy(load_policy_text(text.replace("DEADLINE", ", turn_deadline: 12"), "s.yaml")).wall_time
    assert cut is not None and (cut.seconds, cut.waits) == (12.0, 30.0)
    late = check_policy(load_policy_text(text.replace("DEADLINE", ", turn_deadline: 100"), "s.yaml")).wall_time
    assert late is not None and late.seconds == 30.0


def squeeze_first(name: str, *, backoff: str, counters: str, tools_ok: str, short_also: str, heal: str) -> str:
    """A policy that starts in ``squeeze``, an escalation whose failures wait 30 s (a message that
    says slow) or 5 s and spend ``tries``, and goes on through ``heal`` (2 s on the way) to the
    tool loop; ``short_also`` adds actions to the 5 s edge, ``heal`` is that state's YAML."""
    body = tool_loop("failed", {"context_overflow": "failed", "opened": "read"},
                     {"text": "done", "tool_calls": "{to: tools, bounded_by: tool_batches}"}, {"ok": tools_ok})
    return f"""
loopspec: 1
name: {name}
initial: squeeze
settings: {{request_timeout: 10, stall_timeout: 4}}
backoff: {backoff}
backstops:
  model_calls: {{max: 6, exhausted: failed}}
  tool_batches: {{max: 2, exhausted: failed}}
counters:
  {counters}
states:
{body}  squeeze:
    kind: escalate
    apply: [compact]
    on:
      done: {{do: [{{backoff: once}}], to: heal}}
      failed:
        - when: {{attr: message, contains: slow}}
          do: [{{backoff: long}}, {{increment: tries}}]
          to: squeeze
        - do: [{{backoff: short}}, {{increment: tries}}{short_also}]
          to: squeeze
        - failed
  heal:
    kind: escalate
    apply: [compact]
{heal}  done: {{kind: halt, outcome: completed, message: "{{response}}"}}
  failed: {{kind: halt, outcome: provider_error, message: "failed: {{reason}}"}}
"""


def grouped_policy() -> str:
    """Waiting loops in two escalations the turn passes through once, before its first model call,
    so each loop is one component of one phase: ``squeeze`` waits 30 s or 5 s on each failure,
    three failures in all (``tries``; the 5 s wait also spends a heal, so that edge is in two
    eliminations); then 2 s once on the way to ``heal``, which waits 11 s on each of two failures
    (``heals``). The tool loop resets both counters, so neither bounds the turn by only growing:
    their eliminations do."""
    return squeeze_first(
        "grouped", backoff="{long: [30], short: [5], once: [2], mid: [11]}",
        counters="tries: {max: 3}\n  heals: {max: 2}", tools_ok="{do: [{reset: tries}, {reset: heals}], to: ask}",
        short_also=", {increment: heals}",
        heal="    on:\n      done: ask\n      failed: [{do: [{backoff: mid}, {increment: heals}], to: heal}, failed]\n",
    )


def test_each_elimination_group_is_charged_its_firings_at_its_longest_wait_and_no_more() -> None:
    """mutmut ``backoff_time`` 31-47 (the grouping by elimination): the two edges of ``squeeze``'s
    loop share one bound (three firings at 30 s, not three each, nor the two the 5 s edge has as a
    spender of heals), ``heal``'s loop is a group of its own (two at 11 s), and the edge on no cycle
    fires once (2 s). That is 114 s, exactly the explorer's longest run: merging the groups or
    taking an edge's own firings for its group's falls below it, splitting them rises above it."""
    policy = load_policy_text(grouped_policy(), "grouped.yaml")
    ref = explore(policy)
    assert ref.halts and ref.worst_backoff == 3 * 30 + 2 + 2 * 11
    wall = check_policy(policy).wall_time
    assert wall is not None and wall.parts["backoff"] == ref.worst_backoff


def rounds_policy() -> str:
    """``squeeze``'s waiting loop (``tries``, 3) is entered up to three times: ``heal`` sends the
    turn back to it twice (``rounds``, 2, never reset), resetting ``tries``. The 2 s edge out of
    the loop is on no cycle once ``rounds`` is eliminated, so it fires once per entry (three
    times), and the 4 s edge out of ``heal`` once."""
    heal = """    on:
      done:
        - do: [{increment: rounds}, {reset: tries}]
          to: squeeze
        - do: [{backoff: tail}]
          to: leave
      failed: failed
  leave:
    kind: escalate
    apply: [compact]
    on: {done: ask, failed: failed}
"""
    return squeeze_first("rounds", backoff="{long: [30], short: [5], once: [2], tail: [4]}",
                         counters="tries: {max: 3}\n  rounds: {max: 2}", tools_ok="ask", short_also="", heal=heal)


def test_an_edge_on_no_cycle_is_charged_once_per_entry_of_its_component_each_on_its_own() -> None:
    """mutmut ``backoff_time_39/50``: edges outside every loop are not one group (the 2 s edge fires
    three times, the 4 s one once: 10 s, not three or one times 4 s), and such an edge is charged
    the firings the elimination recorded for it (once per entry of its component), not one. With
    the loop's 9 firings at 30 s that is 280 s, exactly the explorer's longest run."""
    policy = load_policy_text(rounds_policy(), "rounds.yaml")
    ref = explore(policy)
    assert ref.halts and ref.worst_backoff == 3 * (3 * 30 + 2) + 4
    wall = check_policy(policy).wall_time
    assert wall is not None and wall.parts["backoff"] == ref.worst_backoff
