"""The coverage items of ``loopspec cover`` one function at a time: what each item is called, which
items a policy has, which a step covers, and which events a policy's configuration never emits
(so that their items are not counted as missing)."""

from __future__ import annotations

from typing import Any

from loopspec import load_policy_text
from loopspec.language.alphabet import Event
from loopspec.verify.cover import Item, coverage_items, move_items, silent_events, step_items

from _policy_text import handles, tool_loop

POLICY = """\
loopspec: 1
initial: ask
counters:
  tries: {max: 2}
backstops:
  model_calls: {max: 5, exhausted: out}
  tool_batches: {max: 3, exhausted: out}
states:
LOOP  done: {kind: halt, outcome: completed, message: "{response}"}
  out: {kind: halt, outcome: backstop, message: "stopped"}
""".replace("LOOP", tool_loop(
    "out", {"opened": "read"},
    {"text": "[{when: {counter: tries, lt: 1}, do: [{increment: tries}], to: ask}, {when: {attr: chars, gt: 3}, to: done}, out]",
     "tool_calls": "tools"},
    {"ok": "ask"}))


def _policy(text: str = POLICY) -> Any:
    return load_policy_text(text, "cover.yaml")


def test_each_kind_of_item_says_what_covering_it_means() -> None:
    assert Item("transition", "a --x[0]--> b").describe() == "fire a --x[0]--> b"
    assert Item("guard_false", "a --x[0]--> b").describe() == "pass over a --x[0]--> b (its guard false)"
    assert Item("halt", "done").describe() == "halt in done"


def test_a_policy_has_an_item_per_transition_per_guard_and_per_halt_sorted() -> None:
    """Every transition is an item; a guarded one is a second item (passed over, its guard false);
    every halt state is one; the list is sorted and holds each once."""
    policy = _policy()
    items = coverage_items(policy)
    assert items == sorted(set(items))
    text = [i for i in items if i.name.startswith("read --text")]
    assert text == [Item("guard_false", "read --text[0]--> ask"), Item("guard_false", "read --text[1]--> done"),
                    Item("transition", "read --text[0]--> ask"), Item("transition", "read --text[1]--> done"),
                    Item("transition", "read --text[2]--> out")]
    halts = [i for i in items if i.kind == "halt"]
    assert halts == [Item("halt", "__policy_error__"), Item("halt", "done"), Item("halt", "out")]
    transitions = sum(len(s.all_transitions()) for s in policy.states.values())
    assert len([i for i in items if i.kind == "transition"]) == transitions


def test_a_move_covers_its_transition_the_guards_passed_over_before_it_and_the_halt_it_enters() -> None:
    policy = _policy()
    assert move_items(policy, "read", "text", "read --text[2]--> out", "out") == {
        Item("transition", "read --text[2]--> out"), Item("guard_false", "read --text[0]--> ask"),
        Item("guard_false", "read --text[1]--> done"), Item("halt", "out")}
    # the first transition taken: no guard passed over, and no halt
    assert move_items(policy, "read", "text", "read --text[0]--> ask", "ask") == {Item("transition", "read --text[0]--> ask")}
    # no transition (an unhandled event): only the guards it passed over
    assert move_items(policy, "read", "text", None, "read") == {
        Item("guard_false", "read --text[0]--> ask"), Item("guard_false", "read --text[1]--> done")}


def test_a_step_covers_what_its_move_does() -> None:
    policy = _policy()
    cfg = policy.step(policy.initial_config(), Event("opened", {})).after
    step = policy.step(cfg, Event("text", {"chars": 10}))
    assert step.transition is not None and step.transition.label == "read --text[0]--> ask"
    assert step_items(policy, step) == {Item("transition", "read --text[0]--> ask")}
    step = policy.step(policy.step(step.after, Event("opened", {})).after, Event("text", {"chars": 10}))
    assert step_items(policy, step) == {Item("transition", "read --text[1]--> done"), Item("guard_false", "read --text[0]--> ask"),
                                        Item("halt", "done")}


