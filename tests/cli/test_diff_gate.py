"""The promotion gate (``loopspec diff --fail-on regression``) and corpus splitting (``--jobs``,
``--shard``) as a CI job meets them: exit codes, the markdown report, and reports that are
byte-identical however the corpus is split."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from loopspec.cli import main
from loopspec.language.alphabet import OUTCOMES
from loopspec.replay.gate import GateRule, judge, markdown, parse_tolerance, parse_worse, regressions

from _paths import DEFAULT_POLICY, FIXTURES, MACHINES

INCIDENTS = str(FIXTURES / "incidents")
POLICY = str(DEFAULT_POLICY)
PRE_FIX = str(MACHINES / "hermes_pre_32012.yaml")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def row(old: tuple[str, str, int, int], new: tuple[str, str, int, int]) -> dict[str, Any]:
    """A ``diff`` row from (outcome, verdict, model calls, tool batches) under each policy."""
    side = lambda s: {"outcome": s[0], "verdict": s[1], "model_calls": s[2], "tool_batches": s[3]}  # noqa: E731
    return {"cassette": "c.cassette.yaml", "name": "c", "changed": old != new, "old": side(old), "new": side(new),
            "first_difference": None}


RULE = GateRule(frozenset({"backstop", "guardrail"}))


# ----------------------------------------------------------------------------- the three rules


@pytest.mark.parametrize("old,new,expected", [
    # (a) pass -> fail or diverged
    (("empty", "pass", 3, 0), ("empty", "fail", 3, 0), ["passed under OLD, fail under NEW"]),
    (("empty", "pass", 3, 0), ("empty", "diverged", 3, 0), ["passed under OLD, diverged under NEW"]),
    (("empty", "fail", 3, 0), ("empty", "pass", 3, 0), []),
    # (b) completed -> anything else; into a listed outcome from one not listed
    (("completed", "fail", 3, 0), ("empty", "fail", 3, 0), ["completed under OLD, empty under NEW"]),
    (("empty", "fail", 3, 0), ("completed", "fail", 3, 0), []),
    (("empty", "fail", 3, 0), ("guardrail", "fail", 3, 0), ["moved into guardrail (listed as worse) from empty"]),
    (("backstop", "fail", 3, 0), ("guardrail", "fail", 3, 0), []),
    (("empty", "fail", 3, 0), ("truncated", "fail", 3, 0), []),
    # (c) spending over +10 %: 10 -> 11 is allowed, 10 -> 12 is not; from 0 any increase is over
    (("completed", "pass", 10, 10), ("completed", "pass", 11, 11), []),
    (("completed", "pass", 10, 10), ("completed", "pass", 12, 10), ["model calls 10 -> 12, over the +10% tolerance"]),
    (("completed", "pass", 10, 0), ("completed", "pass", 10, 1), ["tool batches 0 -> 1, over the +10% tolerance"]),
    (("completed", "pass", 10, 5), ("completed", "pass", 3, 1), []),
])
def test_regression_rules(old: tuple[str, str, int, int], new: tuple[str, str, int, int], expected: list[str]) -> None:
    assert regressions(row(old, new), RULE) == expected


OTHER_OUTCOMES = [o for o in OUTCOMES if o != "completed"]


@pytest.mark.parametrize("outcome", OTHER_OUTCOMES)
def test_completed_into_any_other_outcome_is_a_regression(outcome: str) -> None:
    """Every outcome but ``completed`` (the alphabet's, not only the ones the examples use)."""
    assert regressions(row(("completed", "fail", 1, 0), (outcome, "fail", 1, 0)), GateRule()) == [
        f"completed under OLD, {outcome} under NEW"]


@pytest.mark.parametrize("before,after", [(a, b) for a in OTHER_OUTCOMES for b in OTHER_OUTCOMES if a != b])
def test_moving_into_a_listed_outcome_from_any_unlisted_one_is_a_regression(before: str, after: str) -> None:
    """Every pair of outcomes, with only the second listed as worse; never with both listed."""
    assert regressions(row((before, "fail", 1, 0), (after, "fail", 1, 0)), GateRule(frozenset({after}))) == [
        f"moved into {after} (listed as worse) from {before}"]
    assert regressions(row((before, "fail", 1, 0), (after, "fail", 1, 0)), GateRule(frozenset({before, after}))) == []


def test_completed_into_a_worse_outcome_is_one_reason_not_two() -> None:
    assert regressions(row(("completed", "fail", 1, 0), ("guardrail", "fail", 1, 0)), RULE) == [
        "completed under OLD, guardrail under NEW"]


def test_tolerance_is_exact_and_configurable() -> None:
    r = row(("completed", "pass", 3, 0), ("completed", "pass", 4, 0))
    assert regressions(r, GateRule(tolerance=Fraction(1, 3))) == []           # 4 == 3 * (1 + 1/3)
    assert regressions(r, GateRule(tolerance=Fraction(1, 4))) != []
    assert regressions(row(("completed", "pass", 3, 0), ("completed", "pass", 3, 0)), GateRule(tolerance=Fraction(0))) == []


@pytest.mark.parametrize("text,value", [("10%", Fraction(1, 10)), ("+10%", Fraction(1, 10)), ("10", Fraction(1, 10)),
                                        ("0%", Fraction(0)), ("2.5%", Fraction(1, 40))])
def test_tolerance_parses_as_a_percentage(text: str, value: Fraction) -> None:
    assert parse_tolerance(text) == value


@pytest.mark.parametrize("text,message", [("ten", "a percentage such as 10%"), ("-5%", "negative tolerance")])
def test_a_bad_tolerance_says_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_tolerance(text)


def test_worse_names_outcomes_and_rejects_others() -> None:
    assert parse_worse("backstop, guardrail", list(OUTCOMES)) == {"backstop", "guardrail"}
    assert parse_worse("", list(OUTCOMES)) == frozenset()
    with pytest.raises(ValueError, match="unknown outcome 'guardrails'"):
        parse_worse("backstop,guardrails", list(OUTCOMES))


def test_markdown_lists_regressions_apart_from_other_changes() -> None:
    rows = judge([row(("completed", "pass", 2, 0), ("truncated", "fail", 1, 0)),
                  dict(row(("empty", "pass", 4, 0), ("empty", "pass", 4, 0)), name="d|e", changed=True,
                       first_difference={"step": 5, "old": ["a", "b", "c"], "new": None})], RULE)
    text = markdown(rows, old="o.yaml", new="n.yaml", corpus="corp", rule=RULE, shard="2/3")
    assert text.startswith("## loopspec diff: REGRESSION\n")
    assert "`o.yaml` -> `n.yaml` over `corp` (shard 2/3): 2 cassettes, 1 regressed, 1 changed otherwise." in text
    assert ("| `c` | completed, pass, 2 calls, 0 batches | truncated, fail, 1 calls, 0 batches | passed under OLD, "
            "fail under NEW; completed under OLD, truncated under NEW |  |") in text
    assert "| `d\\|e` | empty, pass, 4 calls, 0 batches | empty, pass, 4 calls, 0 batches | step 5: `a --b--> c` vs (ended) |" in text
    assert text.index("### Regressions") < text.index("### Other changes")
    clean = markdown(judge([row(("empty", "pass", 4, 0), ("empty", "pass", 4, 0))], RULE), old="o", new="n",
                     corpus="c", rule=RULE)
    assert clean.startswith("## loopspec diff: no regression\n") and "###" not in clean


def test_the_markdown_report_reads_as_reviewed(snapshot: Any) -> None:
    """The whole report a CI job posts on a pull request, for a regression with a shard, listed
    outcomes and a fractional tolerance, and for a clean run with none of them: its layout (headings,
    table heads, blank lines), a cell's pipe and newline, each side of a first difference, and the
    rule as it is printed. Reviewed like code: ``--snapshot-update`` only when a change is meant."""
    rule = GateRule(frozenset({"guardrail", "backstop"}), Fraction(1, 8))
    rows = judge([
        row(("completed", "pass", 2, 0), ("truncated", "fail", 1, 0)),
        dict(row(("empty", "pass", 8, 0), ("empty", "pass", 9, 0)), name="big\nspend", changed=True,
             first_difference={"step": 3, "old": None, "new": ["read", "empty", "ask"]}),
        dict(row(("empty", "pass", 4, 0), ("empty", "pass", 4, 0)), name="d|e", changed=True,
             first_difference={"step": 5, "old": ["a", "b", "c"], "new": ["a", "b", "d"]}),
        row(("completed", "pass", 2, 1), ("completed", "pass", 2, 1)),
    ], rule)
    report = markdown(rows, old="o.yaml", new="n.yaml", corpus="corp", rule=rule, shard="2/3")
    clean = markdown(judge([rows[-1]], GateRule()), old="o.yaml", new="n.yaml", corpus="corp", rule=GateRule())
    assert (report, clean) == snapshot


@pytest.mark.parametrize("text, printed", [("12.5%", "+12.5%"), ("10%", "+10%"), ("1000000%", "+1000000%")])
def test_the_tolerance_is_printed_as_it_reads(text: str, printed: str) -> None:
    rule = GateRule(tolerance=parse_tolerance(text))
    assert f"more than {printed} model calls" in markdown([], old="o", new="n", corpus="c", rule=rule)


def test_a_plus_sign_set_apart_is_read_too_and_an_unknown_outcome_lists_the_others() -> None:
    assert parse_tolerance(" + 10 % ") == Fraction(1, 10)
    with pytest.raises(ValueError) as err:
        parse_worse("backstops", ["completed", "backstop"])
    assert str(err.value) == "--worse: unknown outcome 'backstops'; outcomes are completed, backstop"


# ----------------------------------------------------------------------------------- exit codes


def test_the_gate_fails_a_regressing_policy_and_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.md"
    code, out, _ = run(capsys, "diff", POLICY, PRE_FIX, "--corpus", INCIDENTS, "--fail-on", "regression",
                       "--markdown", str(report), "--jobs", "1")
    assert code == 1
    assert "    REGRESSION: passed under OLD, fail under NEW" in out
    assert out.rstrip().endswith("21 of 27 cassettes changed, 20 regressed")
    text = report.read_text()
    assert text.startswith("## loopspec diff: REGRESSION")
    # A regression need not change the path (same decisions, failed expectations), so the tables
    # hold 20 regressions and the 2 changed cassettes that did not regress.
    assert "27 cassettes, 20 regressed, 2 changed otherwise." in text and text.count("\n| `") == 22


def test_without_fail_on_a_regression_is_reported_but_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diff", POLICY, PRE_FIX, "--corpus", INCIDENTS, "--jobs", "1")
    assert code == 0 and "20 regressed" in out


def test_the_gate_passes_an_unchanged_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.md"
    code, out, _ = run(capsys, "diff", POLICY, POLICY, "--corpus", INCIDENTS, "--fail-on", "regression",
                       "--markdown", str(report))
    assert (code, out) == (0, "0 of 27 cassettes changed, 0 regressed\n")
    assert report.read_text().startswith("## loopspec diff: no regression")


def test_fail_on_change_fails_any_change_and_tolerance_loosens_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    # Under the pre-fix policy this one ends guardrail after 5 calls; the fix halts it after 2.
    src = FIXTURES / "incidents" / "hermes-30770-guardrail-silent-halt.cassette.yaml"
    (corpus / src.name).write_text(src.read_text())
    shutil.copytree(FIXTURES / "streams", tmp_path / "streams")
    monkeypatch.setenv("LOOPSPEC_FILES_ROOT", str(tmp_path))  # the streams sit beside the corpus
    pre = str(MACHINES / "hermes_pre_30813.yaml")
    assert run(capsys, "diff", pre, POLICY, "--corpus", str(corpus), "--fail-on", "regression")[0] == 0
    assert run(capsys, "diff", pre, POLICY, "--corpus", str(corpus), "--fail-on", "change")[0] == 1
    # The other way round it spends 2 -> 5 calls: over +10 %, within +150 %, but it also fails its expectations.
    code, out, _ = run(capsys, "diff", POLICY, pre, "--corpus", str(corpus), "--fail-on", "regression", "--json")
    assert code == 1 and json.loads(out)["cassettes"][0]["regressions"] == [
        "passed under OLD, fail under NEW", "model calls 2 -> 5, over the +10% tolerance",
        "tool batches 2 -> 5, over the +10% tolerance"]
    code, out, _ = run(capsys, "diff", POLICY, pre, "--corpus", str(corpus), "--json", "--tolerance", "150%")
    assert json.loads(out)["cassettes"][0]["regressions"] == ["passed under OLD, fail under NEW"]


@pytest.mark.parametrize("argv,message", [
    (["--shard", "0/3"], "argument --shard: --shard 0/3: I must be between 1 and 3"),
    (["--shard", "4/3"], "argument --shard: --shard 4/3: I must be between 1 and 3"),
    (["--shard", "x/y"], "argument --shard: --shard takes I/N, two whole numbers such as 1/4, not 'x/y'"),
    (["--shard", "1/0"], "argument --shard: --shard 1/0: N must be at least 1"),
    (["--jobs", "0"], "argument --jobs/-j: takes a number of processes, 1 or more, not '0'"),
    (["--tolerance", "lots"], "loopspec diff: --tolerance takes a percentage such as 10% or 0%, not 'lots'"),
    (["--worse", "doom"], "loopspec diff: --worse: unknown outcome 'doom'"),
    (["--fail-on", "anything"], "argument --fail-on: invalid choice: 'anything'"),
    (["--backend", "dask"], "argument --backend: invalid choice: 'dask'"),
])
def test_bad_gate_and_split_options_are_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "diff", POLICY, POLICY, "--corpus", INCIDENTS, *argv)
    assert code == 2 and message in err


