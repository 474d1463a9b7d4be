"""Soundness harness for ``loopspec check``: generated policies, rich concrete events, and an
exhaustive reference explorer written independently of the checker.

Three parts, each usable alone (``tests/verify/test_soundness.py`` and ``bench/soundness.py`` use them):

1. **Generator.** :func:`generate_policy` builds a small, valid policy (a YAML document) from a
   :class:`Chooser`. The same code runs on a Hypothesis ``draw`` (:func:`policies`, which shrinks)
   and on a seeded :class:`random.Random` (:class:`RandomChooser`, for the long bench run). It uses
   every guard form (attr eq/ne/in/contains/lt/le/gt/ge/truthy over str, int, float, list and bool
   attributes; counter comparisons including ``max``; flags; not/any/all), resets on transitions
   and in escalate ``apply`` lists, increments ``by`` more than one, backstops whose ``exhausted``
   is a state of every allowed kind, ``wrap_up``, ``warn_at`` and ``bounded_by``.

2. **Concrete event domain.** :func:`event_domain` gives, for one state and one event, concrete
   events drawn from a domain richer than the guard constants: strings that contain several needles
   or lie strictly between two constants, numbers strictly between constants, lists with several
   items, the list constants themselves, booleans, and (optionally) absent attributes.

3. **Reference explorer.** :func:`explore` is a breadth-first search over the configurations
   reachable from ``Policy.initial_config()`` under every event of the domain. It calls nothing but
   ``Policy.step`` and ``Policy.initial_config``: no code of ``loopspec.verify`` is used. It reports
   whether a cycle is reachable (a run that never halts), the exact worst-case number of model calls
   and tool batches over all runs (counted as entries into ``call`` / ``tool_exec`` states, which is
   what the turn really spends, even where a backstop counter saturates), per outcome, and every
   reachable (state, event) with no enabled transition.

:func:`compare` then holds ``check_policy``'s result against the reference. A reference cycle is a
proof of non-termination; a reference "halts" is not a proof (its events are a subset of all
events), so a false alarm is only reported when the checker's own counterexample does not replay as
a cycle either. :func:`triage` labels a false PROVEN with a likely cause; it is the one place that
borrows from the checker (its event cases, to re-run the reference with them).

On the domain reduction: ``Policy.step`` reads an event only through the attribute tests of the
guards on the transitions it tries (the rest of a step depends on the configuration). So two events
whose attribute values give every such test the same truth value lead to the same configuration
from every configuration. :func:`event_domain` keeps one event per truth vector, computed with the
model's own test objects (found by duck typing); ``dedup=False`` turns this off, and a test checks
the two agree.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import yaml

from loopspec import load_policy_text
from loopspec.language.alphabet import KINDS, Attr, Event, judge_wait
from loopspec.language.model import Config, Policy

# =========================================================================== choosers


class Chooser:
    """The choices a generator makes. Simplest answer first, so Hypothesis shrinks towards it."""

    def integer(self, lo: int, hi: int) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.integer(0, len(seq) - 1)]

    def coin(self, p: float) -> bool:
        """True with probability ``p``; shrinks to False."""
        return self.integer(0, 99) >= 100 - round(p * 100)

    def weighted(self, options: Sequence[tuple[Any, int]]) -> Any:
        total = sum(w for _, w in options)
        r = self.integer(0, total - 1)
        for value, w in options:
            if r < w:
                return value
            r -= w
        return options[-1][0]  # pragma: no cover


class RandomChooser(Chooser):
    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd

    def integer(self, lo: int, hi: int) -> int:
        return self.rnd.randint(lo, hi)


class DrawChooser(Chooser):
    def __init__(self, draw: Any) -> None:
        from hypothesis import strategies as st

        self.draw = draw
        self.st = st

    def integer(self, lo: int, hi: int) -> int:
        return int(self.draw(self.st.integers(lo, hi)))


# =========================================================================== the generator

# Small constant pools, so that guards on one attribute collide: substrings of each other, strings
# one apart lexicographically, numbers one apart, lists that are permutations of each other.
STR_POOL = ["a", "ab", "b", "abc", "ba", "bc", "aa"]
INT_POOL = [0, 1, 2, 3, 5, 500]
FLOAT_POOL = [0, 0.5, 1, 1.5, 2.5, 30]
LIST_POOL: list[list[str]] = [[], ["a"], ["a", "b"], ["b", "a"], ["b"]]
ITEM_POOL = ["a", "b", "c"]

HALTS = {"done": "completed", "stop": "backstop", "fail": "provider_error"}
OPTIONAL_STATES = [
    ("tools", "tool_exec"),
    ("stub", "stub"),
    ("more", "continue"),
    ("fix", "escalate"),
    ("ask2", "call"),
    ("fix2", "escalate"),
]
CALL_FLAG_NAMES = ["tools_disabled", "reasoning_disabled", "wrap_up_entered"]


@dataclass
class _Ctx:
    c: Chooser
    states: dict[str, str]  # name -> kind
    counters: dict[str, int]  # own counters -> cap
    flags: list[str]
    mc_max: int
    tb_max: int

    @property
    def non_halts(self) -> list[str]:
        return [s for s, k in self.states.items() if k != "halt"]

    def any_state(self) -> str:
        # biased towards non-halts so that loops are common
        if self.c.coin(0.7):
            return self.c.choice(self.non_halts)
        return self.c.choice(list(HALTS))


def _natural_target(ctx: _Ctx, kind: str, event: str) -> str:
    """Where an event goes when it is not one of the state's generated (interesting) events."""
    has = ctx.states
    if kind == "call":
        return "read" if event == "opened" else ("fail" if event != "cancelled" else "stop")
    if kind == "stream":
        if event == "tool_calls":
            return "tools" if "tools" in has else "done"
        if event == "stalled" and "stub" in has:
            return "stub"
        if event == "length" and "more" in has:
            return "more"
        return "done" if event == "text" else "fail"
    if kind == "stub":
        return "more" if "more" in has else "done"
    if kind == "tool_exec":
        return "ask" if event in ("ok", "failed") else "stop"
    if kind in ("continue", "escalate"):
        return "ask" if event == "done" else "fail"
    raise AssertionError(kind)  # pragma: no cover


