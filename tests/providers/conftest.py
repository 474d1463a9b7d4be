"""The provider tests' loopback server: one per test module, emptied before each test."""

from __future__ import annotations

from typing import Iterator

import pytest

from _loopback import LoopbackServer


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture
def srv(server: LoopbackServer) -> LoopbackServer:
    """The module's server with no replies queued and no requests seen."""
    server.reset()
    return server
