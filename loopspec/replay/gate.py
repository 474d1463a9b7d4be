"""The promotion gate of ``loopspec diff --fail-on regression``: which changed cassettes are
regressions, and the markdown report a CI job posts on the pull request.

A cassette regresses when, from the old policy to the new:

- it passed its expectations and now fails them (verdict ``pass`` -> anything else);
- it ended ``completed`` and now ends otherwise, or moves into an outcome the user lists as worse
  (``--worse backstop,guardrail``) from one not listed;
- it spends more model calls or tool batches than the tolerance allows (``--tolerance``, +10 % by
  default; ``new > old * (1 + tolerance)``, in exact arithmetic).

Every function here is pure over the ``diff`` rows (``loopspec diff --json``'s ``cassettes``), so
the report depends only on the rows, which :mod:`.corpus` returns in path order.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Sequence

DEFAULT_TOLERANCE = Fraction(1, 10)


@dataclass(frozen=True)
class GateRule:
    """What counts as a regression: outcomes listed as worse, and the spending tolerance."""

    worse: frozenset[str] = frozenset()
    tolerance: Fraction = DEFAULT_TOLERANCE


def parse_tolerance(text: str) -> Fraction:
    """``"10%"``, ``"+10%"`` or ``"10"`` (percent) -> Fraction(1, 10); ValueError otherwise."""
    body = text.strip().removeprefix("+").removesuffix("%").strip()
    try:
        value = Fraction(body)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"--tolerance takes a percentage such as 10% or 0%, not {text!r}") from None
    if value < 0:
        raise ValueError(f"--tolerance {text}: a negative tolerance would fail cassettes that spend less")
    return value / 100


def parse_worse(text: str, outcomes: Sequence[str]) -> frozenset[str]:
    """``"backstop,guardrail"`` -> the set; ValueError naming an unknown outcome."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in outcomes]
    if unknown:
        raise ValueError(f"--worse: unknown outcome {unknown[0]!r}; outcomes are {', '.join(outcomes)}")
    return frozenset(names)


def _over(old: int, new: int, tolerance: Fraction) -> bool:
    return new > old * (1 + tolerance)


def regressions(row: dict[str, Any], rule: GateRule) -> list[str]:
    """Why this ``diff`` row is a regression under ``rule``: one reason per rule it breaks, in a
    fixed order; empty when it is not one."""
    o, n = row["old"], row["new"]
    reasons = []
    if o["verdict"] == "pass" and n["verdict"] != "pass":
        reasons.append(f"passed under OLD, {n['verdict']} under NEW")
    if o["outcome"] == "completed" and n["outcome"] != "completed":
        reasons.append(f"completed under OLD, {n['outcome']} under NEW")
    elif n["outcome"] in rule.worse and o["outcome"] not in rule.worse:
        reasons.append(f"moved into {n['outcome']} (listed as worse) from {o['outcome']}")
    for key, noun in (("model_calls", "model calls"), ("tool_batches", "tool batches")):
        if _over(o[key], n[key], rule.tolerance):
            reasons.append(f"{noun} {o[key]} -> {n[key]}, over the +{_percent(rule.tolerance)} tolerance")
    return reasons


def _percent(f: Fraction) -> str:
    p = f * 100
    return f"{p.numerator}%" if p.denominator == 1 else f"{float(p):g}%"


def judge(rows: list[dict[str, Any]], rule: GateRule) -> list[dict[str, Any]]:
    """``rows`` with a ``regressions`` list added to each (a new dict each)."""
    return [dict(r, regressions=regressions(r, rule)) for r in rows]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _side(s: dict[str, Any]) -> str:
    return f"{s['outcome']}, {s['verdict']}, {s['model_calls']} calls, {s['tool_batches']} batches"


def _difference(row: dict[str, Any]) -> str:
    d = row["first_difference"]
    if not d:
        return ""

    def fmt(s: list[str] | None) -> str:
        return "(ended)" if s is None else f"`{s[0]} --{s[1]}--> {s[2]}`"

    return f"step {d['step']}: {fmt(d['old'])} vs {fmt(d['new'])}"


def markdown(rows: list[dict[str, Any]], *, old: str, new: str, corpus: str, rule: GateRule,
             shard: str | None = None) -> str:
    """A report fit for a pull-request comment: the verdict first, then a table of regressions and
    one of the other changes. ``rows`` are :func:`judge`'s, in path order; nothing in it depends on
    timing, jobs or backend."""
    bad = [r for r in rows if r["regressions"]]
    changed = [r for r in rows if r["changed"] and not r["regressions"]]
    worse = ", ".join(sorted(rule.worse)) or "none"
    where = f" (shard {shard})" if shard else ""
    head = "REGRESSION" if bad else "no regression"
    lines = [
        f"## loopspec diff: {head}",
        "",
        f"`{old}` -> `{new}` over `{corpus}`{where}: {len(rows)} cassettes, {len(bad)} regressed, "
        f"{len(changed)} changed otherwise.",
        "",
        f"Gate: pass -> fail, completed -> other outcome, into a worse outcome ({worse}), "
        f"or more than +{_percent(rule.tolerance)} model calls or tool batches.",
    ]
    if bad:
        lines += ["", "### Regressions", "", "| cassette | old | new | why | first difference |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| `{_cell(r['name'])}` | {_cell(_side(r['old']))} | {_cell(_side(r['new']))} | "
                  f"{_cell('; '.join(r['regressions']))} | {_cell(_difference(r))} |" for r in bad]
    if changed:
        lines += ["", "### Other changes", "", "| cassette | old | new | first difference |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| `{_cell(r['name'])}` | {_cell(_side(r['old']))} | {_cell(_side(r['new']))} | "
                  f"{_cell(_difference(r))} |" for r in changed]
    return "\n".join(lines) + "\n"