def _attr_atom(ctx: _Ctx, attr: Attr) -> dict[str, Any]:
    c = ctx.c
    g: dict[str, Any] = {"attr": attr.name}
    if attr.type == "bool":
        op = c.choice(["truthy", "eq", "ne", "in"])
        if op == "in":
            g["in"] = c.choice([[True], [False], [False, True]])
        elif op != "truthy":
            g[op] = c.choice([True, False])
        return g
    if attr.type == "list":
        op = c.choice(["contains", "truthy", "eq", "ne", "in"])
        if op == "contains":
            g["contains"] = c.choice(ITEM_POOL)
        elif op == "in":
            g["in"] = [list(c.choice(LIST_POOL)) for _ in range(c.integer(1, 2))]
        elif op != "truthy":
            g[op] = list(c.choice(LIST_POOL))
        return g
    if attr.type == "str" and attr.values:
        op = c.choice(["eq", "ne", "in", "lt", "ge", "truthy", "gt", "le"])
        if op == "in":
            g["in"] = [c.choice(list(attr.values)) for _ in range(c.integer(1, 2))]
        elif op != "truthy":
            g[op] = c.choice(list(attr.values))
        return g
    if attr.type == "str":
        op = c.choice(["contains", "eq", "lt", "gt", "ne", "le", "ge", "in", "truthy"])
        if op == "in":
            g["in"] = [c.choice(STR_POOL) for _ in range(c.integer(1, 3))]
        elif op != "truthy":
            g[op] = c.choice(STR_POOL)
        return g
    pool: list[Any] = INT_POOL if attr.type == "int" else FLOAT_POOL
    op = c.choice(["lt", "gt", "eq", "ne", "le", "ge", "in", "truthy"])
    if op == "in":
        g["in"] = [c.choice(pool) for _ in range(c.integer(1, 3))]
    elif op != "truthy":
        g[op] = c.choice(pool)
    return g


def _counter_atom(ctx: _Ctx) -> dict[str, Any]:
    c = ctx.c
    names = list(ctx.counters) + ["model_calls", "tool_batches"]
    name = c.choice(names)
    cap = ctx.counters.get(name) or (ctx.mc_max if name == "model_calls" else ctx.tb_max)
    op = c.choice(["lt", "ge", "eq", "ne", "le", "gt"])
    value: Any = "max" if c.coin(0.3) else c.integer(0, cap + 1)
    return {"counter": name, op: value}


def _flag_atom(ctx: _Ctx) -> dict[str, Any]:
    c = ctx.c
    flag = c.choice(ctx.flags + CALL_FLAG_NAMES)
    return {"flag": flag} if c.coin(0.5) else {"flag": flag, "is": False}


def _guard(ctx: _Ctx, attrs: Sequence[Attr], depth: int = 0, focus: Attr | None = None) -> dict[str, Any]:
    """A guard; attribute tests mostly read ``focus``, so that tests of one attribute meet in one
    ``all`` / ``any`` (two needles, a value between two constants)."""
    c = ctx.c
    options: list[tuple[str, int]] = []
    if attrs:
        options.append(("attr", 5))
    options.append(("counter", 2 if ctx.counters else 1))
    options.append(("flag", 2))
    if depth < 2:
        options += [("not", 1), ("any", 2), ("all", 3)]
    form = c.weighted(options)
    if form == "attr":
        attr = focus if focus is not None and c.coin(0.8) else c.choice(list(attrs))
        return _attr_atom(ctx, attr)
    if form == "counter":
        return _counter_atom(ctx)
    if form == "flag":
        return _flag_atom(ctx)
    if form == "not":
        return {"not": _guard(ctx, attrs, depth + 1, focus)}
    return {form: [_guard(ctx, attrs, depth + 1, focus) for _ in range(c.integer(1, 3))]}


