"""One updating line of progress for corpus runs: ``replayed 120/1000 cassettes, 3 failed``.

Used by ``loopspec replay``, ``loopspec diff`` and the pytest plugin. It draws only on a terminal:
when the stream is not a TTY (CI logs, pipes, files) or the caller asked for ``--json``, it writes
nothing at all, so logs and machine-readable output stay clean. The line is redrawn in place with
``\\r`` and wiped when the run ends, leaving the command's own summary as the lasting record.

The pytest plugin shares its line with pytest's own dots, so it draws ``after_cursor``: the text
goes after the cursor, which is saved and restored around it (ANSI DECSC/DECRC), so pytest's next
dot lands where pytest expects it and pytest's own line accounting stays true.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Callable


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (closed or odd streams count as not)."""
    isatty = getattr(stream, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except (ValueError, OSError):  # a closed or detached stream
        return False


class Progress:
    """Counts finished items and redraws ``{label}{verb} {done}/{total} {noun}, {failed} failed``.

    ``enabled`` defaults to "``stream`` is a terminal"; pass ``enabled=False`` for ``--json``.
    Redraws are throttled to ``min_interval`` seconds, except the first and the last, so a corpus of
    thousands of small cassettes does not spend its time writing to the terminal. ``write``, when
    given, replaces writing to ``stream``; ``room``, when given, says how many columns the text may
    take (a shorter form is drawn, or none, so it never wraps); ``after_cursor`` draws as described
    above.
    """

    def __init__(
        self,
        total: int | None,
        *,
        verb: str = "replayed",
        noun: str = "cassettes",
        label: str = "",
        failed: int = 0,
        show_failed: bool = True,
        stream: IO[str] | None = None,
        enabled: bool | None = None,
        min_interval: float = 0.1,
        write: Callable[[str], None] | None = None,
        room: Callable[[], int] | None = None,
        after_cursor: bool = False,
    ) -> None:
        self.total = total
        self.verb = verb
        self.noun = noun
        self.label = label
        self.done = 0
        self.failed = failed
        self.show_failed = show_failed
        self.stream = sys.stderr if stream is None else stream
        self.enabled = is_terminal(self.stream) if enabled is None else enabled
        self.min_interval = min_interval
        self._write = write
        self._room = room
        self.after_cursor = after_cursor
        self._width = 0
        self._last = float("-inf")

    def text(self) -> str:
        return self._texts()[0]

    def _texts(self) -> list[str]:
        """The line, then shorter forms of it for when ``room`` is tight, longest first."""
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        failed = f", {self.failed} failed" if self.show_failed else ""
        return [
            f"{self.label}{self.verb} {count} {self.noun}{failed}",
            f" {self.verb} {count}{failed}",
            f" {count}{failed}",
            f" {count}",
        ]

    def advance(self, failed: bool = False) -> None:
        """One more item finished (``failed`` when it did not pass)."""
        self.done += 1
        self.failed += bool(failed)
        last = self.total is not None and self.done >= self.total
        self.draw(force=last or self.done == 1)

    def draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        line = self.text()
        if self._room is not None:
            room = self._room()
            line = next((t for t in self._texts() if len(t) <= room), "")
        if self.after_cursor:
            self._emit(f"\x1b7{line}\x1b[K\x1b8")
        else:
            self._emit("\r" + line + " " * max(0, self._width - len(line)))
        self._width = len(line)

    def close(self) -> None:
        """Wipe the line, so what the command prints next starts at the left edge of a clean line
        (``after_cursor``: clear what was drawn after the cursor)."""
        if self.enabled and self._width:
            self._emit("\x1b[K" if self.after_cursor else "\r" + " " * self._width + "\r")
            self._width = 0

    def _emit(self, text: str) -> None:
        if self._write is not None:
            self._write(text)
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away; progress is not worth failing for
            self.enabled = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Progress", "is_terminal"]
