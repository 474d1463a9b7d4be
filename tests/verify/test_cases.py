"""Event cases (loopspec.verify.cases): every truth combination a concrete event can realise is a
case with a witness that really realises it, and the checker no longer drops the edges that sampling
guard constants used to miss.

- per atom form: each realisable truth vector gets a witness, checked with the real AttrTest.evaluate;
- a Hypothesis property: the truth vector of any concrete value, drawn from a domain richer than the
  guard constants (strings built around the constants, numbers between them, lists mixing them,
  absent), is realised by the witness the theory returns;
- a Hypothesis property at the step level: for random guards over attributes, counters and flags,
  every concrete step's outcome is among the cases for its configuration and among the abstract
  cases of its abstract node;
- end-to-end: each known failure of the sampling scheme, as a small policy, now fails ``halts``
  (or shows the larger bound), and a guard with many constants gets a verdict.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import yaml
from hypothesis import given, note, settings
from hypothesis import strategies as st

from loopspec import load_policy_text
from loopspec.language.alphabet import KINDS, Attr, Event, judge_wait
from loopspec.language.model import AttrTest, Config, CounterCmp, Settings
from loopspec.verify import cases as cases_mod
from loopspec.verify import check_policy
from loopspec.verify.abstract_graph import monitor_signature
from loopspec.verify.abstraction import build_analysis, event_cases
from loopspec.verify.cases import ABSENT, SAT, UNKNOWN, UNSAT, attr_witness, case_steps, counter_witness

from test_check import CALL, HALTS, NUDGE_LOOP as LOOP, TOOLS, policy, stream


def holds(atom: AttrTest, value: Any) -> bool:
    """The real evaluate, on an event that carries ``value`` (or omits the attribute)."""
    attrs = {} if value is ABSENT else {atom.attr: value}
    return atom.evaluate(None, Config("", (), frozenset()), Event("e", attrs))  # type: ignore[arg-type]


def vectors(atoms: list[AttrTest]) -> list[tuple[bool, ...]]:
    return list(itertools.product((True, False), repeat=len(atoms)))


def check_all_vectors(attr: Attr, atoms: list[AttrTest]) -> dict[tuple[bool, ...], Any]:
    """Ask the theory for every truth vector; every SAT answer must really realise its vector."""
    out: dict[tuple[bool, ...], Any] = {}
    for vec in vectors(atoms):
        status, value = attr_witness(attr, list(zip(atoms, vec)))
        assert status in (SAT, UNSAT), (vec, status)
        if status == SAT:
            assert tuple(holds(a, value) for a in atoms) == vec, (vec, value)
            out[vec] = value
    return out


# --------------------------------------------------------------------------- per atom form

MESSAGE = Attr("message", "str", "")
RETRY = Attr("retry_after", "float", "")
STATUS = Attr("status", "int", "")
TOOLS_ATTR = Attr("cut_tools", "list", "")
FLAG = Attr("has_tool_calls", "bool", "")
CAUSE = Attr("cause", "str", "", values=("overflow", "disconnect", "provider_error"))


def test_two_contains_on_one_string_hold_together() -> None:
    atoms = [AttrTest("message", "contains", "quota"), AttrTest("message", "contains", "retry")]
    got = check_all_vectors(MESSAGE, atoms)
    assert set(got) == set(vectors(atoms))  # all four combinations are realisable
    assert "quota" in got[(True, True)] and "retry" in got[(True, True)]


def test_a_needle_inside_a_required_needle_cannot_be_avoided() -> None:
    atoms = [AttrTest("message", "contains", "quota"), AttrTest("message", "contains", "quo")]
    got = check_all_vectors(MESSAGE, atoms)
    assert (True, False) not in got and (True, True) in got and (False, True) in got


def test_strings_strictly_between_two_constants() -> None:
    atoms = [AttrTest("message", "gt", "b"), AttrTest("message", "lt", "ba")]
    got = check_all_vectors(MESSAGE, atoms)
    assert (True, True) in got and "b" < got[(True, True)] < "ba"
    # nothing lies strictly between "b" and "b\0"
    tight = [AttrTest("message", "gt", "b"), AttrTest("message", "lt", "b\x00")]
    assert (True, True) not in check_all_vectors(MESSAGE, tight)


def test_strings_between_bounds_with_needles_and_exclusions() -> None:
    atoms = [
        AttrTest("message", "ge", "quota"),
        AttrTest("message", "lt", "quotb"),
        AttrTest("message", "contains", "retry"),
        AttrTest("message", "contains", "quota"),
        AttrTest("message", "ne", "quota"),
        AttrTest("message", "eq", "quotaretry"),
    ]
    got = check_all_vectors(MESSAGE, atoms)
    v = got[(True, True, True, True, True, False)]
    assert v.startswith("quota") and "retry" in v and v != "quotaretry"
    assert got[(True, True, True, True, True, True)] == "quotaretry"


def test_empty_absent_and_equal_strings() -> None:
    atoms = [AttrTest("message", "truthy"), AttrTest("message", "eq", ""), AttrTest("message", "in", ("a", "b"))]
    got = check_all_vectors(MESSAGE, atoms)
    assert got[(False, False, False)] is ABSENT  # only an absent attribute is falsy without being ""
    assert got[(False, True, False)] == ""
    assert got[(True, False, True)] in ("a", "b")


def test_list_constant_is_matched_as_a_list() -> None:
    atoms = [AttrTest("cut_tools", "eq", ["write_file"])]
    got = check_all_vectors(TOOLS_ATTR, atoms)
    assert got[(True,)] == ["write_file"]


def test_lists_with_several_items_and_membership() -> None:
    atoms = [
        AttrTest("cut_tools", "contains", "a"),
        AttrTest("cut_tools", "contains", "b"),
        AttrTest("cut_tools", "truthy"),
        AttrTest("cut_tools", "ne", ["a", "b"]),
        AttrTest("cut_tools", "in", (["a"], [])),
    ]
    got = check_all_vectors(TOOLS_ATTR, atoms)
    both = got[(True, True, True, True, False)]
    assert "a" in both and "b" in both and both != ["a", "b"]
    assert got[(True, True, True, False, False)] == ["a", "b"]
    assert got[(False, False, True, True, False)]  # non-empty, holds neither
    assert (False, False, False, True, False) in got  # absent


def test_numbers_strictly_between_constants() -> None:
    atoms = [AttrTest("retry_after", "gt", 1.0), AttrTest("retry_after", "lt", 1.2)]
    got = check_all_vectors(RETRY, atoms)
    assert 1.0 < got[(True, True)] < 1.2
    ints = [AttrTest("status", "gt", 1), AttrTest("status", "lt", 3)]
    assert check_all_vectors(STATUS, ints)[(True, True)] == 2
    none_between = [AttrTest("status", "gt", 1), AttrTest("status", "lt", 2)]
    assert (True, True) not in check_all_vectors(STATUS, none_between)


def test_adjacent_floats_and_nan() -> None:
    one_up = math.nextafter(1.0, 2.0)
    atoms = [AttrTest("retry_after", "gt", 1.0), AttrTest("retry_after", "lt", one_up)]
    assert (True, True) not in check_all_vectors(RETRY, atoms)
    two_up = math.nextafter(one_up, 2.0)
    atoms = [AttrTest("retry_after", "gt", 1.0), AttrTest("retry_after", "lt", two_up)]
    assert check_all_vectors(RETRY, atoms)[(True, True)] == one_up
    # NaN is a float: neither below, at nor above any constant, and truthy
    atoms = [AttrTest("retry_after", "le", 0), AttrTest("retry_after", "gt", 0), AttrTest("retry_after", "truthy")]
    assert math.isnan(check_all_vectors(RETRY, atoms)[(False, False, True)])


def test_int_membership_equality_and_truthiness() -> None:
    atoms = [
        AttrTest("status", "in", (429, 503)),
        AttrTest("status", "ne", 429),
        AttrTest("status", "truthy"),
        AttrTest("status", "ge", 500),
    ]
    got = check_all_vectors(STATUS, atoms)
    assert got[(True, True, True, True)] == 503
    assert got[(False, True, False, False)] == 0
    assert got[(False, True, False, False)] is not ABSENT
    assert (False, True, True, True) in got and (False, True, True, False) in got


def test_bool_and_enum_domains_are_exhausted() -> None:
    got = check_all_vectors(FLAG, [AttrTest("has_tool_calls", "truthy"), AttrTest("has_tool_calls", "eq", False)])
    assert set(got) == {(True, False), (False, True), (False, False)}  # (False, False): absent
    atoms = [AttrTest("cause", "eq", "overflow"), AttrTest("cause", "ne", "disconnect")]
    got = check_all_vectors(CAUSE, atoms)
    assert set(got) == {(True, True), (False, True), (False, False)}


def test_forms_outside_the_language_are_unknown_not_unsat() -> None:
    status, _ = attr_witness(TOOLS_ATTR, [(AttrTest("cut_tools", "lt", []), True)])
    assert status == UNKNOWN


def test_counter_theory_is_exact_on_a_range() -> None:
    lt = CounterCmp("a", 0, "lt", 3)
    eq = CounterCmp("a", 0, "eq", 5)
    assert counter_witness(0, 9, [(lt, False), (eq, False)]) == (SAT, 3)
    assert counter_witness(0, 4, [(eq, True)]) == (UNSAT, None)
    assert counter_witness(4, 9, [(lt, True)]) == (UNSAT, None)
    assert counter_witness(0, 9, [(CounterCmp("a", 0, "gt", 2.5), True)]) == (SAT, 3)


# --------------------------------------------------------------------------- property: coverage

WORDS = ["", "a", "b", "ab", "ba", "quota", "retry", "quo", "b\x00", "z"]


def str_values(consts: list[str]) -> st.SearchStrategy[Any]:
    piece = st.one_of(st.sampled_from(consts or [""]), st.text(alphabet="abqz\x00 ", max_size=3))
    return st.one_of(
        st.just(ABSENT),
        st.sampled_from(consts or [""]),
        st.lists(piece, max_size=4).map("".join),
        st.text(max_size=4),
    )


def num_values(consts: list[float], integral: bool) -> st.SearchStrategy[Any]:
    pts = sorted(consts) or [0]

    def between(pair: tuple[float, float, float]) -> Any:
        a, b, f = pair
        x = a + (b - a) * f
        return math.floor(x) if integral else x

    around = st.tuples(st.sampled_from(pts), st.sampled_from(pts), st.floats(0, 1)).map(between)
    extra: list[st.SearchStrategy[Any]] = [st.just(ABSENT), st.sampled_from(pts).map(lambda c: math.floor(c) if integral else c), around]
    if integral:
        extra += [st.integers(-3, 9), st.integers(-3, 600)]
    else:
        extra += [st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(pts).map(lambda c: math.nextafter(c, math.inf))]
    return st.one_of(*extra)


def list_values(items: list[str]) -> st.SearchStrategy[Any]:
    item = st.one_of(st.sampled_from(items or ["a"]), st.text(alphabet="abwx_", max_size=3))
    return st.one_of(st.just(ABSENT), st.lists(item, max_size=4))


@st.composite
def attr_problems(draw: st.DrawFn) -> tuple[Attr, list[AttrTest], Any]:
    kind = draw(st.sampled_from(["str", "int", "float", "list", "bool", "enum"]))
    n = draw(st.integers(1, 5))
    atoms: list[AttrTest] = []
    if kind in ("str", "enum"):
        attr = MESSAGE if kind == "str" else CAUSE
        pool = WORDS if kind == "str" else list(CAUSE.values)
        consts = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4))
        for _ in range(n):
            op = draw(st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge", "in", "contains", "truthy"]))
            atoms.append(AttrTest(attr.name, op, _value(draw, op, consts)))
        value = draw(str_values(consts)) if kind == "str" else draw(st.sampled_from([*CAUSE.values, ABSENT]))
    elif kind in ("int", "float"):
        attr = STATUS if kind == "int" else RETRY
        small = st.one_of(st.integers(-2, 6), st.sampled_from([429, 500]))
        base = small if kind == "int" else st.one_of(st.integers(-2, 5), st.floats(-3, 3, allow_nan=False))
        consts = draw(st.lists(base, min_size=1, max_size=4))
        for _ in range(n):
            op = draw(st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge", "in", "truthy"]))
            atoms.append(AttrTest(attr.name, op, _value(draw, op, consts)))
        value = draw(num_values([float(c) for c in consts], kind == "int"))
    elif kind == "list":
        attr = TOOLS_ATTR
        items = draw(st.lists(st.sampled_from(["a", "b", "write_file", ""]), min_size=1, max_size=3))
        lists = draw(st.lists(st.lists(st.sampled_from(items), max_size=3), min_size=1, max_size=3))
        for _ in range(n):
            op = draw(st.sampled_from(["eq", "ne", "in", "contains", "truthy"]))
            if op == "contains":
                atoms.append(AttrTest(attr.name, op, draw(st.sampled_from(items))))
            else:
                atoms.append(AttrTest(attr.name, op, _value(draw, op, lists)))
        value = draw(st.one_of(list_values(items), st.sampled_from(lists)))
    else:
        attr = FLAG
        for _ in range(n):
            op = draw(st.sampled_from(["eq", "ne", "truthy", "in"]))
            atoms.append(AttrTest(attr.name, op, _value(draw, op, [True, False])))
        value = draw(st.sampled_from([True, False, ABSENT]))
    return attr, atoms, value


def _value(draw: st.DrawFn, op: str, consts: list[Any]) -> Any:
    if op == "truthy":
        return None
    if op == "in":
        return tuple(draw(st.lists(st.sampled_from(consts), min_size=1, max_size=3)))
    return draw(st.sampled_from(consts))


@given(attr_problems())
@settings(max_examples=400)
def test_every_concrete_value_truth_vector_has_a_witness(problem: tuple[Attr, list[AttrTest], Any]) -> None:
    attr, atoms, value = problem
    vec = tuple(holds(a, value) for a in atoms)
    note(f"value={value!r} vector={vec}")
    status, witness = attr_witness(attr, list(zip(atoms, vec)))
    assert status == SAT, (atoms, value, vec)
    assert tuple(holds(a, witness) for a in atoms) == vec, witness


# --------------------------------------------------------------------------- property: step outcomes

# Where the generated guards go: (state, kind, event), and constants for each attribute.
SITES = [("ask", "call", "rate_limit"), ("read", "stream", "length"), ("stub", "stub", "mid_tool_call")]
CONSTS: dict[str, list[Any]] = {
    "status": [0, 429, 500, 10**30],
    "message": ["quota", "retry", "b", "", "b\x00", "\u00e9"],
    "retry_after": [1.0, 1.2, 60.0, math.nan, math.inf, -math.inf, 1e308],
    "code": ["x", ""],
    "wait_too_long": [True, False],
    "has_tool_calls": [True, False],
    "thinking_only": [True],
    "dropped_tools": [["write_file"], []],
    "cut_tools": [["write_file"], ["a", "b"], [[]]],
    "chars": [0, 10],
}
ITEMS = ["write_file", "a", "b"]


def site_attrs(kind: str, event: str) -> tuple[Attr, ...]:
    return KINDS[kind].event(event).attrs  # type: ignore[union-attr]


@st.composite
def guard_for(draw: st.DrawFn, attrs: tuple[Attr, ...], depth: int = 0) -> Any:
    leaf = draw(st.sampled_from(["attr", "attr", "counter", "flag"]))
    if depth < 2 and draw(st.integers(0, 3)) == 0:
        form = draw(st.sampled_from(["all", "any", "not"]))
        if form == "not":
            return {"not": draw(guard_for(attrs, depth + 1))}
        return {form: draw(st.lists(guard_for(attrs, depth + 1), min_size=1, max_size=3))}
    if leaf == "counter":
        op = draw(st.sampled_from(["lt", "le", "eq", "ne", "ge", "gt"]))
        return {"counter": draw(st.sampled_from(["a", "b", "c", "model_calls"])), op: draw(st.integers(0, 4))}
    if leaf == "flag":
        return {"flag": "f", "is": draw(st.booleans())}
    attr = draw(st.sampled_from(attrs))
    consts = CONSTS[attr.name]
    ops = {
        "int": ["eq", "ne", "lt", "le", "gt", "ge", "in", "truthy"],
        "float": ["eq", "ne", "lt", "le", "gt", "ge", "in", "truthy"],
        "str": ["eq", "ne", "lt", "le", "gt", "ge", "in", "truthy", "contains"],
        "bool": ["eq", "ne", "in", "truthy"],
        "list": ["eq", "ne", "in", "truthy", "contains"],
    }[attr.type]
    op = draw(st.sampled_from(ops))
    if op == "truthy":
        return {"attr": attr.name}
    if op == "in":
        return {"attr": attr.name, "in": draw(st.lists(st.sampled_from(consts), min_size=1, max_size=2))}
    if op == "contains" and attr.type == "list":
        return {"attr": attr.name, "contains": draw(st.sampled_from(ITEMS))}
    return {"attr": attr.name, op: draw(st.sampled_from(consts))}


@st.composite
def guarded_policies(draw: st.DrawFn) -> tuple[str, str, str]:
    state, kind, event = draw(st.sampled_from(SITES))
    rows = []
    for _ in range(draw(st.integers(1, 5))):
        row: dict[str, Any] = {"to": draw(st.sampled_from(["ask", "fix", "go_on", "fail"]))}
        if draw(st.integers(0, 4)):
            row["when"] = draw(guard_for(site_attrs(kind, event)))
        incs = draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=2))
        acts: list[Any] = [{"increment": c} for c in incs]
        if draw(st.booleans()):
            acts.append({"set": "f"})
        if acts:
            row["do"] = acts
        rows.append(row)
    head = """\