def _actions(ctx: _Ctx, in_apply: bool = False) -> list[Any]:
    c = ctx.c
    out: list[Any] = []
    incremented: set[str] = set()
    for _ in range(c.integer(0 if not in_apply else 1, 2 if not in_apply else 3)):
        options: list[tuple[str, int]] = [("flag", 2), ("effect", 1), ("shorthand", 1)]
        if ctx.counters:
            options += [("reset", 1)]
            if not in_apply:
                options += [("increment", 5)]
        kind = c.weighted(options)
        if kind == "increment":
            name = c.choice(list(ctx.counters))
            if name in incremented:
                continue
            incremented.add(name)
            by = c.weighted([(1, 6), (2, 2), (3, 1)])
            out.append({"increment": name} if by == 1 else {"increment": name, "by": by})
        elif kind == "reset":
            out.append({"reset": c.choice(list(ctx.counters))})
        elif kind == "flag":
            # wrap_up_entered too: clearing it re-arms the wrap_up redirect
            out.append({c.choice(["set", "clear"]): c.choice(ctx.flags + CALL_FLAG_NAMES)})
        elif kind == "shorthand":
            out.append(c.choice(["disable_tools", "enable_tools", "disable_reasoning_once", "switch_model"]))
        else:
            if in_apply:
                out.append(c.choice(["compact", {"append": "note"}, {"refuse_tools": "note"}]))
            else:
                out.append(c.choice(["drop_tool_calls", {"append": "note"}, {"backoff": "wait"}, {"backoff": "long"}]))
    return out


_FOCUS_WEIGHT = {"list": 4, "str": 4, "float": 3, "int": 2, "bool": 1}


def _transitions(ctx: _Ctx, source: str, kind: str, event: str) -> Any:
    c = ctx.c
    spec = KINDS[kind].event(event)
    assert spec is not None
    attrs = spec.attrs
    # the attribute most tests of this event read: free strings and lists first, where values
    # between constants and several needles at once exist
    focus = c.weighted([(a, _FOCUS_WEIGHT[a.type] if not a.values else 1) for a in attrs]) if attrs else None
    items: list[Any] = []
    for _ in range(c.integer(1, 3)):
        t: dict[str, Any] = {}
        if c.coin(0.75):
            t["when"] = _guard(ctx, attrs, focus=focus)
        acts = _actions(ctx)
        t["to"] = source if c.coin(0.25) else ctx.any_state()
        if ctx.states[t["to"]] != "halt" and ctx.counters and c.coin(0.6) and not any(
            isinstance(a, dict) and "increment" in a for a in acts
        ):
            # most edges that stay in the turn are budgeted, as in a real policy; the rest make
            # loops only the backstops (or nothing) bound
            name = c.choice(list(ctx.counters))
            acts.append({"increment": name})
        if acts:
            t["do"] = acts
        if c.coin(0.1):
            t["bounded_by"] = c.choice(["tool_batches", "model_calls"])
        items.append(t)
    if c.coin(0.85):  # a catch-all; without it the event may fall into policy_error
        items.append(c.choice(list(HALTS)) if c.coin(0.7) else ctx.any_state())
    return items


def generate_document(c: Chooser, escape: bool = True) -> dict[str, Any]:
    """A small valid policy as a YAML-ready mapping.

    ``escape=False`` keeps tool_batches.exhausted away from call states (the known backstop escape),
    so that a long run can look for other defects.
    """
    states: dict[str, str] = {"ask": "call", "read": "stream"}
    for name, kind in OPTIONAL_STATES:
        if c.coin(0.45 if name in ("tools", "fix", "more") else 0.25):
            states[name] = kind
    for name in HALTS:
        states[name] = "halt"
    counters = {f"c{i + 1}": c.integer(1, 3) for i in range(c.weighted([(1, 5), (2, 4), (0, 1)]))}
    flags = [f"f{i + 1}" for i in range(c.integer(0, 2))]
    mc_max = c.integer(1, 7)
    tb_max = c.integer(1, 4)
    ctx = _Ctx(c, states, counters, flags, mc_max, tb_max)

    body: dict[str, Any] = {}
    for name, kind in states.items():
        if kind == "halt":
            body[name] = {"kind": "halt", "outcome": HALTS[name], "message": f"{name} {{response}}"}
            continue
        s: dict[str, Any] = {"kind": kind}
        if kind == "continue":
            s["prompt"] = "go_on"
        if kind == "escalate":
            s["apply"] = _actions(ctx, in_apply=True) or ["compact"]
        events = list(KINDS[kind].event_names)
        n_interesting = c.integer(1, min(3, len(events)))
        interesting: list[str] = []
        weighted = [(e, 1 + 2 * len(KINDS[kind].event(e).attrs)) for e in events]  # type: ignore[union-attr]
        for _ in range(n_interesting):
            e = c.weighted(weighted)
            if e not in interesting:
                interesting.append(e)
        on: dict[str, Any] = {}
        for e in events:
            if e in interesting:
                on[e] = _transitions(ctx, name, kind, e)
            elif c.coin(0.03):
                continue  # unhandled: the run ends in policy_error
            else:
                on[e] = _natural_target(ctx, kind, e)
        s["on"] = on
        body[name] = s

    others = [s for s in states if states[s] != "tool_exec" and (escape or states[s] != "call")]
    model_calls: dict[str, Any] = {"max": mc_max, "exhausted": c.choice(["stop", "done", "fail"])}
    wrap_candidates = [s for s, k in states.items() if k in ("escalate", "continue")]
    if wrap_candidates and c.coin(0.35):
        model_calls["wrap_up"] = c.choice(wrap_candidates)
    # every kind validate allows, a call state included (a redirect that escapes model_calls)
    exhausted = "stop" if c.coin(0.3) else c.choice(others)
    tool_batches: dict[str, Any] = {"max": tb_max, "exhausted": exhausted}
    for bs, cap in ((model_calls, mc_max), (tool_batches, tb_max)):
        if c.coin(0.1):
            bs["warn_at"] = c.integer(1, cap)
            bs["warning"] = "warn"
    initial = "ask" if c.coin(0.9) else c.choice(ctx.non_halts)
    doc: dict[str, Any] = {
        "loopspec": 1,
        "name": "generated",
        "initial": initial,
        "templates": {"note": "note {event}", "go_on": "go on", "warn": "{model_calls} calls"},
        "backoff": {"wait": [0, 1], "long": [c.choice([0, 2, 7]), c.choice([3, 45, 120])], "max_wait": c.choice([1, 30, 60, 600])},
    }
    if counters:
        doc["counters"] = {n: {"max": m} for n, m in counters.items()}
    if flags:
        doc["flags"] = {f: {} for f in flags}
    doc["backstops"] = {"model_calls": model_calls, "tool_batches": tool_batches}
    doc["states"] = body
    return doc


def dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110)


def generate_policy(c: Chooser, escape: bool = True) -> str:
    """YAML text of a small valid policy."""
    return dump(generate_document(c, escape))


def policies(escape: bool = True) -> Any:
    """Hypothesis strategy: YAML text of small valid policies (shrinks towards fewer states)."""
    from hypothesis import strategies as st

    @st.composite
    def _policies(draw: Any) -> str:
        return generate_policy(DrawChooser(draw), escape)

    return _policies()


def random_policy(seed: int) -> str:
    return generate_policy(RandomChooser(random.Random(seed)))


# =========================================================================== the event domain

ABSENT = object()
"""A domain value meaning: the event does not carry this attribute."""


def _walk(obj: Any, out: list[Any]) -> None:
    """Every attribute test inside a guard, by duck typing (``attr`` and ``op`` fields)."""
    if hasattr(obj, "attr") and hasattr(obj, "op") and hasattr(obj, "evaluate"):
        out.append(obj)
        return
    if isinstance(obj, (list, tuple)):
        for x in obj:
            _walk(x, out)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            _walk(getattr(obj, f.name), out)


def attr_tests(policy: Policy, state: str, event: str) -> list[Any]:
    out: list[Any] = []
    for t in policy.states[state].transitions.get(event, ()):
        _walk(t.guard, out)
    return out


def _between_str(a: str, b: str) -> list[str]:
    """Strings strictly between ``a < b``, when some exist: ``a`` extended by one character, and
    ``b`` with one character lowered and the rest dropped."""
    cands = [a + ch for ch in ("\x00", " ", "0", "a", "m", "~")]
    for k in range(len(b)):
        cands.append(b[:k])
        if ord(b[k]) > 0:
            cands.append(b[:k] + chr(ord(b[k]) - 1) + "~")
    return sorted({x for x in cands if a < x < b})


def _consts(tests: list[Any]) -> list[Any]:
    out: list[Any] = []
    for t in tests:
        v = t.value
        if t.op == "in":
            out.extend(v or ())
        elif v is not None:
            out.append(v)
    return out


