"""`loopspec cover`: generated cassettes fire every reachable transition, take both outcomes of
every guard and reach every reachable halt; each replays along its planned path; what the checker
proves unreachable is listed, not counted; a corpus's coverage is measured item by item."""

from __future__ import annotations

import dataclasses

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from loopspec import load_policy, load_policy_text
from loopspec.cli.main import main
from loopspec.replay.cassette import find_cassettes, load_cassette, read_cassette
from loopspec.replay.harness import replay_sync
from loopspec.verify.corpus_coverage import corpus_coverage
from loopspec.verify.cover import CoverCassette, Item, cover, coverage_items, minimal_cover, reachable_items, run_items, step_items

from _paths import DEFAULT_POLICY, ROOT
from _policy_text import handles

SMALL = f"""
loopspec: 1
name: small
initial: ask
backstops:
  model_calls: {{max: 6, exhausted: out_of_calls}}
  tool_batches: {{max: 3, exhausted: out_of_calls}}
backoff:
  wait: [1, 2]
counters:
  retries: {{max: 2}}
states:
  ask:
    kind: call
    on:
{chr(10).join(f"      {e}: failed" for e in ("auth", "bad_request", "cancelled", "context_overflow", "effort_unsupported", "thinking_signature_invalid", "timeout", "transient"))}
      opened: read
      rate_limit:
        - when: {{counter: retries, lt: max}}
          do: [{{backoff: wait, attempt: retries}}, {{increment: retries}}]
          to: ask
        - to: limited
  read:
    kind: stream
    on: {handles("stream", "failed", text="done", tool_calls="tools", length="cut")}
  cut:
    kind: stub
    on: {{mid_text: failed, mid_tool_call: failed}}
  tools:
    kind: tool_exec
    on: {handles("tool_exec", "failed", ok="ask")}
  done: {{kind: halt, outcome: completed, message: "{{response}}"}}
  limited: {{kind: halt, outcome: rate_limited, message: "rate limited"}}
  failed: {{kind: halt, outcome: provider_error, message: "failed: {{reason}}"}}
  out_of_calls: {{kind: halt, outcome: backstop, message: "out of calls"}}
"""


def small_policy(text: str = SMALL) -> Any:
    return load_policy_text(text, "small.yaml")


@pytest.fixture(scope="module")
def small_cover() -> Any:
    return cover(small_policy())


def test_every_reachable_item_of_a_small_policy_is_covered_by_few_cassettes(small_cover: Any) -> None:
    policy = small_policy()
    reachable = set(small_cover.reachable)
    assert Item("transition", "ask --rate_limit[0]--> ask") in reachable
    assert Item("guard_false", "ask --rate_limit[0]--> ask") in reachable
    assert Item("halt", "out_of_calls") in reachable
    missing = reachable - small_cover.covered
    # a cancel is the caller's, a crash the process's: cover writes neither, so those stay missing and say so
    assert all("cancelled" in i.name or "interrupted_tool" in i.name for i in missing), sorted(missing)
    assert all(("cancel" if "cancelled" in i.name else "crash") in why for i, why in small_cover.missing.items())
    # no cassette is redundant: each covers something none of the others does
    for cc in small_cover.cassettes:
        others: set[Item] = set()
        for o in small_cover.cassettes:
            if o is not cc:
                others |= o.items
        assert cc.items - others, cc.cassette.name
    # every way to halt ends its run, so the floor is one cassette per way to halt: each halting
    # transition, and each backstop's redirect; greedy needs no more than that here
    halting = {i for i in reachable - missing if i.kind == "transition" and policy.states[i.name.rsplit("--> ", 1)[1]].kind == "halt"}
    assert len(small_cover.cassettes) <= len(halting) + len(policy.backstops)


