"""Which coverage items (:class:`~.cover.Item`) the cassettes of a corpus fire under a policy:
from the replayed turns' steps, or from the trace records worker processes hand back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ..language.model import Policy, Step
from .cover import Item, coverage_items, move_items, reachable_items, run_items


def trace_items(policy: Policy, trace: Iterable[Mapping[str, Any]]) -> set[Item]:
    """The items a recorded trace covers (``TraceStep.to_json`` records: what a corpus replay on
    worker processes hands back), as :func:`run_items` finds them in the steps themselves."""
    out: set[Item] = set()
    for r in trace:
        if str(r.get("state")) in policy.states:
            out |= move_items(policy, str(r["state"]), str(r.get("event")), r.get("transition"), str(r.get("target")))
    if policy.states[policy.initial].kind == "halt":
        out.add(Item("halt", policy.initial))
    return out


@dataclass
class CorpusCoverage:
    """Which reachable items the cassettes of a corpus fire under a policy."""

    policy: str
    reachable: list[Item]
    unreachable: list[Item]
    fired: dict[Item, list[str]]
    """Item -> the cassettes that cover it."""
    cassettes: int

    @property
    def covered(self) -> list[Item]:
        return [i for i in self.reachable if self.fired.get(i)]

    @property
    def missing(self) -> list[Item]:
        return [i for i in self.reachable if not self.fired.get(i)]

    @property
    def ratio(self) -> float:
        return len(self.covered) / len(self.reachable) if self.reachable else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "cassettes": self.cassettes,
            "reachable": len(self.reachable),
            "covered": len(self.covered),
            "ratio": round(self.ratio, 4),
            "by_kind": {k: {"reachable": r, "covered": c} for k, (r, c) in self.by_kind().items()},
            "missing": [i.to_json() for i in self.missing],
            "unreachable": [i.to_json() for i in self.unreachable],
            "fired": {f"{i.kind}:{i.name}": names for i, names in sorted(self.fired.items())},
        }

    def by_kind(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for i in self.reachable:
            r, c = out.get(i.kind, (0, 0))
            out[i.kind] = (r + 1, c + (1 if self.fired.get(i) else 0))
        return out


def corpus_coverage(policy: Policy, runs: Iterable[tuple[str, Sequence[Step]]] = (),
                    traces: Iterable[tuple[str, Sequence[Mapping[str, Any]]]] = ()) -> CorpusCoverage:
    """Coverage of ``runs`` (cassette name, the replayed turn's steps) or ``traces`` (cassette
    name, its trace records) against the policy's items."""
    reachable = reachable_items(policy)
    fired: dict[Item, list[str]] = {}
    count = 0
    found = [(name, run_items(policy, steps)) for name, steps in runs]
    found += [(name, trace_items(policy, trace)) for name, trace in traces]
    for name, items in found:
        count += 1
        for item in items:
            fired.setdefault(item, []).append(name)
    return CorpusCoverage(
        policy.name,
        sorted(reachable),
        [i for i in coverage_items(policy) if i not in reachable],
        {i: sorted(v) for i, v in fired.items()},
        count,
    )
