"""The result of ``loopspec check``: one dataclass, rendered as text or JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loopspec.language.alphabet import KINDS

from .counterexample import CexStep, Counterexample
from .properties import PROPERTY_DOCS
from .structure import Structure
from .budget_bounds import BudgetBound
from .termination import BackstopLoop, Elimination
from .wall_time import WallTime

PASS, FAIL, WARN = "pass", "fail", "warn"


@dataclass
class PropertyResult:
    name: str
    status: str
    """``pass``, ``fail`` or ``warn`` (a finding that only ``--strict`` turns into a failure)."""
    reason: str
    counterexample: Counterexample | None = None
    findings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status != FAIL

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "passed": self.passed, "reason": self.reason}
        if self.findings:
            out["findings"] = list(self.findings)
        if self.counterexample is not None:
            out["counterexample"] = self.counterexample.to_json()
        return out


@dataclass
class Figure:
    """A worst-case figure: an upper bound, exact when a run reaching it was found."""

    value: int
    exact: bool
    lower: int

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "exact": self.exact, "lower": self.lower}

    def text(self) -> str:
        if self.exact:
            return f"{self.value}"
        return f"<= {self.value} (a run with {self.lower} found)"


@dataclass
class CheckResult:
    file: str
    policy: str
    strict: bool
    properties: dict[str, PropertyResult]
    worst_case: dict[str, Figure]
    """``model_calls`` and ``tool_batches`` per turn, over every path."""
    by_outcome: dict[str, dict[str, Figure]]
    wall_time: WallTime | None
    """The turn's worst-case wall-clock time; None when the policy is not proven to halt."""
    backstop_only_loops: list[BackstopLoop]
    """Loops whose bound passes through a backstop and that are not declared ``bounded_by`` it."""
    declared_loops: list[BackstopLoop]
    structure: Structure
    eliminations: list[Elimination]
    explored: int
    """Configurations explored: abstract nodes plus concrete configurations searched."""
    exploration: dict[str, Any]
    seconds: float
    method: str
    budgets: list[BudgetBound] = field(default_factory=list)
    """Per declared budget: the model calls it allows and the loops it bounds (min_per_call only)."""

    @property
    def halts(self) -> bool:
        return self.properties["halts"].passed

    @property
    def proven(self) -> bool:
        return all(p.passed for p in self.properties.values())

    @property
    def exit_code(self) -> int:
        return 0 if self.proven else 1

    @property
    def failed(self) -> list[str]:
        return [n for n, p in self.properties.items() if not p.passed]

    def counterexamples(self) -> dict[str, Counterexample]:
        return {n: p.counterexample for n, p in self.properties.items() if p.counterexample is not None and not p.passed}

    # -- rendering -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "policy": self.policy,
            "strict": self.strict,
            "proven": self.proven,
            "halts": self.halts,
            "exit_code": self.exit_code,
            "properties": {n: p.to_json() for n, p in self.properties.items()},
            "worst_case": {
                **{k: f.value for k, f in self.worst_case.items()},
                "exact": {k: f.exact for k, f in self.worst_case.items()},
                "lower": {k: f.lower for k, f in self.worst_case.items()},
                "by_outcome": {
                    o: {**{k: f.value for k, f in figs.items()}, "exact": {k: f.exact for k, f in figs.items()}}
                    for o, figs in self.by_outcome.items()
                },
                "wall_time": None if self.wall_time is None else self.wall_time.to_json(),
            },
            "backstop_only_loops": [_loop_json(b) for b in self.backstop_only_loops],
            "declared_backstop_loops": [_loop_json(b) for b in self.declared_loops],
            "structure": self.structure.to_json(),
            "loops": [
                {
                    "counter": el.counter,
                    "backstop": el.backstop,
                    "level": el.level,
                    "edges": sorted({e.label for e in el.edges}),
                    "fires_at_most": el.fires,
                    "per_turn": el.absolute,
                    "through_backstops": list(el.through),
                }
                for el in _merge_eliminations(self.eliminations)
            ],
            "explored": self.explored,
            "exploration": dict(self.exploration),
            "seconds": round(self.seconds, 4),
            "method": self.method,
            **({"budgets": [b.to_json() for b in self.budgets]} if self.budgets else {}),
        }

    def format_text(self) -> str:
        lines: list[str] = []
        verdict = "PROVEN" if self.proven else "FAILED"
        lines.append(f"{self.file}: {verdict}{' (strict)' if self.strict else ''}  [{self.policy}]")
        width = max(len(n) for n in self.properties)
        for name, p in self.properties.items():
            lines.append(f"  {p.status.upper():4}  {name:<{width}}  {p.reason}")
            for f in p.findings[:8]:
                lines.append(f"          - {f}")
            if len(p.findings) > 8:
                lines.append(f"          ... and {len(p.findings) - 8} more")
            cex = p.counterexample
            if cex is not None and p.status != PASS:
                if cex.concrete:
                    lines.append("          counterexample:")
                else:  # say why no recordable run was found, not just that one wasn't
                    why = f" ({cex.note})" if cex.note else ""
                    lines.append(f"          path (no replayable run: no cassette is written){why}:")
                for i, s in enumerate(cex.steps):
                    mark = "  <- loop" if cex.loop_start == i else ""
                    nxt = cex.steps[i + 1] if i + 1 < len(cex.steps) else None
                    shown = _shown_attrs(s, nxt)
                    attrs = ", ".join(f"{k}={v!r}" for k, v in shown.items() if v not in ("", [], 0, 0.0, False) or k in ("has_tool_calls", "mid_tool_call"))
                    measured = f"  [measured {', '.join(s.measured)}]" if s.measured else ""
                    lines.append(f"            {i + 1:>3}. {s.state}: {s.event}{'(' + attrs + ')' if attrs else ''} -> {s.to}{measured}{mark}")
        wc = self.worst_case
        lines.append(
            "worst case per turn: "
            + ", ".join(f"{k.replace('_', ' ')} {f.text()}" for k, f in wc.items())
        )
        if self.by_outcome:
            parts = []
            for o, figs in self.by_outcome.items():
                vals = "/".join(str(f.value) + ("" if f.exact else "+") for f in figs.values())
                parts.append(f"{o} {vals}")
            lines.append("  by outcome (" + "/".join(k.replace("_", " ") for k in wc) + "; + = upper bound): " + ", ".join(parts))
        if self.wall_time is not None:
            lines.extend(self.wall_time.lines())
        own = [el for el in _merge_eliminations(self.eliminations) if not el.backstop]
        if own:
            lines.append("loop bounds (each retry/continuation edge, by the counter that bounds it):")
            for el in own:
                scope = "per turn" if el.absolute else "per entry into its loop"
                events = ", ".join(sorted({e.label.split(" --")[1].split("[")[0] for e in el.edges}))
                lines.append(f"  {el.counter:<20} at most {el.fires} {scope}  ({events})")
        if self.backstop_only_loops:
            lines.append("loops bounded only by a backstop" + (" (error under --strict):" if self.strict else " (warning; --strict fails):"))
            for b in self.backstop_only_loops:
                lines.append(f"  - {b.edge}: {b.bound}")
        if self.declared_loops:
            lines.append("declared backstop loops: " + "; ".join(f"{b.edge} (bounded_by {b.backstop})" for b in self.declared_loops))
        if self.budgets:
            lines.append("budgets:")
            lines.extend(f"  {b.text()}" for b in self.budgets)
        st = self.structure
        if st.unreachable:
            lines.append("unreachable states: " + ", ".join(st.unreachable))
        for d in st.dead:
            lines.append(f"warning: {d.describe()}")
        lines.append(
            f"explored {self.explored} configurations ({self.exploration.get('abstract_nodes', 0)} abstract, "
            f"{self.exploration.get('concrete_configs', 0)} concrete; {self.exploration.get('model_steps', 0)} model steps) "
            f"in {self.seconds:.3f} s by {self.method}"
        )
        return "\n".join(lines)


