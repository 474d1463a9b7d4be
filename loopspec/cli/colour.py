"""ANSI colour for the CLI's verdicts and diagnostics, decided per output stream.

Colour is a terminal concern, so it lives here and nowhere else: the language layer formats a
diagnostic through a plain ``style(role, text)`` callable and never learns what a terminal is.

Whether a stream gets colour is decided, first rule that applies wins, by
``--color always|never``; ``NO_COLOR`` set to anything but the empty string (https://no-color.org)
turns it off; ``FORCE_COLOR`` set to anything but the empty string turns it on; ``TERM=dumb`` turns it
off; otherwise a stream gets colour when it is a terminal. ``--json`` turns it off whatever the rest
says: machine-readable output is never decorated. Output to a pipe or a file is therefore byte for
byte what it was before colour existed, which is what the documentation examples and CI logs show.

stdout and stderr are decided separately (``loopspec check x | less`` keeps red errors on the
terminal's stderr and a plain report in the pager). Importing this module costs nothing beyond ``os``
and ``re``: ``validate`` and ``check`` start no slower.
"""

from __future__ import annotations

import os
import re
from typing import IO, Any, Mapping

from .progress import is_terminal

CHOICES = ("auto", "always", "never")

# Select Graphic Rendition codes per role: bold red errors and failures, bold yellow warnings,
# green passes, cyan hints, bold locations (as compilers print FILE:LINE:COL).
_SGR: dict[str, str] = {
    "error": "1;31",
    "warning": "1;33",
    "hint": "36",
    "location": "1",
    "pass": "32",
    "proven": "1;32",
    "fail": "1;31",
    "diverged": "1;33",
    "warn": "33",
}

# The verdict words the CLI prints, and the role each is painted in.
VERDICTS: dict[str, str] = {
    "PASS": "pass",
    "PROVEN": "proven",
    "ok": "pass",
    "FAIL": "fail",
    "FAILED": "fail",
    "DIVERGED": "diverged",
    "WARN": "warn",
}

_choice = "auto"


def wants_colour(choice: str, stream: Any, environ: Mapping[str, str] | None = None) -> bool:
    """Whether text written to ``stream`` should carry colour under ``--color choice``."""
    env = os.environ if environ is None else environ
    if choice == "always":
        return True
    if choice == "never":
        return False
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    if env.get("TERM") == "dumb":
        return False
    return is_terminal(stream)


def use(choice: str) -> None:
    """Set the ``--color`` choice for this invocation (``main`` does, before running the handler;
    ``never`` for ``--json``)."""
    global _choice
    if choice not in CHOICES:
        raise ValueError(f"--color must be one of {', '.join(CHOICES)}, not {choice!r}")
    _choice = choice


def current() -> str:
    """The ``--color`` choice in force."""
    return _choice


class Painter:
    """Paints text for one stream: a no-op when that stream gets no colour.

    Also the ``style`` callable :meth:`loopspec.language.diagnostics.Diagnostic.format` takes.
    """

    def __init__(self, on: bool) -> None:
        self.on = on

    def __call__(self, role: str, text: str) -> str:
        code = _SGR.get(role)
        if not self.on or code is None or not text:
            return text
        return f"\x1b[{code}m{text}\x1b[0m"

    def verdict(self, word: str, width: int = 0) -> str:
        """``word`` in its verdict's colour, padded with plain spaces to ``width`` columns (so
        columns line up whether or not colour is on)."""
        pad = " " * max(0, width - len(word))
        return self(VERDICTS.get(word, ""), word) + pad

    def diagnostic(self, diag: Any) -> str:
        """A :class:`~loopspec.language.diagnostics.Diagnostic` as ``FILE:LINE:COL: error: ...``."""
        return str(diag.format(style=self if self.on else None))

    def error_line(self, where: str, severity: str, message: str) -> str:
        """A diagnostic-shaped line the CLI builds itself: ``WHERE: SEVERITY: MESSAGE``."""
        return f"{self('location', where)}: {self(severity, severity + ':')} {message}"

    def command_error(self, command: str, message: str) -> str:
        """The one-line error of :func:`loopspec.cli.common.fail`: ``loopspec COMMAND: message``."""
        return f"{self('error', f'loopspec {command}:')} {message}"

    def check_report(self, text: str) -> str:
        """``loopspec check``'s text report (built by the checker, which knows nothing of colour)
        with its verdict, property statuses and warnings painted."""
        if not self.on:
            return text
        return "\n".join(_paint_report_line(self, line, i == 0) for i, line in enumerate(text.split("\n")))


# "FILE: PROVEN (strict)  [name]" (the first line), "  PASS  property  reason" (exactly two spaces
# before a four-letter status; findings and counterexample steps are indented further), "warning: ".
# Compiled on first use (re caches them), so a command that paints no report does not pay for them.
_HEADLINE = r"^(.*: )(PROVEN|FAILED)(( \(strict\))?  \[[^\]]*\])$"
_PROPERTY = r"^  (PASS|FAIL|WARN)(  \S.*)$"
_WARNING = r"^(warning:)( .*)$"


def _paint_report_line(paint: Painter, line: str, first: bool) -> str:
    m = re.match(_HEADLINE, line) if first else None
    if m:
        return m.group(1) + paint.verdict(m.group(2)) + m.group(3)
    m = re.match(_PROPERTY, line)
    if m:
        return "  " + paint.verdict(m.group(1)) + m.group(2)
    m = re.match(_WARNING, line)
    if m:
        return paint("warning", m.group(1)) + m.group(2)
    return line


def painter(stream: IO[str] | Any) -> Painter:
    """The painter for ``stream`` under the current ``--color`` choice and environment."""
    return Painter(wants_colour(_choice, stream))


__all__ = ["CHOICES", "Painter", "VERDICTS", "current", "painter", "use", "wants_colour"]