def test_the_events_a_policy_never_hears_are_its_unconfigured_guardrails_and_a_timeout_without_limits() -> None:
    """No guardrail configured: none of the four detectors speaks; one set to allow is as silent;
    one that warns, corrects or halts is heard. A tool batch times out only under a limit."""
    every = {("tool_exec", c) for c in ("repeated_exact_failure", "same_tool_failure", "no_progress", "doom_loop")}
    assert silent_events(_policy()) == every | {("tool_exec", "timeout")}
    guarded = POLICY.replace("states:", "guardrails:\n  no_progress: {threshold: 3, verdict: allow}\n"
                                        "  doom_loop: {threshold: 3, verdict: warn}\nstates:")
    assert silent_events(_policy(guarded)) == (every - {("tool_exec", "doom_loop")}) | {("tool_exec", "timeout")}
    for limit in ("tool_timeout: 5", "tool_batch_timeout: 9"):
        timed = POLICY.replace("states:", f"settings:\n  {limit}\nstates:")
        assert silent_events(_policy(timed)) == every


def test_an_unhandled_event_covers_no_transition() -> None:
    """An event the state has no transition for (here one the stream never receives) covers
    nothing but the halt the step ends in."""
    policy = _policy()
    assert move_items(policy, "read", "opened", None, "read") == set()
    cfg = policy.step(policy.initial_config(), Event("opened", {})).after
    step = policy.step(cfg, Event("opened", {}))
    assert step.transition is None
    assert step_items(policy, step) == ({Item("halt", step.after.state)} if policy.states[step.after.state].kind == "halt" else set())


def _reachable_by_search(policy: Any) -> set[Item]:
    """The same items by a plain breadth-first search of the abstract graph (the oracle)."""
    from loopspec.verify.abstract_graph import build_graph
    from loopspec.verify.abstraction import build_analysis

    g = build_graph(build_analysis(policy))
    silent = silent_events(policy)
    heard = [e for e in g.edges if (policy.states[e.src.state].kind, e.step.event.name) not in silent]
    seen, queue = {g.initial}, [g.initial]
    while queue:
        node = queue.pop(0)
        for e in heard:
            if e.src == node and e.dst not in seen:
                seen.add(e.dst)
                queue.append(e.dst)
    out: set[Item] = set()
    for e in heard:
        if e.src in seen:
            out |= step_items(policy, e.step)
    return out


def test_the_reachable_items_are_those_a_search_of_the_abstract_graph_finds() -> None:
    """For every shipped policy, the fixed point ``reachable_items`` computes is what a plain
    search finds: every state the turn can get to in any number of steps, not only those the
    first pass over the edges reaches."""
    from loopspec import load_policy
    from loopspec.verify.cover import reachable_items

    from _paths import MACHINES

    for path in sorted(MACHINES.glob("*.yaml")):
        policy = load_policy(str(path))
        assert reachable_items(policy) == _reachable_by_search(policy), path.name


def test_a_state_first_met_on_a_silent_event_is_still_reached_by_a_later_way_in() -> None:
    """``x`` is first met on a tool batch's timeout, which this policy never emits (no time
    limits), and is reached for real only later, through two continuations: the states behind it
    are reachable, which a single pass over the graph's edges (in the order they were found)
    misses, since their edges come before the way in."""
    from loopspec.verify.cover import reachable_items

    text = (POLICY.replace(handles("tool_exec", "out", ok="ask"), handles("tool_exec", "out", ok="w", timeout="x"))
            .replace("states:", "templates: {p: go on}\nstates:")
            + "  w: {kind: continue, prompt: p, on: {done: z}}\n"
            "  z: {kind: continue, prompt: p, on: {done: x}}\n"
            "  x: {kind: continue, prompt: p, on: {done: y}}\n"
            "  y: {kind: continue, prompt: p, on: {done: hx}}\n"
            "  hx: {kind: halt, outcome: completed, message: \"{response}\"}\n")
    policy = _policy(text)
    reachable = reachable_items(policy)
    assert Item("halt", "hx") in reachable and Item("transition", "y --done[0]--> hx") in reachable
    assert Item("transition", "tools --timeout[0]--> x") not in reachable
    assert reachable == _reachable_by_search(policy)