loopspec: 1
initial: ask
templates:
  more: "more"
counters:
  a: {max: 2}
  b: {max: 3}
  c: {max: 1}
flags:
  f: {doc: a flag}
backstops:
  model_calls: {max: 4, exhausted: out}
  tool_batches: {max: 3, exhausted: out}
states:
"""
    extra = """\
  fix:
    kind: escalate
    apply: [compact]
    on: {done: ask, failed: fail}
  go_on:
    kind: continue
    prompt: more
    on: {done: ask}
  stub:
    kind: stub
    on:
      mid_text: fail
      mid_tool_call: fail
"""
    body = CALL + stream(stalled="stub") + TOOLS + extra + HALTS
    old = f"      {event}: fail\n"
    assert old in body
    flow = yaml.safe_dump(rows, default_flow_style=True, width=1 << 30, allow_unicode=True).strip()
    body = body.replace(old, f"      {event}: {flow}\n", 1)
    return head + body, state, event


@st.composite
def events_for(draw: st.DrawFn, kind: str, event: str) -> Event:
    attrs: dict[str, Any] = {}
    for a in site_attrs(kind, event):
        consts = CONSTS[a.name]
        if a.type == "int":
            v = draw(num_values([float(c) for c in consts], True))
        elif a.type == "float":
            v = draw(num_values([float(c) for c in consts], False))
        elif a.type == "str":
            v = draw(str_values([str(c) for c in consts]))
        elif a.type == "bool":
            v = draw(st.sampled_from([True, False, ABSENT]))
        else:
            v = draw(st.one_of(list_values(ITEMS), st.sampled_from(consts)))
        if v is not ABSENT:
            attrs[a.name] = v
    # the interpreter derives wait_too_long from retry_after on every call event
    return judge_wait(Event(event, attrs), Settings().max_wait)


def outcome(an: Any, step: Any) -> tuple[Any, ...]:
    after = step.after
    return (
        id(step.transition),
        after.state,
        after.flags & an.tracked_flags,
        an.phases_of(after.counters),
        step.redirected_from,
        monitor_signature(an, step),
    )


@given(guarded_policies(), st.data())
@settings(max_examples=80)
def test_every_concrete_step_is_a_case(site: tuple[str, str, str], data: st.DataObject) -> None:
    text, state, event = site
    note(text)
    p = load_policy_text(text, "gen.yaml")
    an = build_analysis(p)
    kind = p.states[state].kind
    names = p.counter_names
    sel = an.selection(state, event)
    for _ in range(10):
        counters = tuple(data.draw(st.integers(0, p.counters[i].max), label=names[i]) for i in range(len(names)))
        flags = frozenset(data.draw(st.sets(st.sampled_from(["f", "tools_disabled"])), label="flags"))
        cfg = Config(state, counters, flags)
        ev = data.draw(events_for(kind, event), label="event")
        want = outcome(an, p.step(cfg, ev))
        # complete for the concrete configuration
        assert want in {outcome(an, s) for s in an.steps_at(cfg, event)}
        # and for the abstract node it belongs to
        node = an.node_of(cfg)
        got = set()
        for case in an.abstract_cases(state, node.flags, node.phases, event):
            for s in case_steps(sel, Config(state, case.counters, case.flags), case):
                got.add(outcome(an, s))
        assert want in got, (cfg, ev)
    assert sel.may == 0, "validated guards never need a may-fire case"


@given(guarded_policies())
@settings(max_examples=40)
def test_check_gives_a_verdict_whatever_the_guards(site: tuple[str, str, str]) -> None:
    text, _state, _event = site
    note(text)
    r = check_policy(load_policy_text(text, "gen.yaml"))
    assert r.exit_code in (0, 1) and "halts" in r.properties


# --------------------------------------------------------------------------- end to end



def call_with(rate_limit: str) -> str:
    return CALL.replace("      rate_limit: fail\n", f"      rate_limit: {rate_limit}\n")


def test_stub_self_loop_on_a_list_constant_is_not_proven() -> None:
    stub = """\
  stub:
    kind: stub
    on:
      mid_text: fail
      mid_tool_call: [{when: {attr: cut_tools, eq: [write_file]}, to: stub}, fail]
