"""The validator: every shipped policy is valid; every bad input gets file:line:col and a hint."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from loopspec import SpecError, load_policy, load_policy_text, validate_text
from loopspec.cli import main as cli_main

from _paths import DEFAULT_POLICY, MACHINES

DEFAULT_TEXT = DEFAULT_POLICY.read_text()

MINIMAL = """\
loopspec: 1
name: tiny
initial: ask
counters:
  retries: {max: 2}
templates:
  again: "Try again ({status})."
backstops:
  model_calls: {max: 5, exhausted: done}
  tool_batches: {max: 3, exhausted: done}
states:
  ask:
    kind: call
    on:
      opened: read
      rate_limit:
        - do: [{increment: retries}]
          to: ask
        - done
  read:
    kind: stream
    on:
      text: done
  done:
    kind: halt
    outcome: completed
    message: "{response}"
"""


def errors_of(text: str, name: str = "p.yaml") -> list[str]:
    policy, diags = validate_text(text, name)
    return [d.format() for d in diags if d.severity == "error"]


@pytest.mark.parametrize("path", sorted(MACHINES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_policy_validates(path: Path) -> None:
    policy = load_policy(str(path))
    assert policy.initial in policy.states
    assert len(policy.states) > 3


def test_minimal_policy_compiles_to_the_expected_model() -> None:
    p = load_policy_text(MINIMAL)
    assert p.counter_names == ("retries", "model_calls", "tool_batches")
    assert p.states["ask"].transitions["rate_limit"][0].target == "ask"
    assert p.states["done"].outcome == "completed"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("to: ask", "to: aks", r"p\.yaml:\d+:\d+: error: unknown state 'aks'.*\n.*did you mean 'ask'"),
        ("{increment: retries}", "{increment: retires}", r"unknown counter 'retires'.*\n.*did you mean 'retries'"),
        ("      text: done", "      txet: done", r"never receives event 'txet'.*\n.*did you mean 'text'"),
        ("{increment: retries}", "{incremnt: retries}", r"unknown action 'incremnt'.*\n.*did you mean 'increment'"),
        ("({status})", "({stauts})", r"unknown template variable 'stauts'.*\n.*did you mean 'status'"),
        ("({status})", "({status.__class__})", r"template field '\{status.__class__\}' is not allowed"),
        ("({status})", "({status[0]})", r"template field '\{status\[0\]\}' is not allowed"),
        ("({status})", "({status!r})", r"is not allowed"),
        ("initial: ask", "initial: akk", r"initial state 'akk' is not defined"),
        ("kind: stream", "kind: steam", r"unknown state kind 'steam'.*\n.*did you mean 'stream'"),
        ("outcome: completed", "outcome: complete", r"known outcome.*\n.*did you mean 'completed'"),
        ("retries: {max: 2}", "retries: {max: 0}", r"max must be between 1 and"),
        ("retries: {max: 2}", "retries: {cap: 2}", r"unknown key 'cap'"),
        ("  tool_batches: {max: 3, exhausted: done}\n", "", r"missing backstop 'tool_batches'"),
        ("model_calls: {max: 5, exhausted: done}", "model_calls: {max: 5, exhausted: ask}", r"must be a halt state"),
    ],
)
def test_bad_policy_reports_location_and_hint(old: str, new: str, expected: str) -> None:
    assert old in MINIMAL
    errs = errors_of(MINIMAL.replace(old, new, 1))
    assert errs, "the mutation should be rejected"
    assert any(re.search(expected, e) for e in errs), errs


def test_attribute_guard_is_checked_against_the_event() -> None:
    text = MINIMAL.replace(
        "        - do: [{increment: retries}]",
        "        - when: {attr: stauts, eq: 429}\n          do: [{increment: retries}]",
    )
    (err,) = errors_of(text)
    assert "event 'rate_limit' has no attribute 'stauts'" in err
    assert "did you mean 'status'" in err


def test_every_error_is_reported_not_just_the_first() -> None:
    text = MINIMAL.replace("to: ask", "to: aks").replace("text: done", "text: dnoe")
    errs = errors_of(text)
    assert len(errs) == 2
    lines = sorted(int(e.split(":")[1]) for e in errs)
    assert lines[0] < lines[1]


def test_load_policy_raises_spec_error_with_all_diagnostics(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(MINIMAL.replace("to: ask", "to: aks"))
    with pytest.raises(SpecError) as info:
        load_policy(str(f))
    assert info.value.diagnostics[0].code == "LS301"
    assert info.value.diagnostics[0].pos is not None


def test_on_key_is_not_yaml11_boolean() -> None:
    """PyYAML's YAML 1.1 reads `on:` as True; the language must see the string 'on'."""
    p = load_policy_text(MINIMAL)
    assert "opened" in p.states["ask"].transitions


