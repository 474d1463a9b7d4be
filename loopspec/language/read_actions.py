"""Reading a ``do`` or ``apply`` list into :mod:`~loopspec.language.actions` values."""

from __future__ import annotations

from typing import Any

import loopspec.language.codes as codes
from .actions import Action, Append, Backoff, Compact, DropToolCalls, Increment, RefuseTools, Reset, SetFlag
from .alphabet import ACTION_KEYS, ACTION_NAMES, ACTIONS_WITH_ARG, BACKSTOP_KIND, BACKSTOPS, FLAG_SHORTHANDS
from .diagnostics import Position, article, did_you_mean
from .reader import type_name
from .resolve import Resolver
from .yamlsource import YList, YMap


class ActionReader(Resolver):
    def read_actions(self, lst: YList, path: str) -> tuple[Action, ...]:
        out: list[Action] = []
        incremented: set[str] = set()
        for i, item in enumerate(lst):
            apath, pos = f"{path}[{i}]", lst.pos_of(i)
            action = self.read_action(item, apath, pos)
            if action is None:
                continue
            if isinstance(action, Increment):
                if action.counter in incremented:
                    self.error(codes.UNBOUNDED_INCREMENT, f"counter '{action.counter}' is incremented twice in one transition", apath, pos)
                incremented.add(action.counter)
                if action.counter in BACKSTOPS:
                    self.error(
                        codes.RESERVED_NAME,
                        f"'{action.counter}' is a backstop: entering {article(BACKSTOP_KIND[action.counter])} state counts it",
                        apath,
                        pos,
                    )
            if isinstance(action, Reset) and action.counter in BACKSTOPS:
                self.error(codes.RESERVED_NAME, f"backstop '{action.counter}' can never be reset within a turn", apath, pos)
            if isinstance(action, SetFlag) and action.flag in self.budget_flag_names:
                self.error(codes.RESERVED_NAME, f"'{action.flag}' is a budget's flag: only what the budget measures sets it", apath, pos)
            out.append(action)
        return tuple(out)

    def read_action(self, item: Any, path: str, pos: Position | None) -> Action | None:
        if isinstance(item, str):
            name, arg, extra = item, None, None
        elif isinstance(item, YMap) and item:
            keys = list(item)
            name = keys[0]
            arg = item[name]
            extra = item
            allowed_extra = ACTION_KEYS.get(name, (name,))
            self.unknown_keys(item, allowed_extra, path, f"{article(repr(name))} action")
            pos = item.key_pos.get(name, pos)
        else:
            self.error(codes.WRONG_TYPE, f"an action is a name or a one-key mapping, got {type_name(item)}", path, pos)
            return None
        if name not in ACTION_NAMES:
            self.error(codes.UNKNOWN_NAME, f"unknown action {name!r}", path, pos, did_you_mean(name, ACTION_NAMES))
            return None
        needs_arg = name in ACTIONS_WITH_ARG
        if needs_arg and arg is None:
            self.error(codes.MISSING_KEY, f"action '{name}' needs an argument, e.g. {{{name}: NAME}}", path, pos)
            return None
        if not needs_arg and arg is not None and arg is not True:
            self.error(codes.WRONG_TYPE, f"action '{name}' takes no argument", path, pos)
            return None
        if name in ("increment", "reset"):
            c = self.counter_by_name(arg, path, pos)
            if c is None:
                return None
            if name == "reset":
                return Reset(c.name, c.index)
            amount = extra.get("by", 1) if isinstance(extra, YMap) else 1
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
                self.error(codes.WRONG_TYPE, "'by' must be a positive integer", path, pos)
                return None
            return Increment(c.name, c.index, amount)
        if name in ("set", "clear"):
            return SetFlag(arg, name == "set") if self.flag_ok(arg, path, pos) else None
        if name in FLAG_SHORTHANDS:
            flag, value = FLAG_SHORTHANDS[name]
            return SetFlag(flag, value)
        if name in ("append", "nudge"):
            return Append(arg) if self.ref_template(arg, path, pos) else None
        if name == "refuse_tools":
            return RefuseTools(arg) if self.ref_template(arg, path, pos) else None
        if name == "drop_tool_calls":
            return DropToolCalls()
        if name == "compact":
            return Compact()
        # backoff
        if arg not in self.backoff:
            self.error(codes.UNKNOWN_NAME, f"unknown backoff schedule {arg!r}", path, pos, self.unknown("backoff schedule", arg, self.backoff))
            return None
        attempt = extra.get("attempt") if isinstance(extra, YMap) else None
        if attempt is None:
            return Backoff(arg, None, None)
        c = self.counter_by_name(attempt, path, pos)
        return Backoff(arg, c.name, c.index) if c is not None else None
