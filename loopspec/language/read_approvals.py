"""Reading a policy's ``approvals:`` section into :class:`~loopspec.language.approvals.ApprovalRules`,
with a ``file:line:col`` diagnostic for every mistake."""

from __future__ import annotations

import math
from typing import Any

import loopspec.language.codes as codes
from .approvals import (
    APPROVAL_LEVELS,
    APPROVALS_KEYS,
    ARG_OPS,
    CONDITION_FORMS,
    RULE_KEYS,
    AllOf,
    AnyOf,
    ApprovalRule,
    ApprovalRules,
    ArgTest,
    Condition,
    NotThat,
)
from .diagnostics import Position, did_you_mean
from .checks import Checks
from .yamlsource import YMap


class ApprovalReader(Checks):
    def read_approvals(self, root: YMap) -> ApprovalRules:
        node = root.get("approvals")
        if node is None:
            return ApprovalRules()
        m = self.expect_map(node, "approvals", root.pos_of("approvals"), "approvals")
        if m is None:
            return ApprovalRules()
        self.unknown_keys(m, APPROVALS_KEYS, "approvals", "approvals")
        auto = m.get("auto_approve", False)
        if not isinstance(auto, bool):
            self.error(codes.WRONG_TYPE, "auto_approve must be true or false", "approvals.auto_approve", m.pos_of("auto_approve"))
            auto = False
        cap = m.get("spending_cap", 0)
        if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not math.isfinite(cap) or cap < 0:
            self.error(codes.OUT_OF_RANGE, f"spending_cap must be a finite number of at least 0, got {cap!r}",
                       "approvals.spending_cap", m.pos_of("spending_cap"),
                       "the most auto-approved calls may spend in a session, in the unit the tools' cost estimators use")
            cap = 0
        doc = m.get("doc", "")
        rules: list[ApprovalRule] = []
        lst = self.expect_list(m.get("rules", []), "approvals.rules", m.pos_of("rules"), "approvals.rules")
        for i, item in enumerate(lst or []):
            rule = self._read_rule(item, f"approvals.rules[{i}]", lst.pos_of(i) if lst is not None else None)
            if rule is not None:
                rules.append(rule)
        return ApprovalRules(tuple(rules), auto, float(cap), doc if isinstance(doc, str) else "")

    def _read_rule(self, node: Any, path: str, pos: Position | None) -> ApprovalRule | None:
        r = self.expect_map(node, path, pos, "an approval rule")
        if r is None:
            return None
        self.unknown_keys(r, RULE_KEYS, path, "an approval rule")
        tool = r.get("tool")
        if not isinstance(tool, str) or not tool:
            self.error(codes.MISSING_KEY if tool is None else codes.WRONG_TYPE, "an approval rule names its tool: tool: NAME",
                       f"{path}.tool", r.pos_of("tool") if "tool" in r else r.pos)
            return None
        level = r.get("approval")
        if level not in APPROVAL_LEVELS:
            self.error(codes.OUT_OF_RANGE if level is not None else codes.MISSING_KEY,
                       f"approval must be one of {', '.join(APPROVAL_LEVELS)}, got {level!r}", f"{path}.approval",
                       r.pos_of("approval") if "approval" in r else r.pos,
                       did_you_mean(level, APPROVAL_LEVELS) if isinstance(level, str) else
                       "none: runs; ask: a person or auto-approval under the cap; person: always a person")
            return None
        when = None
        if "when" in r:
            when = self._read_condition(r["when"], f"{path}.when", r.pos_of("when"))
            if when is None:
                return None
        doc = r.get("doc", "")
        return ApprovalRule(tool, str(level), when, doc if isinstance(doc, str) else "")

    def _read_condition(self, node: Any, path: str, pos: Position | None) -> Condition | None:
        g = self.expect_map(node, path, pos, "a condition")
        if g is None:
            return None
        forms = [k for k in CONDITION_FORMS if k in g]
        if len(forms) != 1:
            self.error(codes.BAD_GUARD, "a condition on a call has exactly one of: all, any, not, arg", path, g.pos,
                       "test an argument with {arg: NAME, eq: VALUE}; combine tests with all: [...] or any: [...]")
            return None
        form = forms[0]
        if form in ("all", "any"):
            self.unknown_keys(g, (form,), path, f"an {form} condition")
            lst = self.expect_list(g[form], f"{path}.{form}", g.pos_of(form), form)
            if lst is None:
                return None
            if not lst:
                self.error(codes.BAD_GUARD, f"{form} needs at least one condition", path, g.pos)
                return None
            parts = [self._read_condition(x, f"{path}.{form}[{i}]", lst.pos_of(i)) for i, x in enumerate(lst)]
            if any(p is None for p in parts):
                return None
            return AllOf(tuple(parts)) if form == "all" else AnyOf(tuple(parts))  # type: ignore[arg-type]
        if form == "not":
            self.unknown_keys(g, ("not",), path, "a not condition")
            inner = self._read_condition(g["not"], f"{path}.not", g.pos_of("not"))
            return NotThat(inner) if inner is not None else None
        self.unknown_keys(g, ("arg", "default", *ARG_OPS), path, "an arg condition")
        arg = g["arg"]
        if not isinstance(arg, str) or not arg:
            self.error(codes.WRONG_TYPE, "arg names one argument of the call: arg: NAME", f"{path}.arg", g.pos_of("arg"))
            return None
        ops = [op for op in ARG_OPS if op in g]
        if len(ops) > 1:
            self.error(codes.BAD_GUARD, "an arg condition takes at most one comparison", path, g.pos)
            return None
        extra = {"default": g["default"]} if "default" in g else {}
        if not ops:
            return ArgTest(arg, "truthy", None, **extra)
        op, value = ops[0], g[ops[0]]
        vpath, vpos = f"{path}.{op}", g.pos_of(op)
        if op == "in":
            lst = self.expect_list(value, vpath, vpos, "in")
            return None if lst is None else ArgTest(arg, "in", tuple(lst), **extra)
        if op in ("lt", "le", "ge", "gt") and (isinstance(value, bool) or not isinstance(value, (int, float))):
            self.error(codes.WRONG_TYPE, f"'{op}' compares with a number, got {value!r}", vpath, vpos)
            return None
        if op in ("contains", "startswith") and not isinstance(value, str):
            self.error(codes.WRONG_TYPE, f"{op} takes a string", vpath, vpos)
            return None
        return ArgTest(arg, op, value, **extra)
