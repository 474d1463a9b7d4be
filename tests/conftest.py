"""Shared test setup: Hypothesis profiles and paths.

``ci`` keeps the suite fast and deterministic on a 2-core machine; ``nightly`` explores more. Pick
one with HYPOTHESIS_PROFILE (``.ci/run`` sets ``ci``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Iterator

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "nightly",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop per test module for tests that go through litellm: it caches async HTTP
    clients per loop, and they must be closed before the loop is, or their sockets leak."""
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    lp = asyncio.new_event_loop()
    yield lp
    lp.run_until_complete(close_litellm_async_clients())
    lp.close()