def test_each_generated_cassette_replays_along_its_stored_decisions_and_covers_what_it_claims(small_cover: Any) -> None:
    policy = small_policy()
    for cc in small_cover.cassettes:
        report = replay_sync(cc.cassette, policy)
        assert report.verdict == "pass", report.failures
        got = [(s.state, s.event, s.target) for s in report.result.trace]
        assert got == [(s.state, s.event, s.target) for s in cc.cassette.trace] == list(cc.decisions)
        assert run_items(policy, report.result.steps) == cc.items


def test_an_item_no_run_reaches_is_listed_unreachable_not_missing() -> None:
    # a transition after one that is always enabled is never tried
    text = SMALL.replace("        - to: limited\n", "        - to: limited\n        - to: done\n")
    policy = small_policy(text)
    never = Item("transition", "ask --rate_limit[2]--> done")
    assert never in coverage_items(policy) and never not in reachable_items(policy)
    result = cover(policy)
    assert never in result.unreachable and never not in result.missing


def _candidate(name: str, items: set[Item], decisions: list[str]) -> CoverCassette:
    return CoverCassette(type("C", (), {"name": name})(), frozenset(items), tuple((d, "e", "t") for d in decisions))


def test_a_prefix_is_never_chosen_over_a_longer_run_that_covers_more_nor_a_longer_run_that_covers_nothing_more() -> None:
    a, b, c = Item("transition", "a"), Item("transition", "b"), Item("halt", "h")
    short = _candidate("short", {a}, ["s"])
    long_ = _candidate("long", {a, b, c}, ["s", "t"])
    other = _candidate("other", {b}, ["x"])
    assert minimal_cover([short, other, long_]) == [long_], "short is a prefix of long; other adds nothing long does not"
    same = _candidate("same", {a}, ["s", "t", "u"])
    assert minimal_cover([same, short]) == [short], "the longer run covers nothing more: the shorter stays"


def test_greedy_takes_the_widest_first_and_stops_when_all_is_covered() -> None:
    items = [Item("transition", str(i)) for i in range(5)]
    wide = _candidate("wide", set(items[:4]), ["w"])
    narrow = _candidate("narrow", {items[0], items[4]}, ["n"])
    spare = _candidate("spare", {items[1]}, ["p"])
    assert minimal_cover([spare, narrow, wide]) == [wide, narrow]


def test_a_step_covers_its_transition_the_guards_it_passed_over_and_its_halt() -> None:
    policy = small_policy()
    from loopspec import Event

    cfg = policy.initial_config()
    retry = policy.step(cfg, Event("rate_limit", {"status": 429, "message": "slow", "retry_after": 0.0, "code": ""}))
    assert step_items(policy, retry) == {Item("transition", "ask --rate_limit[0]--> ask")}
    spent = type(cfg)(cfg.state, tuple(2 if n == "retries" else v for n, v in zip(policy.counter_names, cfg.counters)), cfg.flags)
    give_up = policy.step(spent, Event("rate_limit", {"status": 429, "message": "slow", "retry_after": 0.0, "code": ""}))
    assert step_items(policy, give_up) == {
        Item("transition", "ask --rate_limit[1]--> limited"), Item("guard_false", "ask --rate_limit[0]--> ask"), Item("halt", "limited"),
    }


def test_corpus_coverage_counts_each_item_once_with_the_cassettes_that_fire_it(small_cover: Any) -> None:
    policy = small_policy()
    runs = [(cc.cassette.name, replay_sync(cc.cassette, policy).result.steps) for cc in small_cover.cassettes]
    cov = corpus_coverage(policy, runs)
    assert set(cov.covered) == small_cover.covered & set(cov.reachable)
    assert cov.cassettes == len(small_cover.cassettes)
    for item in cov.covered:
        assert cov.fired[item] and set(cov.fired[item]) <= {cc.cassette.name for cc in small_cover.cassettes}
    half = corpus_coverage(policy, runs[:1])
    assert len(half.covered) < len(cov.covered) and half.ratio < cov.ratio


