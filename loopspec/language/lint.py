"""Linting: warnings about a policy that is valid but likely wrong. ``validate`` still exits 0 on a
warning; ``check`` turns the ones that matter into failing properties."""

from __future__ import annotations

import loopspec.language.codes as codes
from .checks import Checks
from .diagnostics import Position


class Lint(Checks):
    def lint_halt_message(self, name: str, message: str, path: str, pos: Position | None) -> None:
        """A halt with an empty message tells every consumer nothing."""
        if not message.strip():
            self.warn(
                codes.EMPTY_HALT_MESSAGE,
                f"halt '{name}' delivers an empty message",
                path,
                pos,
                "consumers would see nothing (hermes-agent #30770); say why the turn ended",
            )