def test_a_policy_that_starts_in_a_halt_reaches_that_halt() -> None:
    from loopspec.verify.cover import reachable_items

    policy = _policy(POLICY.replace("initial: ask", "initial: done"))
    assert reachable_items(policy) == {Item("halt", "done")}


def _small() -> tuple[Any, Any, Any]:
    from loopspec.verify.abstract_graph import build_graph
    from loopspec.verify.abstraction import build_analysis

    policy = _policy()
    an = build_analysis(policy)
    return policy, an, build_graph(an)


def step_items_of(policy: Any, step: Any) -> set[Item]:
    """The items the last step of a witness covers, from its recorded fields."""
    return move_items(policy, step.state, step.event, step.transition, step.to)


def test_the_witness_search_finds_the_shortest_run_to_each_item() -> None:
    """Breadth first: the call's opening in one step, the answer's halt in two, the tool loop back
    to the call in four (every node of each depth is looked at, none skipped)."""
    from loopspec.verify.cover import witness_runs

    policy, an, _g = _small()
    targets = {Item("transition", "ask --opened[0]--> read"), Item("halt", "done"), Item("transition", "tools --ok[0]--> ask"),
               Item("guard_false", "read --text[0]--> ask")}
    found = witness_runs(policy, an, targets)
    assert set(found) == targets
    assert {i: len(p) for i, p in found.items()} == {
        Item("transition", "ask --opened[0]--> read"): 1,
        Item("guard_false", "read --text[0]--> ask"): 4,  # the retry first spends the one try
        Item("halt", "done"): 4,
        Item("transition", "tools --ok[0]--> ask"): 3,
    }
    assert all(i in step_items_of(policy, p[-1]) for i, p in found.items())


def test_the_witness_search_explores_no_more_configurations_than_its_limit() -> None:
    """A limit of one configuration is the start alone: nothing is looked at past it."""
    from loopspec.verify.cover import witness_runs

    policy, an, _g = _small()
    assert witness_runs(policy, an, {Item("transition", "ask --opened[0]--> read")}, limit=1) == {}


def test_a_deep_witness_ends_on_a_step_that_covers_its_item() -> None:
    """The guided search behind the backstops: its run's last step covers the item asked for."""
    from loopspec.verify.cover import deep_witness

    policy, an, g = _small()
    item = Item("halt", "out")
    run = deep_witness(policy, an, g, item)
    assert run is not None and item in step_items_of(policy, run[-1])


STOPPED = POLICY.replace("cancelled: out", "cancelled: stopped") + '  stopped: {kind: halt, outcome: cancelled, message: "stopped"}\n'


def test_the_cover_report_lists_each_cassette_what_is_missing_and_why_and_what_is_unreachable() -> None:
    """The JSON of ``cover``: each cassette by name and file with the items it covers (sorted), each
    missing item with its reason, the unreachable items, and the counts."""
    from loopspec.verify.cover import cover

    policy = _policy(STOPPED)
    result = cover(policy)
    data = result.to_json()
    assert set(data) == {"policy", "reachable", "covered", "cassettes", "missing", "unreachable"}
    assert data["policy"] == policy.name and data["reachable"] == len(result.reachable)
    assert data["covered"] == len(result.covered & set(result.reachable)) > 0
    assert data["cassettes"] == [{"name": c.cassette.name, "file": c.cassette.file, "covers": [i.to_json() for i in sorted(c.items)]}
                                 for c in result.cassettes] != []
    assert all(set(m) == {"kind", "name", "reason"} for m in data["missing"]) and data["missing"]
    assert [(m["kind"], m["name"]) for m in data["missing"]] == [(i.kind, i.name) for i in sorted(result.missing)]
    assert data["unreachable"] == [i.to_json() for i in result.unreachable]
    # a halt only a cancel reaches is the caller's to cover, and said so
    assert result.missing[Item("halt", "stopped")].startswith("a cancel is the caller's")


