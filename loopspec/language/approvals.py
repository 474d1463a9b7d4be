"""Approval rules: which tool calls need a person before they run, decided from the call's
arguments, and what auto-approval may approve instead (the ``approvals:`` section of a policy).

The rules are data, like the rest of a policy: pure tests on a call's parsed arguments, first match
wins. What a rule asks for is one of :data:`APPROVAL_LEVELS`; the engine (:mod:`loopspec.engine.
approvals`) turns it into a decision with the turn's ``approve`` hook, a person's answers to a
pause, and the session's auto-approval budget. The checker needs none of it: for the checker any
``tool_exec`` batch may report ``approval_required``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

APPROVAL_NONE = "none"
"""The call runs without asking."""
APPROVAL_ASK = "ask"
"""A person approves the call, or auto-approval does, within the spending cap."""
APPROVAL_PERSON = "person"
"""Always a person, whether auto-approval is on or not (an operation whose cost has no bound)."""
APPROVAL_LEVELS = (APPROVAL_NONE, APPROVAL_ASK, APPROVAL_PERSON)

APPROVALS_KEYS = ("auto_approve", "spending_cap", "rules", "doc")
RULE_KEYS = ("tool", "when", "approval", "doc")
CONDITION_FORMS = ("all", "any", "not", "arg")
ARG_OPS = ("in", "contains", "startswith", "lt", "le", "eq", "ne", "ge", "gt")


class Condition(Protocol):
    def holds(self, args: Mapping[str, Any]) -> bool: ...


_MISSING = object()


@dataclass(frozen=True)
class ArgTest:
    """A test on one argument of the call; ``default`` stands in for an argument the call omits or
    sets to null (without one, such an argument makes every test false, ``ne`` included)."""

    arg: str
    op: str
    value: Any = None
    default: Any = _MISSING

    def holds(self, args: Mapping[str, Any]) -> bool:
        got = args.get(self.arg)
        if got is None:
            got = self.default
        if got is _MISSING:
            return False
        op, want = self.op, self.value
        if op == "truthy":
            return bool(got)
        if op == "in":
            return any(_same(got, w) for w in want)
        if op == "contains":
            return isinstance(got, (str, list)) and want in got
        if op == "startswith":
            return isinstance(got, str) and got.startswith(want)
        if op == "eq":
            return _same(got, want)
        if op == "ne":
            return not _same(got, want)
        if not (_number(got) and _number(want)):
            return False  # an order test on something that is not a number never holds
        return {"lt": got < want, "le": got <= want, "ge": got >= want, "gt": got > want}[op]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _same(a: Any, b: Any) -> bool:
    """Equality that does not make ``True == 1``."""
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Condition, ...]

    def holds(self, args: Mapping[str, Any]) -> bool:
        return all(p.holds(args) for p in self.parts)


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Condition, ...]

    def holds(self, args: Mapping[str, Any]) -> bool:
        return any(p.holds(args) for p in self.parts)


@dataclass(frozen=True)
class NotThat:
    part: Condition

    def holds(self, args: Mapping[str, Any]) -> bool:
        return not self.part.holds(args)


@dataclass(frozen=True)
class ApprovalRule:
    tool: str
    approval: str
    when: Condition | None = None
    doc: str = ""

    def matches(self, tool: str, args: Mapping[str, Any]) -> bool:
        return tool == self.tool and (self.when is None or self.when.holds(args))


@dataclass(frozen=True)
class ApprovalRules:
    """The policy's approval rules; the default (no ``approvals:`` section) asks for nothing beyond
    what tools registered ``needs_approval=True`` ask for."""

    rules: tuple[ApprovalRule, ...] = ()
    auto_approve: bool = False
    """Auto-approval is on unless the caller says otherwise (``Turn(approvals=...)``, ``--auto-approve``)."""
    spending_cap: float = 0.0
    """What auto-approved calls may spend in one session, in the unit of the tools' cost estimators."""
    doc: str = ""

    def level(self, tool: str, args: Mapping[str, Any], registered: bool = False) -> str:
        """What calling ``tool`` with ``args`` needs: the first matching rule's level; with no rule,
        ``ask`` for a tool registered ``needs_approval`` and ``none`` otherwise."""
        for rule in self.rules:
            if rule.matches(tool, args):
                return rule.approval
        return APPROVAL_ASK if registered else APPROVAL_NONE
