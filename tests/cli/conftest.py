"""The CLI tests assert exact output, which the colour environment variables would change: each test
starts with neither set (tests that want them set them)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_colour_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