@pytest.mark.parametrize("shard", ["0/3", "4/3", "x/y", "1/0"])
def test_replay_refuses_a_bad_shard_too(shard: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "replay", INCIDENTS, "--machine", POLICY, "--shard", shard)
    assert code == 2 and "argument --shard: " in err


def test_an_invalid_cassette_stops_the_gate_with_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.cassette.yaml").write_text("loopspec_cassette: 1\nrequest: 3\n")
    code, _, err = run(capsys, "diff", POLICY, PRE_FIX, "--corpus", str(tmp_path), "--fail-on", "regression")
    assert code == 2 and "1 invalid cassette" in err


def test_an_empty_shard_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = FIXTURES / "incidents" / "ml-intern-length-with-tool-calls.cassette.yaml"
    (tmp_path / src.name).write_text(src.read_text())
    codes = [run(capsys, "replay", str(tmp_path), "--machine", POLICY, "--shard", f"{i}/2") for i in (1, 2)]
    assert sorted(c for c, _, _ in codes) == [0, 2]
    assert any(err == f"loopspec replay: no cassettes (*.cassette.yaml) under {tmp_path} in shard {i}/2\n"
               for i, (_, _, err) in zip((1, 2), codes))


# ------------------------------------------------------------------ the same report, any split


def _outputs(capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str], split: list[str]) -> tuple[str, str]:
    md = tmp_path / f"{'_'.join(split).replace('/', '-') or 'serial'}.md"
    extra = ["--markdown", str(md)] if command[0] == "diff" else []
    code, out, _ = run(capsys, *command, *split, *extra)
    assert code in (0, 1)
    return out, md.read_text() if extra else ""


