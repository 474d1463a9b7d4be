"""The shared base of every reader of a hand-edited YAML document (policies, cassettes).

It collects diagnostics instead of raising, so one run reports every problem, and gives the
checks every section needs — an unknown key with a did-you-mean, a value of the wrong shape —
with the document's own codes.
"""

from __future__ import annotations

from typing import Any

import loopspec.language.codes as codes
from .diagnostics import Diagnostic, Position, did_you_mean
from .yamlsource import YList, YMap


def type_name(v: Any) -> str:
    """How an unexpected value reads in a message: 'a list', 'the string 'x'', 'nothing'..."""
    if v is None:
        return "nothing"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, str):
        return f"the string {v!r}" if len(v) < 40 else "a string"
    return type(v).__name__


class DocumentReader:
    UNKNOWN_KEY = codes.UNKNOWN_KEY
    WRONG_TYPE = codes.WRONG_TYPE

    def __init__(self, file: str) -> None:
        self.file = file
        self.diags: list[Diagnostic] = []

    def report(self, code: str, message: str, path: str, pos: Position | None, hint: str = "") -> None:
        self.diags.append(Diagnostic(code, message, self.file, path, pos, hint))

    def unknown_keys(self, node: YMap, allowed: tuple[str, ...] | list[str], path: str, what: str) -> None:
        for key in node:
            if key not in allowed:
                self.report(
                    self.UNKNOWN_KEY,
                    f"unknown key '{key}' in {what}",
                    f"{path}.{key}" if path else str(key),
                    node.key_pos.get(key, node.pos),
                    did_you_mean(key, allowed),
                )

    def expect_map(self, value: Any, path: str, pos: Position | None, what: str) -> YMap | None:
        if isinstance(value, YMap):
            return value
        self.report(self.WRONG_TYPE, f"{what} must be a mapping, got {type_name(value)}", path, pos)
        return None

    def expect_list(self, value: Any, path: str, pos: Position | None, what: str) -> YList | None:
        if isinstance(value, YList):
            return value
        self.report(self.WRONG_TYPE, f"{what} must be a list, got {type_name(value)}", path, pos)
        return None
