"""One updating line of progress for corpus runs: ``replayed 120/1000 cassettes, 3 failed``.

Used by ``loopspec replay``, ``loopspec diff`` and the pytest plugin. It draws only on a terminal:
when the stream is not a TTY (CI logs, pipes, files) or the caller asked for ``--json``, it writes
nothing at all, so logs and machine-readable output stay clean. The line is redrawn in place with
``\\r`` and wiped when the run ends, leaving the command's own summary as the lasting record.
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
    given, replaces writing to ``stream`` (the pytest plugin draws through pytest's terminal).
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
        self._width = 0
        self._last = float("-inf")

    def text(self) -> str:
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        line = f"{self.label}{self.verb} {count} {self.noun}"
        if self.show_failed:
            line += f", {self.failed} failed"
        return line

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
        self._emit("\r" + line + " " * max(0, self._width - len(line)))
        self._width = len(line)

    def close(self) -> None:
        """Wipe the line, so what the command prints next starts at the left edge of a clean line."""
        if self.enabled and self._width:
            self._emit("\r" + " " * self._width + "\r")
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