DIFF = ["diff", POLICY, PRE_FIX, "--corpus", INCIDENTS]
REPLAY = ["replay", INCIDENTS, "--machine", PRE_FIX]


@pytest.mark.parametrize("command", [DIFF, REPLAY], ids=["diff", "replay"])
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_reports_are_byte_identical_whatever_the_number_of_jobs(
        command: list[str], as_json: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cmd = command + (["--json"] if as_json else [])
    serial = _outputs(capsys, tmp_path, cmd, ["--jobs", "1"])
    assert _outputs(capsys, tmp_path, cmd, ["--jobs", "2"]) == serial
    assert _outputs(capsys, tmp_path, cmd, ["--jobs", "3"]) == serial


@pytest.mark.parametrize("command", [DIFF, REPLAY], ids=["diff", "replay"])
def test_the_union_of_the_shards_is_the_serial_report(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    def records(*split: str) -> list[dict[str, Any]]:
        code, out, _ = run(capsys, *command, "--json", *split)
        assert code in (0, 1)
        return list(json.loads(out)["cassettes"])

    serial = records("--jobs", "1")
    shards = [records("--shard", f"{i}/3", "--jobs", "2") for i in (1, 2, 3)]
    assert all(shards), "27 cassettes leave no shard of 3 empty"
    union = sorted((r for s in shards for r in s), key=lambda r: r["cassette"])
    assert union == serial
    assert [r["cassette"] for r in serial] == sorted(r["cassette"] for r in serial), "ordered by path"


def test_shard_reports_name_their_shard(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *DIFF, "--json", "--shard", "2/3")
    assert code == 0 and json.loads(out)["shard"] == "2/3"


def test_the_cli_starts_without_importing_ray_or_the_corpus_runner() -> None:
    code = ("import sys; from loopspec.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('ray', 'loopspec.replay.corpus', 'loopspec.replay.gate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_jobs_must_be_a_number(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "replay", INCIDENTS, "--machine", POLICY, "--jobs", "many")
    assert code == 2 and "argument --jobs/-j: takes a number of processes, 1 or more, not 'many'" in err


def test_backend_ray_without_ray_is_a_usage_error_that_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    code, out, err = run(capsys, *DIFF, "--backend", "ray", "--fail-on", "regression")
    assert (code, out) == (2, "")
    assert err == "loopspec diff: --backend ray needs Ray: pip install 'loopspec[ray]'\n"


def test_store_trace_on_a_pool_writes_every_cassette(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "c"
    shutil.copytree(FIXTURES / "incidents", corpus)
    shutil.copytree(FIXTURES / "streams", tmp_path / "streams")
    monkeypatch.setenv("LOOPSPEC_FILES_ROOT", str(tmp_path))  # the streams sit beside the corpus
    code, _, err = run(capsys, "replay", str(corpus), "--machine", PRE_FIX, "--store-trace", "--jobs", "2")
    assert code == 1 and err == f"stored the decision trace under {PRE_FIX} in 27 cassette(s)\n"
    assert all("\ntrace:" in f.read_text() for f in corpus.glob("*.cassette.yaml"))
    # Under the policy that wrote them, every stored trace is followed step for step.
    code, out, _ = run(capsys, "replay", str(corpus), "--machine", PRE_FIX, "--json", "--jobs", "2")
    assert all(r["trace_divergence"] is None for r in json.loads(out)["cassettes"])
    code, out, _ = run(capsys, "replay", str(corpus), "--machine", POLICY, "--json", "--jobs", "2")
    assert sum(r["trace_divergence"] is not None for r in json.loads(out)["cassettes"]) == 21