def test_the_cli_writes_the_cassettes_and_measures_them_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy_file = tmp_path / "small.yaml"
    policy_file.write_text(SMALL)
    out = tmp_path / "covering"
    assert main(["cover", str(policy_file), str(out), "--no-http", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    files = find_cassettes([str(out)])
    assert len(files) == len(data["cassettes"]) == len(data["written"]) > 0
    assert data["ok"] is True and data["disagreements"] == []
    junit = tmp_path / "cover.xml"
    assert main(["cover", str(policy_file), "--corpus", str(out), "--json", "--junit", str(junit)]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["covered"] == data["covered"] and measured["cassettes"] == len(files)
    suite = ET.parse(junit).getroot()
    assert int(suite.get("tests")) == measured["reachable"] + len(measured["unreachable"])
    assert int(suite.get("failures")) == len(measured["missing"]) == len(suite.findall("testcase/failure"))
    assert main(["cover", str(policy_file), "--corpus", str(out), "--min-coverage", "100"]) == 1
    assert "is below --min-coverage 100" in capsys.readouterr().err
    assert main(["cover", str(policy_file), "--corpus", str(out), "--min-coverage", "50"]) == 0


def test_a_corpus_is_measured_alike_on_any_number_of_processes_and_shards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--jobs and --shard for cover --corpus: two processes give the serial report, and the shards'
    covered items together are the whole corpus's (each cassette lands in exactly one shard)."""
    corpus = str(ROOT / "fixtures" / "incidents")
    base = ["cover", str(DEFAULT_POLICY), "--corpus", corpus, "--files-root", str(ROOT / "fixtures"), "--json"]
    reports = []
    for extra in (["--jobs", "1"], ["--jobs", "2"], ["--shard", "1/2"], ["--shard", "2/2"]):
        assert main(base + extra) == 0
        reports.append(json.loads(capsys.readouterr().out))
    serial, pooled, one, two = reports
    assert pooled == serial and serial["covered"] > 0
    assert one["cassettes"] + two["cassettes"] == serial["cassettes"]
    assert set(one["fired"]) | set(two["fired"]) == set(serial["fired"])
    for item, names in serial["fired"].items():  # each firing cassette is in exactly one shard
        assert sorted(one["fired"].get(item, []) + two["fired"].get(item, [])) == sorted(names)


def test_generated_cassettes_are_checked_alike_on_any_number_of_processes_and_split_by_shards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--jobs and --shard for generating: two processes write the serial run's cassettes, byte for
    byte, and the shards write disjoint parts whose union is the whole set."""
    policy_file = tmp_path / "small.yaml"
    policy_file.write_text(SMALL)

    def generate(name: str, *extra: str) -> dict[str, str]:
        out = tmp_path / name
        assert main(["cover", str(policy_file), str(out), "--no-http", "--json", *extra]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["ok"] is True and data["disagreements"] == []
        assert not [p for p in out.iterdir() if p.name.startswith(".cover-staging")]
        return {Path(f).name: Path(f).read_text() for f in find_cassettes([str(out)])}

    serial, pooled = generate("serial", "--jobs", "1"), generate("pooled", "--jobs", "2")
    one, two = generate("one", "--shard", "1/2"), generate("two", "--shard", "2/2")
    assert pooled == serial and len(serial) > 1
    assert not set(one) & set(two) and {**one, **two} == serial


def test_a_generated_cassette_that_parts_from_its_path_goes_to_failures_with_the_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check replays what was written: a cassette whose stored decisions the replay does not
    follow is a disagreement, written under failures/ with the step where the paths part."""
    from loopspec.replay import cassette_writer

    policy_file = tmp_path / "small.yaml"
    policy_file.write_text(SMALL)
    real = cassette_writer.write_cassette

    def planted(c: Any, path: str) -> None:  # every written cassette loses its last recorded answer
        real(dataclasses.replace(c, interactions=c.interactions[:-1], tool_results=()), path)

    monkeypatch.setattr(cassette_writer, "write_cassette", planted)
    monkeypatch.setattr("loopspec.replay.cassette.write_cassette", planted)
    out = tmp_path / "covering"
    assert main(["cover", str(policy_file), str(out), "--no-http", "--json", "--jobs", "2"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["written"] == [] and len(data["disagreements"]) == len(data["cassettes"])
    for d in data["disagreements"]:
        assert "/failures/" in d["cassette"] and Path(d["cassette"]).exists() and d["reason"].startswith("inproc: ")
    assert any("the path parts from the planned one at step " in d["reason"] for d in data["disagreements"])


def test_items_read_from_a_trace_record_are_the_items_of_its_steps() -> None:
    """A corpus measured on worker processes reads the trace records they hand back; those must
    give exactly the items the steps themselves give, for every cassette of the incident corpus."""
    from loopspec.verify.corpus_coverage import trace_items

    policy = load_policy(str(DEFAULT_POLICY))
    for f in find_cassettes([str(ROOT / "fixtures" / "incidents")]):
        c, _ = read_cassette(f, files_root=str(ROOT / "fixtures"))
        assert c is not None
        r = replay_sync(c, policy).result
        assert trace_items(policy, [s.to_json() for s in r.trace]) == run_items(policy, r.steps), f


@pytest.mark.parametrize("argv,message", [
    (["cover", "{p}"], "give either OUT"),
    (["cover", "{p}", "out", "--corpus", "x"], "give either OUT"),
    (["cover", "{p}", "--corpus", "{p}"], "is not a folder"),
    (["cover", "{p}", "--corpus", ".", "--min-coverage", "101"], "must be a percentage between 0 and 100"),
])
def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    policy_file = tmp_path / "small.yaml"
    policy_file.write_text(SMALL)
    assert main([a.replace("{p}", str(policy_file)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_cassette_that_left_its_path_stays_in_failures_until_it_agrees_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy_file = tmp_path / "small.yaml"
    policy_file.write_text(SMALL)
    out = tmp_path / "covering"
    assert main(["cover", str(policy_file), str(out), "--no-http"]) == 0
    capsys.readouterr()
    first = sorted(find_cassettes([str(out)]))[0]
    text = Path(first).read_text()
    broken = text.replace("target: done", "target: limited", 1) if "target: done" in text else text.replace("target: ", "target: x", 1)
    (out / "failures").mkdir()
    (out / "failures" / "stale.cassette.yaml").write_text(broken)
    (out / "failures" / "fixed.cassette.yaml").write_text(text)
    assert main(["cover", str(policy_file), str(out), "--no-http"]) == 1
    captured = capsys.readouterr()
    assert "STILL FAILING" in captured.out and "stale.cassette.yaml" in captured.out
    assert "fixed since the last run (removed)" in captured.err
    assert not (out / "failures" / "fixed.cassette.yaml").exists() and (out / "failures" / "stale.cassette.yaml").exists()


@pytest.mark.slow
def test_the_generated_cassettes_agree_over_http(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy_file = tmp_path / "small.yaml"
    policy_file.write_text(SMALL)
    assert main(["cover", str(policy_file), str(tmp_path / "c")]) == 0, capsys.readouterr().out


def test_items_breadth_first_search_runs_out_on_are_found_by_the_guided_search(small_cover: Any) -> None:
    """With a search budget of a few configurations, the guided (depth-first, abstract-distance)
    search must still find a run to every item the full search covers."""
    policy = small_policy()
    starved = cover(policy, search_limit=5)
    assert starved.covered <= small_cover.covered
    # six model calls deep: far past five configurations of breadth-first search
    assert {Item("halt", "out_of_calls"), Item("guard_false", "ask --rate_limit[0]--> ask")} <= starved.covered
    assert len(starved.covered) >= len(small_cover.covered) * 3 // 4
    assert all(why for why in starved.missing.values())
    for cc in starved.cassettes:
        assert replay_sync(cc.cassette, policy).verdict == "pass"


def test_an_item_no_recording_can_produce_is_missing_with_the_reason() -> None:
    # a guardrail configured to halt: its detector fires, but never with a verdict other than halt,
    # so the transition for any other verdict is reachable on the abstract graph and never recorded
    text = SMALL.replace("backoff:\n", "guardrails:\n  no_progress: {threshold: 2, verdict: halt}\nbackoff:\n")
    text = text.replace("model_calls: {max: 6,", "model_calls: {max: 9,").replace("tool_batches: {max: 3,", "tool_batches: {max: 6,")
    text = text.replace("    on: " + handles("tool_exec", "failed", ok="ask"),
                        "    on:\n" + "".join(f"      {e}: failed\n" for e in ("timeout", "approval_required", "cancelled",
                                                                                  "repeated_exact_failure", "same_tool_failure", "doom_loop"))
                        + "      ok: ask\n      failed: ask\n      no_progress:\n        - when: {attr: verdict, eq: warn}\n          to: ask\n        - to: failed\n")
    policy = small_policy(text)
    result = cover(policy, guided_limit=2_000)
    warn = Item("transition", "tools --no_progress[0]--> ask")
    assert warn in result.reachable and warn in result.missing
    assert "no run the outside world can produce" in result.missing[warn]
    assert Item("transition", "tools --no_progress[1]--> failed") in result.covered


def test_the_coverage_report_counts_each_kind_and_rounds_the_ratio() -> None:
    """The JSON report of a measured corpus: every field by name, the ratio to four places, and
    per kind how many reachable items there are and how many the corpus fired."""
    from loopspec.verify.corpus_coverage import CorpusCoverage

    a, b, c = Item("transition", "a --x[0]--> b"), Item("transition", "b --y[0]--> a"), Item("halt", "done")
    gone = Item("transition", "z --x[0]--> a")
    cov = CorpusCoverage("small", [a, b, c], [gone], {a: ["1.yaml"], c: ["1.yaml", "2.yaml"]}, 2)
    assert cov.to_json() == {
        "policy": "small",
        "cassettes": 2,
        "reachable": 3,
        "covered": 2,
        "ratio": 0.6667,
        "by_kind": {"transition": {"reachable": 2, "covered": 1}, "halt": {"reachable": 1, "covered": 1}},
        "missing": [{"kind": "transition", "name": "b --y[0]--> a"}],
        "unreachable": [{"kind": "transition", "name": "z --x[0]--> a"}],
        "fired": {"halt:done": ["1.yaml", "2.yaml"], "transition:a --x[0]--> b": ["1.yaml"]},
    }
    assert CorpusCoverage("none", [], [], {}, 0).to_json()["ratio"] == 1.0


def test_what_the_checker_proves_unreachable_is_listed_apart_from_the_reachable_items(small_cover: Any) -> None:
    """A corpus's report lists as unreachable exactly the policy's items the checker proves no run
    reaches, and never a reachable one."""
    policy = small_policy()
    cov = corpus_coverage(policy, [])
    reachable = reachable_items(policy)
    assert set(cov.reachable) == reachable and cov.reachable
    assert set(cov.unreachable) == set(coverage_items(policy)) - reachable
    assert not set(cov.unreachable) & reachable


def test_a_turn_that_starts_in_a_halt_covers_that_halt_from_its_trace_too() -> None:
    """A policy whose initial state is a halt: the turn takes no step, and both the steps and the
    trace records of it cover that halt."""
    from loopspec.verify.corpus_coverage import trace_items

    policy = small_policy(SMALL.replace("initial: ask", "initial: done"))
    assert trace_items(policy, []) == run_items(policy, []) == {Item("halt", "done")}
    assert trace_items(small_policy(), []) == set()
