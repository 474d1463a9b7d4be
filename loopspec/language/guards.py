"""Guards: the ``when`` of a transition, each a pure test of the configuration and the event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from .alphabet import COMPARATORS, Event
from .config import Config


def _compare(op: str, left: Any, right: Any) -> bool:
    try:
        if op == "lt":
            return bool(left < right)
        if op == "le":
            return bool(left <= right)
        if op == "eq":
            return bool(left == right)
        if op == "ne":
            return bool(left != right)
        if op == "ge":
            return bool(left >= right)
        if op == "gt":
            return bool(left > right)
    except TypeError:
        return False
    raise ValueError(op)  # pragma: no cover - validator only admits COMPARATORS


@dataclass(frozen=True)
class Always:
    """The guard of a transition written without ``when``."""

    def evaluate(self, policy: object, cfg: Config, event: Event) -> bool:
        return True


@dataclass(frozen=True)
class AllOf:
    parts: tuple["Guard", ...]

    def evaluate(self, policy: object, cfg: Config, event: Event) -> bool:
        return all(p.evaluate(policy, cfg, event) for p in self.parts)


@dataclass(frozen=True)
class AnyOf:
    parts: tuple["Guard", ...]

    def evaluate(self, policy: object, cfg: Config, event: Event) -> bool:
        return any(p.evaluate(policy, cfg, event) for p in self.parts)


@dataclass(frozen=True)
class Not:
    part: "Guard"

    def evaluate(self, policy: object, cfg: Config, event: Event) -> bool:
        return not self.part.evaluate(policy, cfg, event)


@dataclass(frozen=True)
class CounterCmp:
    """``{counter: NAME, OP: N}``; ``N`` may be ``max`` (the counter's own cap), resolved at compile time."""

    counter: str
    index: int
    op: str
    value: int

    def evaluate(self, policy: object, cfg: Config, event: Event) -> bool:
        return self.in_config(cfg)

    def in_config(self, cfg: Config) -> bool:
        """The test in ``cfg``, all it reads (the checker asks it without a policy or an event)."""
        return self.holds(cfg.counters[self.index])

    def holds(self, count: int) -> bool:
        """The comparison on the counter's value (what the checker's theories ask directly)."""
        return _compare(self.op, count, self.value)


@dataclass(frozen=True)
class FlagIs:
    flag: str
    value: bool = True

    def evaluate(self, policy: object, cfg: Config, event: Event) -> bool:
        return self.in_config(cfg)

    def in_config(self, cfg: Config) -> bool:
        """The test in ``cfg``, all it reads (the checker asks it without a policy or an event)."""
        return self.holds(self.flag in cfg.flags)

    def holds(self, present: bool) -> bool:
        """Whether the flag's presence is what the atom asks for."""
        return present is self.value


@dataclass(frozen=True)
class AttrTest:
    """``{attr: NAME}`` (truthy) or ``{attr: NAME, OP: V}`` / ``in: [..]`` / ``contains: V``."""

    attr: str
    op: str  # "truthy" | COMPARATORS | "in" | "contains"
    value: Any = None

    def evaluate(self, policy: object, cfg: Config, event: Event) -> bool:
        return self.holds(event.attrs.get(self.attr))

    def holds(self, actual: Any) -> bool:
        """The test on the attribute's value (None when the event does not carry it)."""
        if self.op == "truthy":
            return bool(actual)
        if self.op == "in":
            return actual in self.value
        if self.op == "contains":
            if actual is None:  # ``in None`` raises TypeError: an absent attribute contains nothing
                return False
            try:
                return self.value in actual
            except TypeError:
                return False
        return _compare(self.op, actual, self.value)


Guard = Union[Always, AllOf, AnyOf, Not, CounterCmp, FlagIs, AttrTest]

__all__ = ["Always", "AllOf", "AnyOf", "Not", "CounterCmp", "FlagIs", "AttrTest", "Guard", "COMPARATORS"]
