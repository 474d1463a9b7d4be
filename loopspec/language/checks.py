"""Reporting while a policy is read: errors and warnings, root causes first, and checks of plain values."""

from __future__ import annotations

from typing import Any

import loopspec.language.codes as codes
from .alphabet import NAME_RE
from .diagnostics import Diagnostic, Position, did_you_mean
from .model import Counter
from .reader import DocumentReader, type_name
from .yamlsource import YMap


class Checks(DocumentReader):
    """Collects diagnostics while a policy is read; what every reading step shares."""

    templates: dict[str, str]
    backoff: dict[str, tuple[float, ...]]
    flags: set[str]
    counters: list[Counter]
    state_kinds: dict[str, str]

    def __init__(self, file: str) -> None:
        super().__init__(file)
        self.causes: set[int] = set()
        """Indices into ``diags`` of errors that made a declaration drop out of the policy."""
        self.dropped: dict[tuple[str, str], Position | None] = {}
        """(what, name) of each declaration left out because it is invalid, with where it is."""

    def drop(self, since: int, what: str, name: Any, pos: Position | None) -> None:
        """The declaration ``name`` is left out because of the errors reported since ``since``.

        Those errors are root causes: every later use of the name fails too ("unknown state",
        "unknown counter"), so they are listed first, and the later errors' hints point back here.
        """
        self.causes.update(range(since, len(self.diags)))
        if isinstance(name, str):
            self.dropped.setdefault((what, name), pos)

    def unknown(self, what: str, name: Any, known: Any) -> str:
        """The hint for an unknown name: where it was declared if its declaration was left out."""
        if isinstance(name, str) and (what, name) in self.dropped:
            pos = self.dropped[(what, name)]
            where = f" (line {pos.line})" if pos is not None else ""
            return f"{what} '{name}'{where} is left out because its declaration is invalid; fix that error first"
        return did_you_mean(name, known)

    def ordered(self) -> list[Diagnostic]:
        """Root causes first, then the other errors, then warnings; by position within each."""

        def key(item: tuple[int, Diagnostic]) -> tuple[int, int, int, int]:
            i, d = item
            rank = 0 if i in self.causes else 1 if d.severity == "error" else 2
            line, col = (d.pos.line, d.pos.col) if d.pos is not None else (0, 0)
            return (rank, line, col, i)

        return [d for _, d in sorted(enumerate(self.diags), key=key)]

    def error(self, code: str, message: str, path: str, pos: Position | None, hint: str = "") -> None:
        self.report(code, message, path, pos, hint)

    def warn(self, code: str, message: str, path: str, pos: Position | None, hint: str = "") -> None:
        self.diags.append(Diagnostic(code, message, self.file, path, pos, hint, severity="warning"))

    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diags)

    def name_ok(self, name: Any, path: str, pos: Position | None, what: str) -> bool:
        if isinstance(name, str) and NAME_RE.match(name):
            return True
        self.error(
            codes.BAD_NAME,
            f"{what} name {name!r} is not a valid name",
            path,
            pos,
            "use lower_snake_case: a letter, then letters, digits or underscores",
        )
        return False

    def int_in(self, value: Any, path: str, pos: Position | None, what: str, lo: int, hi: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(codes.WRONG_TYPE, f"{what} must be an integer, got {type_name(value)}", path, pos)
            return None
        if not lo <= value <= hi:
            self.error(codes.OUT_OF_RANGE, f"{what} must be between {lo} and {hi}, got {value}", path, pos)
            return None
        return value

    def section(self, root: YMap, key: str, what: str) -> YMap | None:
        """An optional top-level mapping: None when absent (nothing to read) or not a mapping (reported)."""
        node = root.get(key)
        if node is None:
            return None
        return self.expect_map(node, key, root.pos_of(key), what)