"""
    r = check_policy(policy(CALL, stream(stalled="stub"), TOOLS, stub, HALTS))
    assert "halts" in r.failed
    cex = r.properties["halts"].counterexample
    assert cex is not None and cex.concrete
    assert cex.steps[-1].attrs["cut_tools"] == ["write_file"]


def test_quota_and_retry_in_one_message_reach_the_retry_loop() -> None:
    guard = "[{when: {all: [{attr: message, contains: quota}, {attr: message, contains: retry}]}, to: nudge}, fail]"
    r = check_policy(policy(call_with(guard), stream(), TOOLS, HALTS, LOOP))
    assert "halts" in r.failed
    # a retry loop through the call itself (no counter) is bounded only by model_calls: bound 5
    direct = "[{when: {all: [{attr: message, contains: quota}, {attr: message, contains: retry}]}, to: ask}, fail]"
    r = check_policy(policy(call_with(direct), stream(), TOOLS, HALTS), strict=True)
    assert not r.proven and r.failed == ["no_backstop_only_loops"]
    assert r.worst_case["model_calls"].value == 5


def test_a_float_strictly_between_two_constants_reaches_the_loop() -> None:
    guard = "[{when: {all: [{attr: retry_after, gt: 1.0}, {attr: retry_after, lt: 1.2}]}, to: nudge}, fail]"
    r = check_policy(policy(call_with(guard), stream(), TOOLS, HALTS, LOOP))
    assert "halts" in r.failed


def test_a_string_strictly_between_two_constants_reaches_the_loop() -> None:
    guard = '[{when: {all: [{attr: message, gt: "b"}, {attr: message, lt: "ba"}]}, to: nudge}, fail]'
    r = check_policy(policy(call_with(guard), stream(), TOOLS, HALTS, LOOP))
    assert "halts" in r.failed
    msg = r.properties["halts"].counterexample.steps[0].attrs["message"]  # type: ignore[union-attr]
    assert "b" < msg < "ba"


def test_a_guard_with_many_constants_gets_a_verdict() -> None:
    many = ", ".join(f"m{i}" for i in range(51))
    guard = f"[{{when: {{any: [{{attr: message, in: [{many}]}}, {{attr: code, in: [{many}]}}]}}, to: nudge}}, fail]"
    r = check_policy(policy(call_with(guard), stream(), TOOLS, HALTS, LOOP))
    assert "halts" in r.failed
    statuses = ", ".join(str(400 + i) for i in range(51))
    guard = f"[{{when: {{attr: status, in: [{statuses}]}}, to: fail}}, fail]"
    assert check_policy(policy(call_with(guard), stream(), TOOLS, HALTS)).proven


def test_many_counters_on_one_edge_cost_a_few_steps() -> None:
    k = 12
    counters = "".join(f"  c{i}: {{max: 2}}\n" for i in range(k))
    head = HEAD_WITH.replace("COUNTERS", counters)
    incs = ", ".join(f"{{increment: c{i}}}" for i in range(k))
    r = check_policy(policy(CALL, stream(empty=f"[{{do: [{incs}], to: ask}}, fail]"), TOOLS, HALTS, head=head))
    assert r.proven
    # the old product over counters evaluated 3**12 steps for this edge alone
    assert r.exploration["model_steps"] < 2_000


HEAD_WITH = """\
loopspec: 1
initial: ask
templates:
  more: "more"
counters:
COUNTERS
backstops:
  model_calls: {max: 5, exhausted: out}
  tool_batches: {max: 3, exhausted: out}
"""


def test_may_fire_cases_keep_the_edge_when_the_search_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cases_mod, "SEARCH_BUDGET", 1)
    guard = "[{when: {all: [{attr: message, contains: quota}, {attr: message, contains: retry}]}, to: nudge}, fail]"
    r = check_policy(policy(call_with(guard), stream(), TOOLS, HALTS, LOOP))
    assert "halts" in r.failed


def test_event_cases_keeps_its_signature() -> None:
    p = policy(call_with("[{when: {attr: code, eq: x}, to: fail}, fail]"), stream(), TOOLS, HALTS)
    got = event_cases(p, "ask", "rate_limit")
    assert {e.attrs.get("code") == "x" for e in got} == {True, False}
