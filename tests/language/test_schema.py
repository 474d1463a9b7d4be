"""The JSON Schemas behind `loopspec schema` and `loopspec cassette-schema`, checked with the
`jsonschema` package: every shipped policy passes, everything the validator rejects (where a schema
can say so) the schema rejects too, errors land on the key that is wrong, and the alphabet is
described for hover."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

jsonschema = pytest.importorskip("jsonschema")

from loopspec import validate_text  # noqa: E402
from loopspec.cli import main as cli_main  # noqa: E402
from loopspec.language.alphabet import CALL_FLAGS, FLAG_SHORTHANDS, KINDS, OUTCOMES  # noqa: E402
from loopspec.language.schema import json_schema  # noqa: E402
from loopspec.language.yamlsource import load_yaml_text  # noqa: E402

from _paths import FIXTURES, MACHINES, ROOT  # noqa: E402

SCHEMA = json_schema()
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)

# A valid policy that uses most of the language, so that every mutation below has something to hit.
BASE = """\
loopspec: 1
name: base
doc: a policy for schema tests
initial: ask
settings: {stall_timeout: 30, request_timeout: 60, max_tokens: 1000, fallback_model: other}
backoff:
  transient: [1, 5]
backstops:
  model_calls: {max: 20, exhausted: halt_backstop, warn_at: 15, warning: near_limit}
  tool_batches: {max: 10, exhausted: no_tools}
guardrails:
  doom_loop: {threshold: 3, verdict: halt, max_period: 5}
counters:
  retries: {max: 2, doc: retries}
  continuations: {max: 3}
flags:
  wrapping_up: {doc: last call}
  probed:
templates:
  near_limit: "Only {max_model_calls} calls in all; {model_calls} made."
  more: "Continue where you stopped {{literally}}."
states:
  ask:
    kind: call
    on:
      opened: read
      transient:
        - when: {any: [{attr: status, in: [500, 503]}, {attr: message, contains: overloaded}]}
          do: [{backoff: transient, attempt: retries}, {increment: retries}]
          to: ask
        - halt_error
      rate_limit: {do: [{increment: retries, by: 1}], to: ask}
      cancelled: halt_error
  read:
    kind: stream
    on:
      text: halt_done
      tool_calls:
        - when: {flag: tools_disabled, is: false}
          to: run
          bounded_by: tool_batches
        - halt_done
      length:
        - when: {all: [{attr: has_tool_calls}, {not: {counter: continuations, ge: max}}]}
          do: [drop_tool_calls, {increment: continuations}]
          to: go_on
        - when: {attr: chars, gt: 10}
          to: halt_done
        - halt_done
      stalled: stub
      broken:
        - when: {attr: cause, eq: overflow}
          do: [compact]
          to: ask
        - halt_error
  stub:
    kind: stub
    on:
      mid_text: go_on
      mid_tool_call: {do: [{set: probed}], to: go_on}
  go_on:
    kind: continue
    prompt: more
    on: {done: ask}
  run:
    kind: tool_exec
    on:
      ok: ask
      failed: ask
      doom_loop:
        - when: {attr: verdict, eq: halt}
          to: halt_done
        - do: [{append: more}]
          to: ask
  no_tools:
    kind: escalate
    apply: [disable_tools, {set: wrapping_up}, {append: more}]
    on: {done: ask, failed: halt_error}
  halt_done: {kind: halt, outcome: completed, message: "{response}"}
  halt_error: {kind: halt, outcome: provider_error, message: "The provider failed: {message}"}
  halt_backstop: {kind: halt, outcome: backstop, message: "Stopped after {model_calls} calls."}
