"""Name resolution: every state, counter, flag, template and template variable a policy names must be
declared; an unknown name gets a did-you-mean hint, or a pointer to its invalid declaration.
"""

from __future__ import annotations

import string
from typing import Any, TypeGuard

import loopspec.language.codes as codes
from .alphabet import CALL_FLAGS, NAME_RE, template_variables
from .checks import Checks
from .diagnostics import Position, did_you_mean
from .model import Counter


class Resolver(Checks):
    budget_flag_names: frozenset[str] = frozenset()
    """The built-in flags of the declared budgets (read before the states): no action may set or
    clear them, since they only grow, which the checker and the min_per_call bound rely on."""

    def ref_state(self, name: Any, path: str, pos: Position | None) -> bool:
        if isinstance(name, str) and name in self.state_kinds:
            return True
        self.error(codes.UNKNOWN_NAME, f"unknown state {name!r}", path, pos, self.unknown("state", name, self.state_kinds))
        return False

    def ref_target(self, source_kind: str, event: str, name: Any, path: str, pos: Position | None) -> bool:
        """A transition's target: a declared state. A stream state entered other than by a call
        state's ``opened`` (a stub's ``mid_text`` back to the stream, say) finds no response open
        and hears ``broken``: legal, and covered by the checker, but almost always a mistake, so
        it is warned about."""
        if not self.ref_state(name, path, pos):
            return False
        if self.state_kinds[name] == "stream" and (source_kind, event) != ("call", "opened"):
            self.warn(
                codes.STREAM_WITHOUT_RESPONSE,
                f"'{name}' is a stream state, and only a call state's 'opened' leaves a response open to read: "
                "entered from here, it reads nothing and hears 'broken'",
                path,
                pos,
                "send the turn to a call state instead (a new request opens a new stream)",
            )
        return True

    def check_wrap_up(self, name: Any, path: str, pos: Position | None) -> None:
        """A ``wrap_up`` (of the model-call backstop or a budget) names a state that prepares the
        last call: an escalate or continue state, never a call, stream, tool_exec or halt."""
        if self.ref_state(name, path, pos) and self.state_kinds[name] in ("call", "stream", "tool_exec", "halt"):
            self.error(
                codes.WRONG_STATE_KIND,
                "wrap_up must be an escalate (or continue) state that prepares the last call",
                path,
                pos,
                "e.g. an escalate state with apply: [disable_tools, {append: summarize_now}]",
            )

    def ref_template(self, name: Any, path: str, pos: Position | None) -> TypeGuard[str]:
        if isinstance(name, str) and name in self.templates:
            return True
        self.error(codes.UNKNOWN_NAME, f"unknown template {name!r}", path, pos, self.unknown("template", name, self.templates))
        return False

    def counter_names(self) -> list[str]:
        return [c.name for c in self.counters]

    def counter_by_name(self, name: Any, path: str, pos: Position | None) -> Counter | None:
        for c in self.counters:
            if c.name == name:
                return c
        self.error(codes.UNKNOWN_NAME, f"unknown counter {name!r}", path, pos, self.unknown("counter", name, self.counter_names()))
        return None

    def flag_ok(self, name: Any, path: str, pos: Position | None) -> TypeGuard[str]:
        known = self.flags | set(CALL_FLAGS)
        if isinstance(name, str) and name in known:
            return True
        self.error(codes.UNKNOWN_NAME, f"unknown flag {name!r}", path, pos, self.unknown("flag", name, known))
        return False

    def check_template(self, text: str, path: str, pos: Position | None) -> None:
        known = template_variables()
        try:
            parts = list(string.Formatter().parse(text))
        except ValueError as exc:
            self.error(codes.BAD_TEMPLATE, f"bad template: {exc}", path, pos, "write a literal brace as {{ or }}")
            return
        for _lit, field, spec, conv in parts:
            if field is None:
                continue
            if not NAME_RE.match(field or "") or spec or conv:
                self.error(
                    codes.BAD_TEMPLATE,
                    f"template field '{{{field}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}' is not allowed",
                    path,
                    pos,
                    "templates substitute plain names only, e.g. {dropped_tools}; no attribute, index or format access",
                )
            elif field not in known:
                self.error(
                    codes.UNKNOWN_TEMPLATE_VARIABLE,
                    f"unknown template variable '{field}'",
                    path,
                    pos,
                    did_you_mean(field, known),
                )
