"""Diagnostics: what the loader, validator and checker say about a file.

A diagnostic is a record, not an exception, so one run can report every problem in a file, print it
as ``FILE:LINE:COL: error: message`` for people and as JSON for machines.
"""

from __future__ import annotations

from loopspec.language.errors import DiagnosticError

import difflib
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Literal

Severity = Literal["error", "warning"]


def _plain(role: str, text: str) -> str:
    """The default style of :meth:`Diagnostic.format`: every part as it is."""
    return text


@dataclass(frozen=True)
class Position:
    """1-based line and column, as editors count them."""

    line: int
    col: int


@dataclass(frozen=True)
class Diagnostic:
    code: str
    """Stable identifier, one of :data:`loopspec.language.codes.REGISTRY` (listed in docs/errors.md)."""
    message: str
    file: str
    path: str = ""
    """Location inside the document, e.g. ``states.stream.on.length[0].to``."""
    pos: Position | None = None
    hint: str = ""
    severity: Severity = "error"

    def format(self, style: Callable[[str, str], str] | None = None) -> str:
        """``FILE:LINE:COL: error: message (at path)``, then an indented hint line.

        ``style(role, text)``, when given, decorates the parts (roles ``location``, the severity, and
        ``hint``) and returns them; the CLI passes its colour painter here, so this module formats
        text and knows nothing of terminals.
        """
        paint = style or _plain
        where = self.file
        if self.pos is not None:
            where = f"{self.file}:{self.pos.line}:{self.pos.col}"
        text = f"{paint('location', where)}: {paint(self.severity, self.severity + ':')} {self.message}"
        if self.path:
            text += f" (at {self.path})"
        if self.hint:
            text += f"\n    {paint('hint', 'hint:')} {self.hint}"
        return text

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["line"] = self.pos.line if self.pos else None
        data["col"] = self.pos.col if self.pos else None
        del data["pos"]
        return data


class SpecError(DiagnosticError):
    """Raised by :func:`loopspec.load_policy` when a file does not validate; carries every diagnostic."""


_VOWELS = "aeiou"


def article(word: object) -> str:
    """``word`` after "a" or "an", chosen by how it is spoken: ``article("escalate") == "an escalate"``,
    ``article("user") == "a user"``, ``article("'increment'") == "an 'increment'"``.

    Every message that puts an article before a name it does not know in advance (a state kind, a
    message role, an action) goes through here, so none prints "a escalate state".
    """
    text = str(word)
    bare = text.lstrip("'\"`").lower()
    if bare.startswith(("hour", "honest", "honor", "heir")):
        return f"an {text}"
    if bare.startswith(("eu", "one", "once")):
        return f"a {text}"
    # "u" sounds like "you" before a single consonant and a vowel: a user, a unit, an unknown.
    if len(bare) >= 3 and bare[0] == "u" and bare[1] not in _VOWELS and bare[2] in _VOWELS:
        return f"a {text}"
    return f"an {text}" if bare[:1] and bare[0] in _VOWELS else f"a {text}"


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The known name close enough to ``name`` to be what was meant (a typo), if any."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(name: object, candidates: Iterable[str]) -> str:
    """A hint naming the closest known name, or listing the choices when nothing is close."""
    options = sorted(set(candidates))
    if not isinstance(name, str):
        return f"expected one of: {', '.join(options)}" if options else ""
    near = closest(name, options)
    if near is not None:
        return f"did you mean '{near}'?"
    if not options:
        return ""
    if len(options) <= 12:
        return f"expected one of: {', '.join(options)}"
    return f"expected one of: {', '.join(options[:12])}, ..."