"""

# (id, text to replace in BASE, replacement, the document path the schema must flag, as a prefix)
INVALID: list[tuple[str, str, str, str]] = [
    ("version", "loopspec: 1", "loopspec: 2", "loopspec"),
    ("top_key_typo", "doc: a policy", "dco: a policy", ""),
    ("stall_timeout_negative", "stall_timeout: 30", "stall_timeout: -1", "settings/stall_timeout"),
    ("stall_timeout_zero", "stall_timeout: 30", "stall_timeout: 0", "settings/stall_timeout"),
    ("max_tokens_float", "max_tokens: 1000", "max_tokens: 1.5", "settings/max_tokens"),
    ("setting_typo", "request_timeout: 60", "request_timout: 60", "settings"),
    ("backoff_negative", "[1, 5]", "[-1, 5]", "backoff/transient/0"),
    ("backoff_empty", "[1, 5]", "[]", "backoff/transient"),
    ("backoff_name", "  transient: [1, 5]", "  Transient: [1, 5]", "backoff"),
    ("counter_name", "  retries: {max: 2, doc: retries}", "  Retries: {max: 2}", "counters"),
    ("counter_max_zero", "continuations: {max: 3}", "continuations: {max: 0}", "counters/continuations/max"),
    ("counter_max_huge", "continuations: {max: 3}", "continuations: {max: 10001}", "counters/continuations/max"),
    ("counter_max_string", "continuations: {max: 3}", "continuations: {max: three}", "counters/continuations/max"),
    ("counter_is_backstop", "continuations: {max: 3}", "model_calls: {max: 3}", "counters"),
    ("flag_builtin", "  probed:\n", "  tools_disabled:\n", "flags"),
    ("flag_name", "  probed:\n", "  Probed:\n", "flags"),
    ("template_name", "  more: \"Continue", "  More: \"Continue", "templates"),
    ("template_format_spec", "{model_calls} made", "{model_calls!r} made", "templates/near_limit"),
    ("template_unknown_variable", "{model_calls} made", "{modelcalls} made", "templates/near_limit"),
    ("template_unbalanced", "{model_calls} made", "{model_calls made", "templates/near_limit"),
    ("halt_message_variable", 'message: "{response}"', 'message: "{answer}"', "states/halt_done/message"),
    ("backstop_max_zero", "model_calls: {max: 20,", "model_calls: {max: 0,", "backstops/model_calls/max"),
    ("backstop_missing", "  tool_batches: {max: 10, exhausted: no_tools}\n", "", "backstops"),
    ("backstop_no_exhausted", "tool_batches: {max: 10, exhausted: no_tools}", "tool_batches: {max: 10}", "backstops/tool_batches"),
    ("backstop_wrap_up_on_tools", "exhausted: no_tools}", "exhausted: no_tools, wrap_up: no_tools}", "backstops/tool_batches"),
    ("warn_at_without_warning", "warn_at: 15, warning: near_limit", "warn_at: 15", "backstops/model_calls"),
    ("guardrail_unknown", "  doom_loop: {threshold", "  doom: {threshold", "guardrails"),
    ("guardrail_verdict", "verdict: halt, max_period", "verdict: stop, max_period", "guardrails/doom_loop/verdict"),
    ("guardrail_threshold", "threshold: 3", "threshold: 0", "guardrails/doom_loop/threshold"),
    ("guardrail_period", "max_period: 5", "max_period: 6", "guardrails/doom_loop/max_period"),
    ("state_name", "  go_on:\n    kind: continue", "  go-on:\n    kind: continue", "states"),
    ("kind_typo", "kind: continue", "kind: continuation", "states/go_on/kind"),
    ("kind_missing", "  go_on:\n    kind: continue\n", "  go_on:\n", "states/go_on"),
    ("state_key_typo", "    prompt: more", "    promt: more", "states/go_on"),
    ("continue_without_prompt", "    prompt: more\n", "", "states/go_on"),
    ("halt_outcome", "outcome: completed", "outcome: complete", "states/halt_done/outcome"),
    ("halt_without_message", 'outcome: completed, message: "{response}"', "outcome: completed", "states/halt_done"),
    ("halt_with_on", 'outcome: completed, message: "{response}"}', 'outcome: completed, message: "{response}", on: {}}', "states/halt_done"),
    ("event_of_other_kind", "      opened: read", "      text: read", "states/ask/on"),
    ("event_typo", "      cancelled: halt_error", "      canceled: halt_error", "states/ask/on"),
    ("transition_without_to", "{do: [{increment: retries, by: 1}], to: ask}", "{do: [{increment: retries, by: 1}]}", "states/ask/on/rate_limit"),
    ("transition_key_typo", "          bounded_by: tool_batches", "          bound_by: tool_batches", "states/read/on/tool_calls/0"),
    ("transition_target_name", "      text: halt_done", "      text: Halt-done", "states/read/on/text"),
    ("transition_wrong_type", "      text: halt_done", "      text: 5", "states/read/on/text"),
    ("bounded_by_unknown", "bounded_by: tool_batches", "bounded_by: turns", "states/read/on/tool_calls/0/bounded_by"),
    ("attr_not_of_event", "{attr: has_tool_calls}", "{attr: tools}", "states/read/on/length/0/when"),
    ("attr_typo", "{attr: status, in: [500, 503]}", "{attr: stauts, in: [500, 503]}", "states/ask/on/transient/0/when"),
    ("attr_on_event_without_attrs", "      opened: read", "      opened: {when: {attr: status}, to: read}", "states/ask/on/opened"),
    ("attr_value_type", "{attr: status, in: [500, 503]}", "{attr: status, in: [five]}", "states/ask/on/transient/0/when"),
    ("attr_closed_value", "{attr: cause, eq: overflow}", "{attr: cause, eq: overflw}", "states/read/on/broken/0/when"),
    ("attr_order_on_bool", "{attr: has_tool_calls}", "{attr: has_tool_calls, lt: 1}", "states/read/on/length/0/when"),
    ("attr_contains_on_int", "{attr: chars, gt: 10}", "{attr: chars, contains: x}", "states/read/on/length/1/when"),
    ("attr_two_comparisons", "{attr: chars, gt: 10}", "{attr: chars, gt: 10, lt: 20}", "states/read/on/length/1/when"),
    ("guard_two_forms", "{flag: tools_disabled, is: false}", "{flag: tools_disabled, counter: retries, lt: 1}", "states/read/on/tool_calls/0/when"),
    ("guard_no_form", "{flag: tools_disabled, is: false}", "{is: false}", "states/read/on/tool_calls/0/when"),
    ("guard_empty_all", "{all: [{attr: has_tool_calls}, {not: {counter: continuations, ge: max}}]}", "{all: []}", "states/read/on/length/0/when"),
    ("counter_guard_without_op", "{counter: continuations, ge: max}", "{counter: continuations}", "states/read/on/length/0/when"),
    ("counter_guard_value", "{counter: continuations, ge: max}", "{counter: continuations, ge: most}", "states/read/on/length/0/when"),
    ("flag_guard_is", "{flag: tools_disabled, is: false}", "{flag: tools_disabled, is: no way}", "states/read/on/tool_calls/0/when"),
    ("action_typo", "do: [compact]", "do: [compcat]", "states/read/on/broken/0/do/0"),
    ("action_key_typo", "{increment: retries, by: 1}", "{incremnt: retries}", "states/ask/on/rate_limit/do/0"),
    ("action_by_zero", "{increment: retries, by: 1}", "{increment: retries, by: 0}", "states/ask/on/rate_limit/do/0"),
    ("increment_backstop", "{increment: retries, by: 1}", "{increment: model_calls}", "states/ask/on/rate_limit/do/0"),
    ("reset_backstop", "{increment: retries, by: 1}", "{reset: tool_batches}", "states/ask/on/rate_limit/do/0"),
    ("action_without_argument", "        - do: [{append: more}]", "        - do: [append]", "states/run/on/doom_loop/1/do/0"),
    ("action_extra_key", "{backoff: transient, attempt: retries}", "{backoff: transient, attempt: retries, by: 2}", "states/ask/on/transient/0/do/0"),
    ("apply_increments", "apply: [disable_tools,", "apply: [{increment: retries}, disable_tools,", "states/no_tools/apply/0"),
    ("apply_missing", "    apply: [disable_tools, {set: wrapping_up}, {append: more}]\n", "", "states/no_tools"),
    ("states_missing_initial", "initial: ask\n", "", ""),
]


# Forms the validator accepts that BASE does not use: the schema must accept them too.
VALID: list[tuple[str, str, str]] = [
    ("bare_action_as_mapping", "do: [compact]", "do: [{compact: true}, {drop_tool_calls: null}]"),
    ("every_shorthand", "apply: [disable_tools,", "apply: [" + ", ".join(FLAG_SHORTHANDS) + ","),
    ("nudge_refuse_and_clear", "{set: probed}", "{nudge: more}, {refuse_tools: more}, {clear: probed}, {reset: retries}"),
    ("backoff_without_attempt", "{backoff: transient, attempt: retries}", "{backoff: transient}"),
    ("counter_guard_on_backstop", "{flag: tools_disabled, is: false}", "{counter: model_calls, lt: 15}"),
    ("flag_guard_call_flag", "{flag: tools_disabled, is: false}", "{flag: wrap_up_entered}"),
    ("list_attr_eq_and_contains", "{attr: has_tool_calls}", "{any: [{attr: dropped_tools, contains: x}, {attr: dropped_tools, eq: [a]}]}"),
    ("str_attr_order", "{attr: message, contains: overloaded}", "{attr: message, ge: m}"),
    ("float_attr", "{attr: message, contains: overloaded}", "{attr: retry_after, gt: 0.5}"),
    ("null_setting_and_flag", "max_tokens: 1000", "max_tokens: null"),
    ("empty_on", "    on: {done: ask}", "    on: {}"),
    ("increment_by", "{increment: retries, by: 1}", "{increment: retries, by: 2}"),
    ("wrap_up", "exhausted: halt_backstop,", "exhausted: halt_backstop, wrap_up: no_tools,"),
    ("verdict_allow", "verdict: halt, max_period", "verdict: allow, max_period"),
    ("template_literal_braces", '"{response}"', '"{{{response}}} {{ }}"'),
    ("empty_halt_message", 'message: "{response}"', 'message: ""'),
]


@pytest.mark.parametrize("case", VALID, ids=[c[0] for c in VALID])
def test_what_the_validator_accepts_the_schema_accepts(case: tuple[str, str, str]) -> None:
    name, old, new = case
    assert BASE.count(old) == 1, f"{name}: {old!r} must occur once in BASE"
    text = BASE.replace(old, new)
    policy, diags = validate_text(text, "t.yaml")
    assert policy is not None, (name, [d.format() for d in diags])
    errors = _errors(text)
    assert not errors, (name, [f"{_where(e)}: {e.message}" for e in errors])


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


def _errors(text: str) -> list[Any]:
    return list(VALIDATOR.iter_errors(_plain(load_yaml_text(text, "t.yaml"))))


def _where(err: Any) -> str:
    return "/".join(str(p) for p in err.absolute_path)


def test_the_schema_is_a_valid_draft_07_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_the_base_policy_is_valid_for_both() -> None:
    policy, diags = validate_text(BASE, "base.yaml")
    assert policy is not None, [d.format() for d in diags]
    assert _errors(BASE) == []


@pytest.mark.parametrize("path", sorted(MACHINES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_policies_pass_the_schema(path: Path) -> None:
    errors = _errors(path.read_text())
    assert not errors, [f"{_where(e)}: {e.message}" for e in errors[:5]]


def test_docs_example_policy_passes_the_schema() -> None:
    text = (ROOT / "docs" / "language.md").read_text()
    block = text.split("## A complete small policy", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert validate_text(block, "minimal.yaml")[0] is not None
    assert _errors(block) == []


@pytest.mark.parametrize("case", INVALID, ids=[c[0] for c in INVALID])
def test_what_the_validator_rejects_the_schema_rejects(case: tuple[str, str, str, str]) -> None:
    name, old, new, where = case
    assert BASE.count(old) == 1, f"{name}: {old!r} must occur once in BASE"
    text = BASE.replace(old, new)
    policy, diags = validate_text(text, "t.yaml")
    assert policy is None and any(d.severity == "error" for d in diags), f"{name}: the validator accepts it"
    errors = _errors(text)
    assert errors, f"{name}: the schema accepts what the validator rejects: {[d.format() for d in diags]}"
    # keyed on the right thing: some error lands at (or under) the offending place, never only on
    # a whole enclosing state
    assert any(_where(e).startswith(where) for e in errors), (name, [f"{_where(e)}: {e.message}" for e in errors])


def test_a_misspelt_key_is_flagged_on_its_state_not_as_no_kind_matching() -> None:
    errors = _errors(BASE.replace("    prompt: more", "    promt: more"))
    messages = [e.message for e in errors]
    assert any("'promt'" in m for m in messages), messages
    assert not any("is not valid under any of the given schemas" in m for m in messages), messages


def test_a_misspelt_kind_is_flagged_on_kind_only() -> None:
    errors = _errors(BASE.replace("kind: continue", "kind: continuation"))
    assert [_where(e) for e in errors] == ["states/go_on/kind"]
    assert "'continuation' is not one of" in errors[0].message


def _descriptions(node: Any, out: list[str]) -> list[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("description", "enumDescriptions") and isinstance(v, (str, list)):
                out.extend([v] if isinstance(v, str) else v)
            _descriptions(v, out)
    elif isinstance(node, list):
        for v in node:
            _descriptions(v, out)
    return out


def test_the_alphabet_is_described_for_hover() -> None:
    text = "\n".join(_descriptions(SCHEMA, []))
    kind_enum = SCHEMA["definitions"]["state"]["properties"]["kind"]
    assert kind_enum["enum"] == list(KINDS) and len(kind_enum["enumDescriptions"]) == len(KINDS)
    for spec in KINDS.values():
        assert spec.doc in text
        for e in spec.events:
            assert e.doc in text, e.name
            for a in e.attrs:
                assert a.doc in text, a.name
    for doc in OUTCOMES.values():
        assert doc in text
    for doc in CALL_FLAGS.values():
        assert doc in text
    action = SCHEMA["definitions"]["action"]["allOf"][0]["then"]
    assert set(FLAG_SHORTHANDS) <= set(action["enum"]) and all(action["enumDescriptions"])
    # each state kind's schema and each event under `on` carries its own description
    for k, spec in KINDS.items():
        state = SCHEMA["definitions"][f"state.{k}"]
        assert state["description"]
        for e in spec.events:
            assert state["properties"]["on"]["properties"][e.name]["description"].startswith(e.doc)


def test_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(SCHEMA))


def test_validate_does_not_import_jsonschema() -> None:
    code = (
        "import sys; from loopspec.cli import main; rc = main(['validate', %r]);"
        "sys.exit(3 if 'jsonschema' in sys.modules or 'loopspec.language.schema' in sys.modules else rc)"
        % str(MACHINES / "default.yaml")
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- cassettes -------------------------------------------------------------------------------------


def test_incident_cassettes_pass_the_cassette_schema() -> None:
    from loopspec.replay.cassette_schema import cassette_json_schema

    schema = cassette_json_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    v = jsonschema.Draft7Validator(schema)
    for path in sorted((FIXTURES / "incidents").glob("*.cassette.yaml")):
        errors = list(v.iter_errors(_plain(load_yaml_text(path.read_text(), path.name))))
        assert not errors, (path.name, [f"{_where(e)}: {e.message}" for e in errors[:5]])


def test_cassette_schema_is_described_for_hover() -> None:
    from loopspec.replay.cassette import PROPERTIES
    from loopspec.replay.cassette_schema import cassette_json_schema

    schema = cassette_json_schema()
    missing = [k for k, v in schema["properties"].items() if k != "source" and not v.get("description")]
    missing += [f"expect.{k}" for k, v in schema["properties"]["expect"]["properties"].items() if not v.get("description")]
    assert not missing, missing
    props = schema["properties"]["expect"]["properties"]["properties"]["items"]
    assert props["enum"] == list(PROPERTIES) and all(d != p for p, d in zip(PROPERTIES, props["enumDescriptions"]))
    assert len(schema["properties"]["expect"]["properties"]["outcome"]["enumDescriptions"]) == len(OUTCOMES)
