"""Shared test setup: Hypothesis profiles and paths.

``ci`` keeps the suite fast and deterministic on a 2-core machine; ``nightly`` explores more. Pick
one with HYPOTHESIS_PROFILE (``.ci/run`` sets ``ci``).
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Iterator

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

if TYPE_CHECKING:
    from _loopback import LoopbackServer

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


@pytest.fixture(scope="module")
def scripted_server() -> Iterator["LoopbackServer"]:
    """One scripted loopback server (``tests/_loopback.py``) per test module: the provider tests
    push replies to it and read the requests litellm really sent."""
    from _loopback import LoopbackServer

    with LoopbackServer() as server:
        yield server


@pytest.fixture
def srv(scripted_server: "LoopbackServer") -> "LoopbackServer":
    """The module's scripted server with no replies queued and no requests seen."""
    scripted_server.reset()
    return scripted_server


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
    "providers/test_litellm_stream_end.py",
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
    "language/test_properties.py::test_compiled_model_picks_the_first_transition_within_caps_and_keeps_tools_disabled",
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

# ------------------------------------------------------------------------------------ heavy marker
# Not slow, but a second or more of CPU each (a checker run over a bundled policy, a search run to
# its limit, an end-to-end replay or pytester session), measured with --durations=0 on 2 cores.
# The README run (CI job 1) runs them. CI job 2 runs the rest, the quick suite, on the lowest
# dependency versions under coverage, where the tracer makes these three times slower: without
# them that job takes a third of the time and the gated packages stay above their floors.
# Named like SLOW entries.
HEAVY = {
    "cli/test_colour.py::test_color_always_paints_check",
    "cli/test_colour.py::test_piped_output_has_no_colour",
    "cli/test_completion.py::test_file_arguments_complete_by_kind",
    "cli/test_completion.py::test_options_and_choices_complete",
    "cli/test_completion.py::test_ordinary_commands_never_import_argcomplete_or_litellm",
    "cli/test_diff_gate.py::test_reports_are_byte_identical_whatever_the_number_of_jobs",
    "cli/test_diff_gate.py::test_the_union_of_the_shards_is_the_serial_report",
    "docs/test_docs.py::test_examples_show_what_they_print",
    "engine/test_journaling.py::test_a_turn_killed_after_each_step_leaves_a_journal_up_to_that_step",
    "engine/test_machine.py::test_machine_agrees_with_policy_step_on_the_corpus",
    "engine/test_resume.py::test_a_turn_killed_after_any_step_resumes_to_the_same_end_with_no_tool_run_twice",
    "engine/test_resume.py::test_the_cli_resumes_a_killed_turn_against_a_live_server",
    "engine/test_stall_timer.py::test_a_slow_consumer_between_chunks_is_not_a_stall",
    "engine/test_turn_memory.py::test_a_turn_in_flight_holds_at_most_30_kb",
    "language/test_fuzz_policies.py::test_validator_never_raises_on_mutated_policies",
    "language/test_properties.py::test_every_turn_halts_within_its_caps_with_a_valid_history",
    "language/test_properties.py::test_generated_worlds_reach_every_cap_backstop_and_escalation",
    "language/test_properties.py::test_interpreter_trace_is_a_path_the_explorer_reaches_with_the_same_counters",
    "language/test_schema.py::test_what_the_validator_rejects_the_schema_rejects",
    "language/test_yaml_limits.py::test_a_last_string_key_past_the_node_limit_is_ls105",
    "language/test_yaml_limits.py::test_string_keys_and_values_count_toward_the_node_limit",
    "plugin/test_pytest_plugin.py::test_min_coverage_counts_what_xdist_workers_replayed",
    "plugin/test_pytest_plugin.py::test_min_coverage_fails_a_green_session_below_the_threshold_and_says_what_is_missing",
    "plugin/test_pytest_plugin.py::test_projects_without_loopspec_are_left_alone",
    "replay/test_cassette_cache.py::test_the_cli_caches_unless_told_not_to",
    "replay/test_hostile_import.py::test_a_session_too_large_to_replay_is_not_written",
    "replay/test_import_record.py::test_record_against_loopback_redacts_and_replays",
    "replay/test_mutants_server.py::test_a_non_streaming_answer_waits_all_its_pauses_together",
    "replay/test_mutants_server.py::test_close_drops_connections_even_when_the_loop_thread_answers_late",
    "replay/test_replay.py::test_cli_diff_reports_outcome_counts_and_first_difference",
    "replay/test_replay_crash.py::test_a_replay_killed_after_every_step_resumes_to_the_same_verdicts",
    "replay/test_replay_garbage.py::test_a_replayed_turn_and_its_tools_leave_no_reference_cycle",
    "test_plant_mutants.py::test_a_plant_with_no_test_to_run_is_not_counted_killed",
    "test_plant_mutants.py::test_kept_coverage_data_drops_the_tests_that_are_gone",
    "test_plant_mutants.py::test_the_driver_plants_from_any_working_directory",
    "verify/test_budgets_check.py::test_generated_policies_with_budgets_agree_with_the_reference",
    "verify/test_cover.py::test_a_corpus_is_measured_alike_on_any_number_of_processes_and_shards",
    "verify/test_cover.py::test_generated_cassettes_are_checked_alike_on_any_number_of_processes_and_split_by_shards",
    "verify/test_derived_wait.py::test_a_retry_loop_whose_guard_a_provider_can_satisfy_is_found",
    "verify/test_incident_corpus.py::test_pre_fix_policy_fails_strict_with_the_incident_finding_alone",
    "verify/test_mutants_abstraction.py::test_every_low_region_of_the_bundled_policy_is_one_step_outcome",
    "verify/test_mutants_abstraction.py::test_low_regions_are_homogeneous_on_generated_policies",
    "verify/test_mutants_abstraction.py::test_low_regions_hold_for_a_transition_that_counts_its_own_backstop",
    "verify/test_mutants_abstraction.py::test_low_regions_hold_when_an_escalation_counts_the_backstop_on_entry",
    "verify/test_mutants_cassette_plan.py::test_the_closing_search_looks_at_no_more_than_five_thousand_configurations",
    "verify/test_mutants_checker_core.py::test_the_lasso_search_looks_through_half_the_search_limit_then_shows_the_abstract_cycle",
    "verify/test_mutants_cover.py::test_a_halt_reached_only_from_the_tools_on_another_event_is_covered_not_a_tool_timeout",
    "verify/test_mutants_cover.py::test_the_reachable_items_are_those_a_search_of_the_abstract_graph_finds",
    "verify/test_mutants_reach.py::test_deep_counterexample_gives_up_after_fifty_thousand_expansions_by_default",
    "verify/test_mutants_reach.py::test_only_the_limit_stops_a_search_with_no_hit",
    "verify/test_mutants_tool_scripts.py::test_the_realiser_finds_the_shortest_run_that_fires_each_detector",
    "verify/test_mutants_witness.py::test_a_walk_sets_a_flag_only_when_nothing_else_is_open",
    "verify/test_mutants_witness.py::test_the_second_walk_runs_the_tool_loop_before_anything_else",
    "verify/test_mutants_witness_strings.py::test_every_string_that_realises_the_literals_has_a_candidate_that_does",
    "verify/test_wall_time.py::test_without_tool_timeouts_tool_runs_are_unbounded_and_named",
}

MARKERS = {"slow": SLOW, "heavy": HEAVY}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        rel = os.path.relpath(str(item.path), here).replace(os.sep, "/")
        names = [part.split("[")[0] for part in item.nodeid.split("::")[1:]]  # class, function
        for marker, listed in MARKERS.items():
            if rel in listed or any(f"{rel}::{name}" in listed for name in names):
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(autouse=True)
def _no_colour_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests assert exact output (CLI, docs examples), which the colour variables would change:
    each test starts with none set; the colour tests set what they need."""
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
