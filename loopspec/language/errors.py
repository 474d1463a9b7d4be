"""The root of every exception loopspec raises, and the base of those that carry diagnostics.

Catch :class:`LoopspecError` to handle anything loopspec raises on purpose; catch
:class:`DiagnosticError` for a bad file (policy, cassette, transcript): its ``diagnostics`` say
where (``file:line:col``) and what to do. Lives in the lowest layer so every package can use it.
"""

from __future__ import annotations

from typing import Any, Iterable


class LoopspecError(Exception):
    """Anything loopspec raises on purpose."""


class DiagnosticError(LoopspecError):
    """A file that cannot be used as it is; ``diagnostics`` holds every finding, in order."""

    def __init__(self, diagnostics: Iterable[Any]):
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))
