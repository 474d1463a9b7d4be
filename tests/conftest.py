"""Shared test setup: Hypothesis profiles and paths.

``ci`` keeps the suite fast and deterministic on a 2-core machine; ``nightly`` explores more. Pick
one with HYPOTHESIS_PROFILE (``.ci/run`` sets ``ci``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Iterator

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# The incident cassettes share fixtures/streams (``sse_file: ../streams/...``): widen the folder
# sse_file may read from to the repository, as a user with such a corpus would. Tests of the
# default (the cassette's own folder) pass files_root= or clear it (tests/replay/test_hostile_cassettes.py).
os.environ.setdefault("LOOPSPEC_FILES_ROOT", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Corpus commands keep read cassettes in a cache folder (default: .loopspec_cache in the working
# directory); the suite's go to a folder of its own, so a test run leaves nothing in the checkout.
if "LOOPSPEC_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _CACHE = tempfile.mkdtemp(prefix="loopspec-test-cache-")
    os.environ["LOOPSPEC_CACHE_DIR"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, True)

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


# ------------------------------------------------------------------------------------- slow marker
# Tests that take seconds each (measured with --durations=25 on 2 cores): real sockets through
# litellm, the exhaustive soundness reference, counterexample replay, and the big exploration runs.
# Marked here rather than in the modules so the list is one place to read and to trim. A whole
# module is named by its path under tests/; a single test by path::function or path::Class (all
# its parameters).
# CI runs everything; `python -m pytest -q -n 2 -m "not slow"` is the quick local run.
SLOW = {
    "engine/test_interpreter_http.py",
    "cli/test_journal_cli.py::test_run_ends_abruptly_after_the_decision_the_hook_names_and_resumes",
    "engine/test_budgets_turn.py::test_over_http_litellm_carries_the_recorded_cost_to_the_same_exhaustion",
    "providers/test_litellm_cost.py",
    "providers/test_litellm_provider.py",
    "replay/test_replay_server.py",
    "replay/test_transport_agreement.py",
    "replay/test_fault_matrix.py::test_fault_over_http",
    "verify/test_soundness.py",
    "verify/test_counterexamples_reproduce.py",
    "verify/test_check_cassettes.py",
    "verify/test_check_differential.py",
    "verify/test_cases.py::test_every_concrete_step_is_a_case",
    "verify/test_cases.py::test_check_gives_a_verdict_whatever_the_guards",
    "verify/test_cases.py::test_every_concrete_value_truth_vector_has_a_witness",
    "verify/test_check.py::test_netclaw_post_1358_enables_tools_after_they_were_disabled",
    "verify/test_check.py::test_every_pre_fix_policy_fails_strict_with_its_incident",
    "verify/test_check.py::test_default_eliminates_empty_retries_by_the_per_turn_counter",
    "verify/test_check.py::test_netclaw_pre_1358_retry_edge_is_bounded_only_by_the_tool_batch_backstop",
    "plugin/test_pytest_plugin.py::test_an_invalid_policy_is_reported_once_under_xdist",
    "language/test_errors_lead.py::test_no_printed_counterexample_contradicts_itself",
    "language/test_properties.py::test_compiled_model_walk_keeps_caps_and_disabled_tools",
    "engine/test_machine.py::test_machine_agrees_with_policy_step_on_random_walks",
    "replay/test_replay.py::test_transports_agree_and_default_passes",
    "replay/test_redaction.py::test_record_turn_writes_no_key_of_any_provider",
    "engine/test_tool_batches.py::test_a_parallel_batch_over_http_answers_every_call_once_in_order",
    "engine/test_tool_batches.py::test_a_recorded_non_streaming_batch_over_http_without_streaming",
    "engine/test_call_effects.py::test_retry_after_reaches_the_event_over_http",
    "engine/test_call_effects.py::test_a_request_that_never_opens_is_a_timeout_in_process",
    "engine/test_call_effects.py::test_a_server_that_never_sends_headers_is_a_timeout_over_http",
    "engine/test_call_effects.py::test_a_silent_server_is_a_timeout_whichever_timer_fires_first",
    "engine/test_call_effects.py::test_fallback_model_and_boosted_max_tokens_go_on_the_wire",
    "engine/test_call_effects.py::test_every_compacted_request_is_a_valid_history_over_http",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        rel = os.path.relpath(str(item.path), here).replace(os.sep, "/")
        names = [part.split("[")[0] for part in item.nodeid.split("::")[1:]]  # class, function
        if rel in SLOW or any(f"{rel}::{name}" in SLOW for name in names):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _no_colour_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests assert exact output (CLI, docs examples), which the colour variables would change:
    each test starts with none set; the colour tests set what they need."""
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
