"""Reading a transition's ``when``: a guard mapping into a :mod:`~loopspec.language.guards` value."""

from __future__ import annotations

from typing import Any

import loopspec.language.codes as codes
from .alphabet import ATTR_OPS, COMPARATORS, GUARD_FORMS, KINDS
from .diagnostics import Position, article, did_you_mean
from .guards import AllOf, AnyOf, AttrTest, CounterCmp, FlagIs, Guard, Not
from .resolve import Resolver


class GuardReader(Resolver):
    def read_guard(self, node: Any, path: str, pos: Position | None, kind: str, event: str) -> Guard | None:
        g = self.expect_map(node, path, pos, "a guard")
        if g is None:
            return None
        forms = [k for k in GUARD_FORMS if k in g]
        if len(forms) != 1:
            self.error(
                codes.BAD_GUARD,
                "a guard has exactly one of: all, any, not, counter, flag, attr",
                path,
                g.pos,
                "combine several tests with all: [...] or any: [...]",
            )
            return None
        form = forms[0]
        if form in ("all", "any"):
            self.unknown_keys(g, (form,), path, f"{article(form)} guard")
            lst = self.expect_list(g[form], f"{path}.{form}", g.pos_of(form), f"{form}")
            if lst is None:
                return None
            parts = [
                self.read_guard(item, f"{path}.{form}[{i}]", lst.pos_of(i), kind, event) for i, item in enumerate(lst)
            ]
            if any(p is None for p in parts):
                return None
            if not parts:
                self.error(codes.BAD_GUARD, f"{form} needs at least one guard", path, g.pos)
                return None
            return AllOf(tuple(parts)) if form == "all" else AnyOf(tuple(parts))  # type: ignore[arg-type]
        if form == "not":
            self.unknown_keys(g, ("not",), path, "a not guard")
            inner = self.read_guard(g["not"], f"{path}.not", g.pos_of("not"), kind, event)
            return Not(inner) if inner is not None else None
        if form == "counter":
            self.unknown_keys(g, ("counter", *COMPARATORS), path, "a counter guard")
            c = self.counter_by_name(g["counter"], f"{path}.counter", g.pos_of("counter"))
            ops = [op for op in COMPARATORS if op in g]
            if len(ops) != 1:
                self.error(codes.BAD_GUARD, "a counter guard needs exactly one of lt, le, eq, ne, ge, gt", path, g.pos)
                return None
            if c is None:
                return None
            raw = g[ops[0]]
            value = c.max if raw == "max" else raw
            if isinstance(value, bool) or not isinstance(value, int):
                self.error(codes.WRONG_TYPE, f"compare a counter with an integer or 'max', got {raw!r}", f"{path}.{ops[0]}", g.pos_of(ops[0]))
                return None
            return CounterCmp(c.name, c.index, ops[0], value)
        if form == "flag":
            self.unknown_keys(g, ("flag", "is"), path, "a flag guard")
            if not self.flag_ok(g["flag"], f"{path}.flag", g.pos_of("flag")):
                return None
            value = g.get("is", True)
            if not isinstance(value, bool):
                self.error(codes.WRONG_TYPE, "'is' must be true or false", f"{path}.is", g.pos_of("is"))
                return None
            return FlagIs(g["flag"], value)
        # attr
        ops_all = ATTR_OPS
        self.unknown_keys(g, ("attr", *ops_all), path, "an attr guard")
        attr_name = g["attr"]
        espec = KINDS[kind].event(event)
        attr = espec.attr(attr_name) if espec and isinstance(attr_name, str) else None
        if attr is None:
            names = [a.name for a in espec.attrs] if espec else []
            hint = did_you_mean(attr_name, names) if names else f"event '{event}' carries no attributes"
            self.error(codes.UNKNOWN_ATTRIBUTE, f"event '{event}' has no attribute {attr_name!r}", f"{path}.attr", g.pos_of("attr"), hint)
            return None
        ops = [op for op in ops_all if op in g]
        if len(ops) > 1:
            self.error(codes.BAD_GUARD, "an attr guard takes at most one comparison", path, g.pos)
            return None
        if not ops:
            return AttrTest(attr.name, "truthy")
        op = ops[0]
        value = g[op]
        vpath, vpos = f"{path}.{op}", g.pos_of(op)
        if op == "in":
            lst = self.expect_list(value, vpath, vpos, "in")
            if lst is None:
                return None
            for i, v in enumerate(lst):
                self.check_attr_value(attr, v, f"{vpath}[{i}]", lst.pos_of(i))
            return AttrTest(attr.name, "in", tuple(lst))
        if op == "contains":
            if attr.type not in ("str", "list"):
                self.error(codes.BAD_GUARD, f"contains applies to str or list attributes; '{attr.name}' is {attr.type}", vpath, vpos)
                return None
            if not isinstance(value, str):
                self.error(codes.WRONG_TYPE, "contains takes a string", vpath, vpos)
                return None
            return AttrTest(attr.name, "contains", value)
        if attr.type in ("list", "bool") and op not in ("eq", "ne"):
            self.error(codes.BAD_GUARD, f"'{op}' does not apply to {article(attr.type)} attribute", vpath, vpos)
            return None
        self.check_attr_value(attr, value, vpath, vpos)
        return AttrTest(attr.name, op, value)

    def check_attr_value(self, attr: Any, value: Any, path: str, pos: Position | None) -> None:
        ok = {
            "bool": lambda v: isinstance(v, bool),
            "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "str": lambda v: isinstance(v, str),
            "list": lambda v: isinstance(v, list),
        }[attr.type](value)
        if not ok:
            self.error(codes.WRONG_TYPE, f"attribute '{attr.name}' is {attr.type}; {value!r} never matches", path, pos)
        elif attr.values and value not in attr.values:
            self.error(
                codes.OUT_OF_RANGE,
                f"attribute '{attr.name}' is one of {', '.join(attr.values)}; {value!r} never matches",
                path,
                pos,
                did_you_mean(value, attr.values),
            )