_STUB_EVENTS = frozenset(KINDS["stub"].event_names)


def _shown_attrs(step: CexStep, nxt: CexStep | None) -> dict[str, Any]:
    """The attributes printed for one counterexample step.

    A stall and the stub built after it describe the same partial stream, but the adversary picks
    the stall's ``mid_tool_call`` and the stub's event separately, so a path may read
    ``stalled(mid_tool_call=False)`` and then ``mid_tool_call``. What the stub saw is what a real
    stream would show both times, and what ``--counterexample`` records, so the stall is printed
    with the stub's view.
    """
    attrs = dict(step.attrs)
    if step.event == "stalled" and nxt is not None and nxt.state == step.to and nxt.event in _STUB_EVENTS:
        attrs["mid_tool_call"] = nxt.event == "mid_tool_call"
        if "chars" in nxt.attrs:
            attrs["chars"] = nxt.attrs["chars"]
    return attrs


def _loop_json(b: BackstopLoop) -> dict[str, Any]:
    return {
        "edge": b.edge,
        "state": b.transition_source,
        "event": b.event,
        "order": b.order,
        "backstop": b.backstop,
        "counter": b.counter,
        "declared": b.declared,
        "reason": b.bound,
    }


def _merge_eliminations(els: list[Elimination]) -> list[Elimination]:
    """One entry per (counter, through) in the report: abstract copies of one loop are merged."""
    merged: dict[tuple[str, tuple[str, ...]], Elimination] = {}
    for el in els:
        key = (el.counter, el.through)
        m = merged.get(key)
        if m is None:
            merged[key] = Elimination(el.counter, el.backstop, list(el.edges), el.level, el.entries, el.fires, el.absolute, el.through)
        else:
            m.edges.extend(el.edges)
            m.fires = max(m.fires, el.fires)
            m.level = min(m.level, el.level)
    return list(merged.values())


__all__ = ["CheckResult", "Figure", "PropertyResult", "PROPERTY_DOCS", "PASS", "FAIL", "WARN"]