def attr_values(attr: Attr, tests: list[Any], absent: bool) -> list[Any]:
    """Concrete candidate values for one attribute, richer than the constants the tests mention."""
    consts = _consts(tests)
    vals: list[Any] = []

    def add(v: Any) -> None:
        if not any(type(v) is type(w) and v == w for w in vals):
            vals.append(v)

    if attr.type == "bool":
        add(False)
        add(True)
    elif attr.type in ("int", "float"):
        nums = sorted({float(x) for x in consts if isinstance(x, (int, float)) and not isinstance(x, bool)})
        base = [0, 1, -1, 10**6] + [x for x in nums]
        for x in nums:
            base += [x - 1, x + 1, x - 0.5, x + 0.5, x - 0.25, x + 0.25]
        for x, y in zip(nums, nums[1:]):
            base.append((x + y) / 2)
        for v in base:
            if attr.type == "int":
                for w in {int(v // 1), int(-(-v // 1))}:
                    add(w)
            else:
                add(float(v))
                if float(v).is_integer():
                    add(int(v))  # an int where a float is declared: 1 == 1.0
    elif attr.type == "str" and attr.values:
        for v in attr.values:
            add(v)
    elif attr.type == "str":
        strs = sorted({x for x in consts if isinstance(x, str)})
        for v in ["", "x", "~~"] + strs:
            add(v)
        for x in strs:
            add(x + "z")
            add("z" + x)
            if x:
                add(x[:-1])
                add(x[1:])
        for r in (2, 3):  # several needles at once, in every order (up to three of them)
            for combo in itertools.permutations(strs[:5], r):
                add("".join(combo))
                add(" ".join(combo))
        for x, y in zip(strs, strs[1:]):
            for v in _between_str(x, y):
                add(v)
        if strs:
            for v in _between_str("", strs[0]):
                add(v)
    elif attr.type == "list":
        items: list[Any] = []
        lists: list[list[Any]] = []
        for x in consts:
            if isinstance(x, list):
                lists.append(x)
                items.extend(x)
            else:
                items.append(x)
        items = sorted({str(i) for i in items})
        add([])
        add(["x"])
        for i in items:
            add([i])
        for r in (2, 3):  # several items at once, in every order, and a repeated one
            for combo in itertools.permutations(items[:5], r):
                add(list(combo))
        for i in items:
            add([i, i])
        for lst in lists:
            add(list(lst))
            add(list(reversed(lst)))
            add(list(lst) + ["x"])
            add(list(lst) + list(lst))
            if lst:
                add(list(lst[:-1]))
    if absent:
        vals.append(ABSENT)
    return vals


RETRY_AFTER_LONGEST = 1e6


def _longer(v: Any, than: Any) -> bool:
    number = (int, float)
    return isinstance(v, number) and not isinstance(v, bool) and (not isinstance(than, number) or isinstance(than, bool) or v > than)


def _default(attr: Attr) -> Any:
    return {"bool": False, "int": 0, "float": 0.0, "list": [], "str": attr.values[0] if attr.values else ""}[attr.type]


def _make_event(name: str, attrs: dict[str, Any]) -> Event:
    return Event(name, {k: v for k, v in attrs.items() if v is not ABSENT})


_NO_CFG = Config("", (), frozenset())


def event_domain(policy: Policy, state: str, event: str, absent: bool = False, dedup: bool = True) -> list[Event]:
    """Concrete events ``state`` may receive as ``event``, one per distinguishable case."""
    spec = KINDS[policy.states[state].kind].event(event)
    assert spec is not None
    tests = attr_tests(policy, state, event)
    axes: list[list[Any]] = []
    for attr in spec.attrs:
        mine = [t for t in tests if t.attr == attr.name]
        # a Retry-After longer than anything a policy states, so the longest wait is reachable
        longer = [RETRY_AFTER_LONGEST] if attr.name == "retry_after" else []
        if not mine:
            axes.append([_default(attr), *longer])
            continue
        vals = attr_values(attr, mine, absent) + longer
        if dedup:
            seen: dict[tuple[bool, ...], Any] = {}
            for v in vals:
                ev = _make_event(event, {attr.name: v})
                key = tuple(bool(t.evaluate(policy, _NO_CFG, ev)) for t in mine)
                if longer and key in seen and _longer(v, seen[key]):
                    seen[key] = v  # a class's longest Retry-After: it waits the most
                seen.setdefault(key, v)
            vals = list(seen.values())
        axes.append(vals)
    names = [a.name for a in spec.attrs]
    # wait_too_long is derived from retry_after on every call event, as the interpreter does
    events = [judge_wait(_make_event(event, dict(zip(names, combo))), policy.settings.max_wait) for combo in itertools.product(*axes)]
    return list({tuple(sorted((k, repr(v)) for k, v in e.attrs.items())): e for e in events}.values())


# =========================================================================== the reference explorer


@dataclass
class Reference:
    """What exhaustive concrete exploration found."""

    configs: int = 0
    steps: int = 0
    skipped: str | None = None
    loops: bool = False
    lasso: list[tuple[str, str, dict[str, Any], str]] = field(default_factory=list)
    """A run into a cycle: (state, event, attrs, next state); the cycle starts at ``loop_start``."""
    loop_start: int | None = None
    worst: dict[str, int] = field(default_factory=dict)
    """Exact maximum of model calls / tool batches made in one run (entries into call/tool_exec)."""
    worst_counter: dict[str, int] = field(default_factory=dict)
    """The maximum of the backstop counters over reachable halts (saturates at the cap)."""
    worst_backoff: float = 0.0
    """The most seconds one run waits in backoffs, as the interpreter waits: the schedule's delay,
    lengthened by the event's retry_after up to backoff.max_wait."""
    by_outcome: dict[str, dict[str, int]] = field(default_factory=dict)
    policy_errors: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    fired: set[str] = field(default_factory=set)
    """Labels of the transitions some reachable step takes."""
    reached: set[str] = field(default_factory=set)
    """States some reachable configuration is in."""

    @property
    def halts(self) -> bool:
        return self.skipped is None and not self.loops


BACKSTOP_OF_KIND = {"call": "model_calls", "tool_exec": "tool_batches"}


DomainFn = Callable[[Policy, str, str], list[Event]]


def explore(
    policy: Policy, absent: bool = False, limit: int = 20_000, dedup: bool = True, events: DomainFn | None = None
) -> Reference:
    """Breadth-first search over every configuration reachable under the concrete event domain.

    ``events`` replaces the domain (for triage: the checker's own event cases, see :func:`triage`).
    """
    ref = Reference()
    kinds = {name: s.kind for name, s in policy.states.items()}
    caps = [c.max for c in policy.counters]
    known_flags = set(policy.flags) | set(CALL_FLAG_NAMES) | {
        "max_tokens_boosted", "fallback_model", "thinking_stripped", "tool_choice_reset", "effort_omitted",
    }
    domains: dict[tuple[str, str], list[Event]] = {}

    def domain(state: str, ev: str) -> list[Event]:
        key = (state, ev)
        d = domains.get(key)
        if d is None:
            if events is not None:
                d = domains[key] = list(events(policy, state, ev))
            else:
                d = domains[key] = event_domain(policy, state, ev, absent=absent, dedup=dedup)
        return d

    def measurements(cfg: Config) -> list[frozenset[str]]:
        """What the interpreter's budgets may measure before a step: every budget at nothing, at
        its warn_at or at its max, with the cost known or not, through the model's own
        ``budget_status`` (which also applies min_per_call)."""
        budgets = list(policy.budgets.values())
        if not budgets:
            return [frozenset()]
        points = [[0.0, b.max] + ([b.warn_at] if b.warn_at is not None else []) for b in budgets]
        out = {
            policy.budget_status(cfg, dict(zip((b.name for b in budgets), amounts)), unknown)
            for amounts in itertools.product(*points)
            for unknown in (False, True)
        }
        return sorted(out, key=sorted)

    def weight(cfg: Config) -> tuple[int, int]:
        k = kinds[cfg.state]
        return (1 if k == "call" else 0, 1 if k == "tool_exec" else 0)

    def sane(cfg: Config) -> None:
        if cfg.state not in kinds:
            raise AssertionError(f"step entered unknown state {cfg.state!r}")
        if len(cfg.counters) != len(caps) or any(not 0 <= v <= m for v, m in zip(cfg.counters, caps)):
            raise AssertionError(f"counters {cfg.counters} outside their caps {caps}: the space is not finite")
        if not cfg.flags <= known_flags:
            raise AssertionError(f"unknown flags {set(cfg.flags) - known_flags}")

    root = policy.initial_config()
    sane(root)
    index: dict[Config, int] = {root: 0}
    order: list[Config] = [root]
    succ: list[list[tuple[int, tuple[int, int]]]] = []
    waited: dict[tuple[int, int], float] = {}
    """(config, next config) -> the longest backoff wait of a step between them."""
    parent: dict[int, tuple[int, Event]] = {}
    errors_seen: set[tuple[str, str]] = set()
    fired: dict[int, Any] = {}
    head = 0
    while head < len(order):
        cfg = order[head]
        head += 1
        mine: dict[tuple[int, tuple[int, int]], None] = {}
        succ.append([])
        kind = kinds[cfg.state]
        if kind == "halt":
            continue
        for ev_name in KINDS[kind].event_names:
            for ev, measured in ((e, m) for e in domain(cfg.state, ev_name) for m in measurements(cfg)):
                step = policy.step(cfg, ev, measured)
                ref.steps += 1
                after = step.after
                if step.transition is not None:
                    fired[id(step.transition)] = step.transition
                if step.transition is None and (cfg.state, ev_name) not in errors_seen:
                    errors_seen.add((cfg.state, ev_name))
                    ref.policy_errors.append((cfg.state, ev_name, dict(ev.attrs)))
                j = index.get(after)
                if j is None:
                    sane(after)
                    if len(order) >= limit:
                        ref.configs = len(order)
                        ref.skipped = f"more than {limit} reachable configurations"
                        return ref
                    j = index[after] = len(order)
                    order.append(after)
                    parent[j] = (head - 1, ev)
                mine[(j, weight(after))] = None
                wait = backoff_wait(step, ev, policy.settings.max_wait)
                if wait > waited.get((head - 1, j), 0.0):
                    waited[(head - 1, j)] = wait
        succ[-1] = list(mine)
    ref.configs = len(order)
    ref.reached = {cfg.state for cfg in order}
    ref.fired = {t.label for t in fired.values()}
    n = len(order)

    # cycle detection: Kahn's algorithm; anything left lies on or behind a cycle
    indeg = [0] * n
    for lst in succ:
        for j, _w in lst:
            indeg[j] += 1
    topo: list[int] = []
    stack = [i for i in range(n) if indeg[i] == 0]
    while stack:
        i = stack.pop()
        topo.append(i)
        for j, _w in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                stack.append(j)
    if len(topo) < n:
        ref.loops = True
        _lasso(ref, order, succ, parent, {i for i in range(n) if indeg[i] > 0}, domain, policy)
        return ref

    # exact worst case: longest path (entries into call / tool_exec states) in the acyclic graph
    start_w = weight(root)
    best: list[dict[str, tuple[int, int]]] = [dict() for _ in range(n)]
    for i in reversed(topo):
        cfg = order[i]
        if kinds[cfg.state] == "halt":
            best[i] = {policy.states[cfg.state].outcome or "?": (0, 0)}
            continue
        acc: dict[str, tuple[int, int]] = {}
        for j, (wc, wb) in succ[i]:
            for outcome, (c, b) in best[j].items():
                old = acc.get(outcome, (0, 0))
                acc[outcome] = (max(old[0], c + wc), max(old[1], b + wb))
        best[i] = acc
    ref.by_outcome = {
        o: {"model_calls": c + start_w[0], "tool_batches": b + start_w[1]} for o, (c, b) in sorted(best[0].items())
    }
    ref.worst = {
        "model_calls": max((f["model_calls"] for f in ref.by_outcome.values()), default=0),
        "tool_batches": max((f["tool_batches"] for f in ref.by_outcome.values()), default=0),
    }
    longest = [0.0] * n
    for i in reversed(topo):
        longest[i] = max((waited.get((i, j), 0.0) + longest[j] for j, _w in succ[i]), default=0.0)
    ref.worst_backoff = longest[0]
    ix = {name: policy.counter_index(name) for name in ("model_calls", "tool_batches")}
    ref.worst_counter = {
        name: max((cfg.counters[i] for cfg in order if kinds[cfg.state] == "halt"), default=0) for name, i in ix.items()
    }
    return ref


def backoff_wait(step: Any, event: Event, max_wait: float) -> float:
    """What the interpreter waits for a step's backoffs (written here from docs/language.md)."""
    asked = event.attrs.get("retry_after", 0.0)
    asked = asked if isinstance(asked, (int, float)) and not isinstance(asked, bool) and asked > 0 else 0.0
    return sum(max(d.delay, min(asked, max_wait)) for d in step.directives if type(d.action).__name__ == "Backoff")


def _lasso(
    ref: Reference,
    order: list[Config],
    succ: list[list[tuple[int, tuple[int, int]]]],
    parent: dict[int, tuple[int, Event]],
    cyclic: set[int],
    domain: Callable[[str, str], list[Event]],
    policy: Policy,
) -> None:
    """The shallowest configuration that lies on a cycle, a run to it and the cycle back."""
    for start in sorted(cyclic):
        prev: dict[int, int | None] = {start: None}
        q = deque([start])
        found: int | None = None
        while q and found is None:
            k = q.popleft()
            for j, _w in succ[k]:
                if j == start:
                    found = k
                    break
                if j in cyclic and j not in prev:
                    prev[j] = k
                    q.append(j)
        if found is None:
            continue
        cyc = [found]
        while prev[cyc[-1]] is not None:
            cyc.append(prev[cyc[-1]])  # type: ignore[arg-type]
        cyc.reverse()  # start ... found
        path: list[int] = [start]
        while path[-1] in parent:
            path.append(parent[path[-1]][0])
        path.reverse()  # 0 ... start
        run: list[tuple[str, str, dict[str, Any], str]] = []
        for i in range(1, len(path)):
            ev = parent[path[i]][1]
            run.append((order[path[i - 1]].state, ev.name, dict(ev.attrs), order[path[i]].state))
        ref.loop_start = len(run)
        nodes = cyc + [start]
        for a, b in zip(nodes, nodes[1:]):
            ev = _event_between(policy, order[a], order[b], domain)
            run.append((order[a].state, ev.name, dict(ev.attrs), order[b].state))
        ref.lasso = run
        return


def _event_between(policy: Policy, a: Config, b: Config, domain: Callable[[str, str], list[Event]]) -> Event:
    for ev_name in KINDS[policy.states[a.state].kind].event_names:
        for ev in domain(a.state, ev_name):
            if policy.step(a, ev).after == b:
                return ev
    raise AssertionError("no event leads between two linked configurations")  # pragma: no cover


def replays_as_cycle(policy: Policy, steps: Iterable[tuple[str, str, dict[str, Any]]], loop_start: int | None) -> bool:
    """Does this run, replayed through ``Policy.step``, return to the configuration at ``loop_start``?"""
    if loop_start is None:
        return False
    cfg = policy.initial_config()
    seen: list[Config] = []
    for state, event, attrs in steps:
        if cfg.state != state:
            return False
        seen.append(cfg)
        cfg = policy.step(cfg, Event(event, dict(attrs))).after
    return loop_start < len(seen) and cfg == seen[loop_start]


def format_lasso(ref: Reference) -> str:
    lines = []
    for i, (s, e, a, to) in enumerate(ref.lasso):
        mark = "   <- loop starts" if i == ref.loop_start else ""
        shown = ", ".join(f"{k}={v!r}" for k, v in a.items())
        lines.append(f"{i + 1:>3}. {s}: {e}({shown}) -> {to}{mark}")
    return "\n".join(lines)


# =========================================================================== the comparison

MODES = {
    "default": {},
    # counter elimination only, as on a policy too large to enumerate (machines/default.yaml)
    "elim": {"enumerate_limit": 0},
}


@dataclass
class Finding:
    kind: str
    """false_proven_halts | false_proven_bound | false_proven_events (false PROVEN);
    false_alarm_halts; outcome_bound_low (a per-outcome bound too low, or a reachable outcome
    missing); false_claim_dead / false_claim_unreachable (the structure report says a transition
    never fires or a state is unreachable, and a run shows otherwise); checker_crash."""
    detail: str
    absent_only: bool = False
    """Only events with an absent attribute show it (the interpreter always fills attributes)."""


@dataclass
class Comparison:
    mode: str
    ref: Reference
    check_halts: bool | None = None
    check_events: bool | None = None
    check_worst: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    slack: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def false_proven(self) -> list[Finding]:
        return [f for f in self.findings if f.kind.startswith("false_proven")]

    @property
    def false_alarms(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == "false_alarm_halts"]


def run_check(policy: Policy, mode: str = "default") -> Any:
    from loopspec.verify import check_policy

    return check_policy(policy, witness_seconds=0.02, **MODES[mode])


def compare(policy: Policy, mode: str = "default", absent: bool = True, limit: int = 20_000, ref: Reference | None = None) -> Comparison:
    """Check ``policy`` and hold the result against the reference explorer.

    With ``absent`` the reference also sends events that lack an attribute; a finding that only
    those events show is marked ``absent_only`` (the interpreter always fills every attribute, so
    such a finding matters only once a cassette or a new event source omits one).
    """
    import time

    if ref is None:
        ref = explore(policy, absent=absent, limit=limit)
    out = Comparison(mode, ref)
    if ref.skipped is not None:
        return out
    t0 = time.perf_counter()
    try:
        result = run_check(policy, mode)
    except Exception as exc:  # a crash is a finding, not a harness error
        out.findings.append(Finding("checker_crash", f"{type(exc).__name__}: {exc}"))
        return out
    out.seconds = time.perf_counter() - t0
    props = result.properties
    out.check_halts = props["halts"].status != "fail"
    out.check_events = props["events_handled"].status != "fail"
    out.check_worst = {b: f.value for b, f in result.worst_case.items()}
    if ref.halts and out.check_halts:
        out.slack = {b: out.check_worst[b] - v for b, v in ref.worst.items() if b in out.check_worst}
    found = _findings(policy, ref, result, out)
    if found and absent:
        typed = explore(policy, absent=False, limit=limit)
        keys = {k for k, _f in _findings(policy, typed, result, out)} if typed.skipped is None else set()
        for k, f in found:
            f.absent_only = k not in keys
    out.findings = [f for _k, f in found]
    if ref.halts and not out.check_halts:
        cex = props["halts"].counterexample
        real = False
        if cex is not None and getattr(cex, "concrete", False):
            real = replays_as_cycle(policy, [s.as_tuple() for s in cex.steps], cex.loop_start)
        if not real:
            out.findings.append(Finding("false_alarm_halts", "check fails halts; neither the reference nor the checker's own counterexample shows a loop"))
    return out


def _findings(policy: Policy, ref: Reference, result: Any, out: Comparison) -> list[tuple[str, Finding]]:
    """Every way ``result`` claims more than ``ref`` shows, keyed for the absent-only comparison."""
    found: list[tuple[str, Finding]] = []
    if ref.loops and out.check_halts:
        found.append(("halts", Finding("false_proven_halts", "check proves halts but a run loops:\n" + format_lasso(ref))))
    if ref.policy_errors and out.check_events:
        st, ev, attrs = ref.policy_errors[0]
        found.append(("events", Finding(
            "false_proven_events", f"check says every event is handled, but '{ev}' {attrs} in '{st}' has no transition"
        )))
    if ref.halts and out.check_halts:
        for b, exact in ref.worst.items():
            upper = out.check_worst.get(b)
            if upper is not None and upper < exact:
                found.append((f"bound:{b}", Finding("false_proven_bound", f"{b}: check's upper bound {upper} < exact worst case {exact}")))
        for o, figs in ref.by_outcome.items():
            have = result.by_outcome.get(o)
            for b, exact in figs.items():
                upper = None if have is None or b not in have else have[b].value
                if upper is None or upper < exact:
                    found.append((f"outcome:{o}:{b}", Finding("outcome_bound_low", f"outcome {o}: {b} bound {upper} < exact {exact}")))
        wall = result.wall_time
        if wall is None or wall.parts["backoff"] < ref.worst_backoff - 1e-9:
            have = None if wall is None else wall.parts["backoff"]
            found.append(("bound:backoff", Finding(
                "false_proven_bound", f"backoff: check's wall-time bound {have} s < a run that waits {ref.worst_backoff} s"
            )))
    # the structure report's claims: a transition that never fires, a state no run reaches
    structure = result.structure.to_json()
    for d in structure.get("shadowed_transitions", ()):
        if d["transition"] in ref.fired:
            found.append((f"dead:{d['transition']}", Finding("false_claim_dead", f"check says '{d['transition']}' never fires ({d['reason']}); a run takes it")))
    for st in structure.get("unreachable_states", ()):
        if st in ref.reached:
            found.append((f"unreachable:{st}", Finding("false_claim_unreachable", f"check says state '{st}' is unreachable; a run reaches it")))
    return found


def checker_event_cases() -> DomainFn | None:
    """The checker's own event cases, when its abstraction still offers them (triage only)."""
    try:
        from loopspec.verify.abstraction import event_cases
    except ImportError:  # pragma: no cover - the abstraction is being rewritten
        return None
    return event_cases  # type: ignore[no-any-return]


def triage(policy: Policy, finding: Finding, ref: Reference, limit: int = 20_000) -> str:
    """A first guess at the root cause of a false PROVEN (a label for the report, not a proof).

    - ``event-cases``: the reference driven by the checker's own event cases agrees with the
      checker, so the cases miss the events that show the defect;
    - ``backstop-escape``: tool_batches.exhausted is a call state (the redirect skips model_calls);
    - ``absent-attribute``: only events lacking an attribute show it;
    - ``other``: none of the above: a new defect class, look here first.
    """
    if finding.absent_only:
        return "absent-attribute"
    cases = checker_event_cases()
    if cases is not None:
        narrow = explore(policy, absent=False, limit=limit, events=cases)
        if narrow.skipped is None:
            if finding.kind == "false_proven_halts" and not narrow.loops:
                return "event-cases"
            if finding.kind == "false_proven_events" and not narrow.policy_errors:
                return "event-cases"
            if finding.kind == "false_proven_bound" and narrow.halts:
                b = finding.detail.split(":")[0]
                if narrow.worst.get(b, 0) < ref.worst.get(b, 0):
                    # the exact figure under the checker's cases is below the real one; is the
                    # checker's bound at least that? then the cases are the whole story
                    upper = int(finding.detail.split("upper bound ")[1].split(" ")[0])
                    if upper >= narrow.worst.get(b, 0):
                        return "event-cases"
    exhausted = policy.backstops["tool_batches"].exhausted
    if policy.states[exhausted].kind == "call":
        return "backstop-escape"
    return "other"


def load(text: str, name: str = "generated.yaml") -> Policy:
    return load_policy_text(text, name)