def test_the_search_limits_given_to_cover_are_the_ones_it_searches_within() -> None:
    """With room for one configuration in each search, cover finds next to nothing; with the
    default limits it finds every run the outside world can produce."""
    from loopspec.verify.cover import cover

    policy = _policy()
    starved = cover(policy, search_limit=1, guided_limit=1)
    full = cover(policy)
    assert len(starved.covered) < len(full.covered)
    assert any("within the search limits" in why for why in starved.missing.values())
    assert not any("within the search limits" in why for why in full.missing.values())


def test_cover_says_why_a_crash_a_tool_timeout_or_an_unfindable_run_is_missing() -> None:
    """Halts only a resumed crash (interrupted_tool) or a tool outliving its timeout reach are
    missing with their own reasons, and every other item is still searched after them."""
    from loopspec.verify.cover import cover

    text = (POLICY.replace(handles("tool_exec", "out", ok="ask"),
                           handles("tool_exec", "out", ok="ask", interrupted_tool="crashed", timeout="slow"))
            .replace("states:", "settings:\n  tool_timeout: 5\nstates:")
            + '  crashed: {kind: halt, outcome: provider_error, message: "crashed"}\n'
            + '  slow: {kind: halt, outcome: tool_timeout, message: "slow"}\n')
    result = cover(_policy(text))
    assert result.missing[Item("halt", "crashed")] == (
        "only a turn resumed after a crash has an interrupted tool call: a cassette cannot record one")
    assert result.missing[Item("halt", "slow")] == "a tool that outlives its timeout: cover does not write blocking tools yet"
    assert result.missing[Item("transition", "tools --timeout[0]--> slow")] == result.missing[Item("halt", "slow")]
    # items sorted after those (the read state's, the halts') were still searched and covered
    assert Item("halt", "done") in result.covered and Item("halt", "out") in result.covered


def test_an_item_no_search_finds_is_missing_with_the_reason() -> None:
    from loopspec.verify.cover import cover

    starved = cover(_policy(), search_limit=1, guided_limit=1)
    assert ("no run the outside world can produce was found within the search limits "
            "(the abstraction allows it; the classifier or the configuration may never say it)") in starved.missing.values()


def test_cover_reports_its_progress_once_per_witness_run_counting_from_one() -> None:
    from loopspec.verify.cover import cover

    heard: list[tuple[int, int]] = []
    cover(_policy(), progress=lambda done, total: heard.append((done, total)))
    total = heard[0][1]
    assert total > 1 and heard == [(i, total) for i in range(1, total + 1)]


def test_generated_cassettes_are_numbered_from_one_and_say_what_generated_them() -> None:
    """Each chosen cassette is ``<policy>-cover-NNN`` in the order chosen, its file named after it;
    its doc and source name cover, the policy and the goal its run was made for (one of the items it
    covers), and it expects only a valid history."""
    from loopspec.verify.cover import cover

    policy = _policy()
    result = cover(policy)
    assert len(result.cassettes) > 1
    for i, c in enumerate(result.cassettes, 1):
        k = c.cassette
        assert k.name == f"{policy.name}-cover-{i:03d}" and k.file == f"{k.name}.cassette.yaml"
        goal = k.source["goal"]
        assert k.source == {"generator": "loopspec cover", "policy": policy.file, "goal": goal}
        assert goal in {item.describe() for item in c.items}
        assert k.doc.startswith(f"Generated by loopspec cover for policy '{policy.name}': a run that reaches '{goal}'.")
        assert k.expect.properties == ("history_valid",)


def _spy_on_cassettes(monkeypatch: Any, refuse: int | None = None) -> list[tuple[str, int]]:
    """Record (goal, run length) of each witness cover turns into a cassette (the ``to_cassette``
    call); the ``refuse``-th one (from 1) raises NotReplayable instead."""
    import loopspec.verify.to_cassette as to_cassette
    from loopspec.verify.event_options import NotReplayable

    made: list[tuple[str, int]] = []
    real = to_cassette.cassette_from_counterexample

    def spy(policy: Any, cex: Any, prop: str, **kw: Any) -> Any:
        made.append((kw["source"]["goal"], len(cex.steps)))
        if refuse is not None and len(made) == refuse:
            raise NotReplayable("the outside world cannot say it")
        return real(policy, cex, prop, **kw)

    monkeypatch.setattr(to_cassette, "cassette_from_counterexample", spy)
    return made


