"""Reading the ``budgets:`` section: usage budgets, declared like the backstops.

A budget's amount (tokens, cost, working time) is a float the interpreter measures outside the
configuration, so its cap cannot be enforced on a transition like a counter's. It acts where a
backstop does, on entering a ``call`` state, and its ``exhausted`` state must therefore be a halt.
"""

from __future__ import annotations

import math
from typing import Any

import loopspec.language.codes as codes
from .alphabet import BUDGET_KEYS, BUDGETS, budget_flags
from .diagnostics import Position, article
from .reader import type_name
from .resolve import Resolver
from .structure import Budget
from .yamlsource import YMap

MAX_AMOUNT = 1e12
"""The largest cap a budget may state (tokens, dollars or seconds)."""


class BudgetReader(Resolver):
    def read_budgets(self, root: YMap) -> dict[str, Budget]:
        """Read ``budgets:`` (optional); its built-in flags join the declared ones, so guards may read them."""
        out: dict[str, Budget] = {}
        m = self.section(root, "budgets", "budgets")
        if m is None:
            return out
        self.unknown_keys(m, tuple(BUDGETS), "budgets", "budgets")
        for name in BUDGETS:
            if name not in m:
                continue
            path = f"budgets.{name}"
            b = self.expect_map(m[name], path, m.pos_of(name), "a budget ({max: N, exhausted: STATE})")
            if b is None:
                continue
            self.unknown_keys(b, BUDGET_KEYS, path, "a budget")
            cap = self.amount(b.get("max"), f"{path}.max", b.pos_of("max"), "max") if "max" in b else None
            if "max" not in b:
                self.error(codes.MISSING_KEY, f"budget '{name}' needs a 'max'", path, b.pos, "every budget has a cap")
            exhausted = b.get("exhausted")
            ok = cap is not None
            if exhausted is None:
                self.error(codes.MISSING_KEY, f"budget '{name}' needs 'exhausted' (the halt it ends in)", path, b.pos)
                ok = False
            elif self.ref_state(exhausted, f"{path}.exhausted", b.pos_of("exhausted")):
                ek = self.state_kinds[exhausted]
                if ek != "halt":
                    self.error(
                        codes.WRONG_STATE_KIND,
                        f"{name}.exhausted must be a halt state, '{exhausted}' is {article(ek)} state",
                        f"{path}.exhausted",
                        b.pos_of("exhausted"),
                        "use wrap_up for one last summary call, then halt",
                    )
            else:
                ok = False
            wrap_up = b.get("wrap_up")
            if wrap_up is not None:
                self.check_wrap_up(wrap_up, f"{path}.wrap_up", b.pos_of("wrap_up"))
            warn_at = b.get("warn_at")
            warning = b.get("warning")
            if warn_at is not None:
                warn_at = self.amount(warn_at, f"{path}.warn_at", b.pos_of("warn_at"), "warn_at")
                if warn_at is not None and cap is not None and warn_at > cap:
                    self.error(codes.OUT_OF_RANGE, f"warn_at {warn_at:g} is above max {cap:g}", f"{path}.warn_at", b.pos_of("warn_at"))
                if warning is None:
                    self.error(codes.MISSING_KEY, "warn_at needs a 'warning' template", path, b.pos_of("warn_at"))
            elif warning is not None:
                self.error(codes.MISSING_KEY, "a warning needs 'warn_at' (the amount it is appended at)", path, b.pos_of("warning"))
            if warning is not None:
                self.ref_template(warning, f"{path}.warning", b.pos_of("warning"))
            least = b.get("min_per_call")
            if least is not None:
                least = self.amount(least, f"{path}.min_per_call", b.pos_of("min_per_call"), "min_per_call")
            for flag in budget_flags(name):
                if flag in self.flags:
                    fm = root.get("flags")
                    where = fm.key_pos.get(flag) if isinstance(fm, YMap) else None
                    self.error(codes.RESERVED_NAME, f"flag '{flag}' is built in when budget '{name}' is declared", f"flags.{flag}", where or m.key_pos[name])
                self.flags.add(flag)
                self.budget_flag_names = self.budget_flag_names | {flag}
            if ok and cap is not None and isinstance(exhausted, str):
                out[name] = Budget(
                    name, cap, exhausted, wrap_up if isinstance(wrap_up, str) else None,
                    warn_at if isinstance(warn_at, float) and warning is not None else None,
                    warning if isinstance(warning, str) else None,
                    least if isinstance(least, float) else None, str(b.get("doc", "")),
                )
        return out

    def amount(self, value: Any, path: str, pos: Position | None, what: str) -> float | None:
        """A finite number more than 0 and at most MAX_AMOUNT, as a float."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(codes.WRONG_TYPE, f"{what} must be a number, got {type_name(value)}", path, pos)
            return None
        if not (math.isfinite(value) and 0 < value <= MAX_AMOUNT):
            self.error(codes.OUT_OF_RANGE, f"{what} {value!r} must be a finite number more than 0 and at most {MAX_AMOUNT:g}", path, pos)
            return None
        return float(value)