HOSTILE = {
    "empty.yaml": (b"", r"empty\.yaml:1:1: error: the file is empty"),
    "binary.yaml": (b"\x89PNG\r\n\x1a\n\x00\x00\x00", r"binary\.yaml: error: file is binary"),
    "latin1.yaml": (b"name: caf\xe9\n", r"latin1\.yaml:1:\d+: error: file is not valid UTF-8"),
    "list.yaml": (b"- a\n- b\n", r"list\.yaml:1:1: error: a policy must be a mapping at the top level"),
    "scalar.yaml": (b"hello\n", r"scalar\.yaml:1:1: error: a policy must be a mapping"),
    "syntax.yaml": (b"states: [a, b\n", r"syntax\.yaml:2:1: error: YAML syntax error"),
    "dupes.yaml": (b"name: a\nname: b\n", r"dupes\.yaml:2:1: error: duplicate key 'name'"),
    "tabs.yaml": (b"states:\n\tcall: {}\n", r"tabs\.yaml:2:1: error: YAML syntax error.*\n.*tabs"),
    "python_tag.yaml": (
        b"name: !!python/object/apply:os.system ['echo pwned']\n",
        r"python_tag\.yaml:1:7: error: tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed",
    ),
    "alias_bomb.yaml": (
        b"a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
        r"alias_bomb\.yaml:\d+:\d+: error: document expands to more than",
    ),
    "deep.yaml": (b"[" * 20000 + b"]" * 20000, r"deep\.yaml:1:\d+: error: nesting deeper than"),
    "deep_map.yaml": (b"".join(b"  " * i + b"k:\n" for i in range(2000)), r"deep_map\.yaml:\d+:\d+: error: nesting deeper"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_is_rejected_cleanly(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content, pattern = HOSTILE[name]
    f = tmp_path / name
    f.write_bytes(content)
    code = cli_main(["validate", str(f)])
    out = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in out.err + out.out
    assert re.search(pattern, out.err.replace(str(tmp_path) + "/", "")), out.err


def test_python_tag_is_never_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    f = tmp_path / "evil.yaml"
    f.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    policy, diags = __import__("loopspec").validate_file(str(f))
    assert policy is None and diags
    assert not marker.exists()


def test_missing_file_is_an_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["validate", "/nonexistent/policy.yaml"]) == 1
    assert "cannot read file" in capsys.readouterr().err


def test_cli_usage_errors_exit_2() -> None:
    assert cli_main([]) == 2
    assert cli_main(["validate"]) == 2
    assert cli_main(["frobnicate"]) == 2


def test_validate_json_lists_every_diagnostic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    f = tmp_path / "bad.yaml"
    f.write_text(MINIMAL.replace("to: ask", "to: aks").replace("      text: done", "      txet: done"))
    assert cli_main(["validate", "--json", str(f), str(DEFAULT_POLICY)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is False
    bad, good = data["files"]
    assert good["valid"] is True
    codes = sorted(d["code"] for d in bad["diagnostics"])
    assert codes == ["LS301", "LS304"]
    assert all(d["line"] and d["col"] and d["hint"] for d in bad["diagnostics"])


def test_validate_does_not_import_litellm() -> None:
    code = (
        "import sys; from loopspec.cli import main; rc = main(['validate', %r]);"
        "sys.exit(3 if 'litellm' in sys.modules else rc)" % str(DEFAULT_POLICY)
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_schema_and_graph_commands(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert cli_main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert set(schema["definitions"]["state.call"]["properties"]) >= {"kind", "on"}
    assert cli_main(["graph", str(DEFAULT_POLICY)]) == 0
    mermaid = capsys.readouterr().out
    assert mermaid.startswith("flowchart TD")
    assert '-.->|"tool_calls' in mermaid  # the declared backstop loop is drawn dashed
    assert cli_main(["graph", "--format", "dot", str(DEFAULT_POLICY)]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith('digraph "default"') and '"call_model" -> "read_stream"' in dot


def test_positions_made_on_demand_are_the_parsers_own() -> None:
    """Positions are built from the parser's marks only when a diagnostic asks: every way of asking
    (key, value, item, slice, iteration, get with a default) gives the 1-based line and column."""
    from loopspec.language.diagnostics import Position
    from loopspec.language.yamlsource import load_yaml_text

    doc = load_yaml_text("a: 1\nlist:\n  - x\n  - {k: v}\n", "f.yaml")
    assert doc.pos == Position(1, 1) and doc.key_pos["list"] == Position(2, 1) and doc.pos_of("a") == Position(1, 4)
    assert doc.key_pos.get("missing", "dflt") == "dflt" and doc.value_pos.get("a") == Position(1, 4)
    items = doc["list"]
    assert items.pos_of(1) == Position(4, 5) and items.pos_of(9) == items.pos == Position(3, 3)
    assert list(items.item_pos) == [Position(3, 5), Position(4, 5)] == items.item_pos[0:2]
    assert items[1].key_pos["k"] == Position(4, 6)



STUB = """\
  cut:
    kind: stub
    on: {mid_text: MID, mid_tool_call: done}
"""


def warnings_of(text: str) -> list[str]:
    policy, diags = validate_text(text, "p.yaml")
    assert policy is not None, [d.format() for d in diags]
    return [f"{d.code} {d.pos.line}:{d.pos.col} {d.path}" for d in diags if d.severity == "warning" and d.pos]


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        # a stub carrying on by reading the stream again: the form that crashed a turn
        (lambda t: t.replace("      text: done\n", "      text: done\n      length: cut\n") + STUB.replace("MID", "read"),
         "LS402 31:20 states.cut.on.mid_text"),
        # the same as a guarded list item
        (lambda t: t.replace("      text: done\n", "      text: done\n      length: cut\n") + STUB.replace("MID", "[{when: {counter: retries, lt: max}, to: read}, done]"),
         "LS402 31:61 states.cut.on.mid_text[0].to"),
        # a stream state sending the turn back to itself
        (lambda t: t.replace("      text: done\n", "      text: done\n      empty: {do: [{increment: retries}], to: read}\n"),
         "LS402 24:47 states.read.on.empty.to"),
        # a call state's other events
        (lambda t: t.replace("        - done\n", "        - read\n"), "LS402 19:11 states.ask.on.rate_limit[1]"),
        # a turn that starts reading
        (lambda t: t.replace("initial: ask", "initial: read"), "LS402 3:10 initial"),
        # a refused tool batch sent to the stream
        (lambda t: t.replace("tool_batches: {max: 3, exhausted: done}", "tool_batches: {max: 3, exhausted: read}"),
         "LS402 10:37 backstops.tool_batches.exhausted"),
    ],
)
def test_a_stream_state_entered_other_than_by_a_calls_opened_is_warned_about(edit: object, where: str) -> None:
    """Only a call state's ``opened`` leaves a response open for a stream state to read; any other
    way into one is legal (the state hears ``broken``) but warned about, LS402 at the target."""
    assert warnings_of(edit(MINIMAL)) == [where]  # type: ignore[operator]


def test_a_calls_opened_may_enter_any_stream_state_without_a_warning() -> None:
    """Two stream states, each entered from its own call's ``opened``: nothing to say."""
    text = MINIMAL.replace("      text: done\n", "      text: ask2\n") + (
        "  ask2:\n    kind: call\n    on: {opened: read2, rate_limit: done}\n"
        "  read2:\n    kind: stream\n    on: {text: done}\n")
    assert warnings_of(text) == []


def test_a_wrap_up_never_names_a_stream_state() -> None:
    """``wrap_up`` prepares the last call: a stream state there is LS303, like a call or a halt."""
    wrap = MINIMAL.replace("model_calls: {max: 5, exhausted: done}", "model_calls: {max: 5, exhausted: done, wrap_up: read}")
    _policy, diags = validate_text(wrap, "p.yaml")
    assert [(d.code, d.path) for d in diags] == [("LS303", "backstops.model_calls.wrap_up")]
