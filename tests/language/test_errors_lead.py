"""Errors lead with their cause: a declaration's own error comes before the errors it causes, and a
counterexample never shows an attribute value that the next step contradicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopspec import validate_text
from loopspec.cli import main as cli_main

from _paths import DEFAULT_POLICY, MACHINES

DEFAULT_TEXT = DEFAULT_POLICY.read_text()


def _diags(text: str) -> list:
    _policy, diags = validate_text(text, "p.yaml")
    return diags


def _misspell_kind(text: str, state: str, kind: str, wrong: str) -> str:
    """``text`` with the kind of one state (declared as ``  state:`` then ``    kind: kind``) changed."""
    head = f"  {state}:\n    kind: {kind}\n"
    assert head in text, f"{state} is not a {kind} state in the default policy any more"
    return text.replace(head, f"  {state}:\n    kind: {wrong}\n", 1)


def test_misspelt_kind_comes_before_the_unknown_state_it_causes() -> None:
    # continue_generic is referenced by read_stream, which comes earlier in the file
    diags = _diags(_misspell_kind(DEFAULT_TEXT, "continue_generic", "continue", "continuation"))
    first = diags[0]
    assert first.message == "unknown state kind 'continuation'" and first.hint == "did you mean 'continue'?"
    later = [d for d in diags[1:] if d.message == "unknown state 'continue_generic'"]
    assert later, [d.format() for d in diags]
    assert all(d.pos is not None and first.pos is not None and d.pos.line < first.pos.line for d in later)
    for d in later:  # the consequence points back at its cause instead of guessing a neighbour
        assert "left out because its declaration is invalid" in d.hint
        assert "did you mean" not in d.hint


def test_invalid_counter_declaration_comes_before_its_uses() -> None:
    text = DEFAULT_TEXT.replace("  continuations: {max: 3,", "  continuations: {max: 0,", 1)
    diags = _diags(text)
    assert diags[0].path == "counters.continuations.max"
    uses = [d for d in diags if d.message == "unknown counter 'continuations'"]
    assert uses and all("left out because its declaration is invalid" in d.hint for d in uses)


def test_badly_named_template_comes_first_even_when_used_earlier() -> None:
    text = """\
loopspec: 1
initial: ask
backstops:
  model_calls: {max: 5, exhausted: done}
  tool_batches: {max: 3, exhausted: done}
states:
  ask:
    kind: call
    on: {opened: read}
  read:
    kind: stream
    on: {text: done, length: more}
  more:
    kind: continue
    prompt: Go_on
    on: {done: ask}
  done: {kind: halt, outcome: completed, message: "{response}"}
templates:
  Go_on: Continue.
"""
    diags = _diags(text)
    assert [d.code for d in diags] == ["LS203", "LS301"]
    assert diags[0].path == "templates.Go_on"
    assert "line 19" in diags[1].hint


def test_errors_of_the_same_rank_are_in_file_order() -> None:
    text = DEFAULT_TEXT.replace("to: continue_chunking", "to: continue_chunkin", 1)
    text = text.replace("  tool_batches:\n    max: 60", "  tool_batches:\n    max: 60\n    exhausted_: x", 1)
    diags = [d for d in _diags(text) if d.severity == "error"]
    lines = [d.pos.line for d in diags if d.pos is not None]
    assert len(lines) >= 2 and lines == sorted(lines)


def test_warnings_come_after_errors() -> None:
    text = DEFAULT_TEXT.replace("to: continue_chunking", "to: continue_chunkin", 1)
    text = text.replace('message: "{response}"', 'message: ""', 1)
    diags = _diags(text)
    severities = [d.severity for d in diags]
    assert "warning" in severities and "error" in severities
    assert severities == sorted(severities)  # "error" < "warning"


def test_cli_prints_the_cause_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "typo.yaml"
    f.write_text(_misspell_kind(DEFAULT_TEXT, "continue_generic", "continue", "continuation"))
    assert cli_main(["validate", str(f)]) == 1
    err = capsys.readouterr().err
    assert err.index("unknown state kind 'continuation'") < err.index("unknown state 'continue_generic'")


@pytest.mark.parametrize("path", sorted(MACHINES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_policies_still_have_no_diagnostics_but_warnings(path: Path) -> None:
    assert all(d.severity == "warning" for d in _diags(path.read_text()))


# -- counterexamples ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hermes_32012():
    from loopspec.verify import check_file

    return check_file(str(MACHINES / "hermes_pre_32012.yaml"), strict=True)


def _with_counterexample(result, steps):
    """``result`` with its stub_not_silent counterexample replaced by ``steps`` (and failing)."""
    import copy

    from loopspec.verify.explore import Counterexample
    from loopspec.verify.report import FAIL

    out = copy.deepcopy(result)
    prop = out.properties["stub_not_silent"]
    prop.status = FAIL
    prop.counterexample = Counterexample(steps)
    return out


def _cex_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()[:1].isdigit() and ". " in ln and " -> " in ln]


def test_stall_is_printed_as_the_stub_saw_it(hermes_32012) -> None:
    from loopspec.verify.explore import CexStep

    steps = [
        CexStep("call_model", "opened", {}, "read_stream", None),
        CexStep("read_stream", "stalled", {"chars": 0, "mid_tool_call": False}, "make_stub", None),
        CexStep("make_stub", "mid_tool_call", {"chars": 12, "cut_tools": ["write_file"]}, "halt_stalled_tool_call", None),
    ]
    text = _with_counterexample(hermes_32012, steps).format_text()
    lines = _cex_lines(text)
    assert "2. read_stream: stalled(chars=12, mid_tool_call=True) -> make_stub" in lines
    assert "3. make_stub: mid_tool_call(chars=12, cut_tools=['write_file']) -> halt_stalled_tool_call" in lines
    assert "mid_tool_call=False" not in text


def test_stall_before_text_is_printed_as_not_mid_tool_call(hermes_32012) -> None:
    from loopspec.verify.explore import CexStep

    steps = [
        CexStep("call_model", "opened", {}, "read_stream", None),
        CexStep("read_stream", "stalled", {"chars": 0, "mid_tool_call": True}, "make_stub", None),
        CexStep("make_stub", "mid_text", {"chars": 0}, "halt_stalled_tool_call", None),
    ]
    lines = _cex_lines(_with_counterexample(hermes_32012, steps).format_text())
    assert "2. read_stream: stalled(mid_tool_call=False) -> make_stub" in lines


def test_a_stall_that_ends_the_path_keeps_its_own_attributes(hermes_32012) -> None:
    from loopspec.verify.explore import CexStep

    steps = [
        CexStep("call_model", "opened", {}, "read_stream", None),
        CexStep("read_stream", "stalled", {"chars": 0, "mid_tool_call": True}, "make_stub", None),
    ]
    lines = _cex_lines(_with_counterexample(hermes_32012, steps).format_text())
    assert "2. read_stream: stalled(mid_tool_call=True) -> make_stub" in lines


@pytest.mark.parametrize("name", sorted(p.stem for p in MACHINES.glob("*.yaml") if p.stem != "default"))
def test_no_printed_counterexample_contradicts_itself(name: str) -> None:
    from loopspec.verify import check_file

    lines = _cex_lines(check_file(str(MACHINES / f"{name}.yaml"), strict=True).format_text())
    for a, b in zip(lines, lines[1:]):
        if ": stalled" in a and (": mid_tool_call" in b or ": mid_text" in b):
            assert ("mid_tool_call=True" in a) == (": mid_tool_call" in b), (a, b)