def test_witnesses_become_cassettes_shortest_first_skipping_items_already_covered(monkeypatch: Any) -> None:
    """The witness runs are tried shortest first (a short run's cassette often covers a longer run's
    goal, which is then skipped): no goal is one that an earlier cassette already covered."""
    from loopspec.verify.cover import cover, covered_by

    policy = _policy()
    made = _spy_on_cassettes(monkeypatch)
    result = cover(policy)
    goals, lengths = [goal for goal, _ in made], [n for _, n in made]
    assert lengths == sorted(lengths) and len(set(lengths)) > 1
    covered: set[str] = set()
    by_goal = {c.cassette.source["goal"]: c for c in result.cassettes}
    for goal in goals:
        assert goal not in covered, f"{goal} was covered by an earlier cassette"
        if goal in by_goal:
            covered |= {i.describe() for i in covered_by(by_goal[goal].cassette, policy).items}
    assert len(goals) < len(result.reachable)


def test_a_witness_no_cassette_reproduces_is_missing_and_the_others_go_on(monkeypatch: Any) -> None:
    """The first witness's cassette cannot be made: its item is missing with the reason, and every
    later witness is still turned into a cassette."""
    from loopspec.verify.cover import cover

    made = _spy_on_cassettes(monkeypatch, refuse=1)
    result = cover(_policy())
    assert "no cassette reproduces its run: the outside world cannot say it" in result.missing.values()
    assert len(made) > 1 and result.cassettes


def test_a_cassette_whose_replay_misses_its_goal_leaves_it_missing_and_the_others_go_on(monkeypatch: Any) -> None:
    """When a cassette's replay does not reach the item it was made for, the item is missing with
    that reason and no cassette is kept for it; the witnesses after it are still tried."""
    import loopspec.verify.cover as cover_module

    real = cover_module.covered_by
    calls: list[int] = []

    def first_misses(cassette: Any, policy: Any) -> Any:
        calls.append(1)
        got = real(cassette, policy)
        return cover_module.CoverCassette(got.cassette, frozenset(), got.decisions) if len(calls) == 1 else got

    monkeypatch.setattr(cover_module, "covered_by", first_misses)
    result = cover_module.cover(_policy())
    assert list(result.missing.values()).count("its cassette's replay did not reach it") == 1
    assert len(calls) > 1 and result.cassettes


def test_the_candidates_are_named_in_the_order_they_were_made(monkeypatch: Any) -> None:
    """The set cover breaks a tie (as many new items, as long a run) by name: every candidate is
    named ``<policy>-cover-NNN`` in the order it was made, so ties go the same way on every run."""
    import loopspec.verify.cover as cover_module

    seen: list[str] = []
    real = cover_module.minimal_cover

    def spy(candidates: Any) -> Any:
        seen.extend(c.cassette.name for c in candidates)  # as handed over: the chosen are renamed after
        return real(candidates)

    monkeypatch.setattr(cover_module, "minimal_cover", spy)
    policy = _policy()
    cover_module.cover(policy)
    assert len(seen) > 1
    assert seen == [f"{policy.name}-cover-{i:03d}" for i in range(1, len(seen) + 1)]


def test_a_halt_reached_only_from_the_tools_on_another_event_is_covered_not_a_tool_timeout() -> None:
    """A halt that only a tool batch's ``failed`` reaches comes from a tool state, but not through a
    timeout: when the first search misses it (a limit of one configuration), cover looks for a
    guided run to it and writes a cassette, instead of calling it a blocking tool."""
    from loopspec.verify.cover import cover

    text = (POLICY.replace(handles("tool_exec", "out", ok="ask"), handles("tool_exec", "out", ok="ask", failed="broke"))
            + '  broke: {kind: halt, outcome: guardrail, message: "a tool failed"}\n')
    result = cover(_policy(text), search_limit=1)
    assert Item("halt", "broke") in result.covered and Item("halt", "broke") not in result.missing
