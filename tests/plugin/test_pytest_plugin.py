"""The pytest plugin as a CI maintainer meets it: an invalid policy is one clean error, snapshot
updates under xdist are refused, and a cassette run shows progress on a terminal only."""

from __future__ import annotations

import shutil

import pytest

from _paths import DEFAULT_POLICY, FIXTURES

pytest_plugins = ["pytester"]

# Cassettes that need no stream files next to them, so they can be copied anywhere.
SELF_CONTAINED = sorted(p for p in (FIXTURES / "incidents").glob("*.cassette.yaml") if "sse_file" not in p.read_text())

CORPUS_TEST = """
def test_cassette(loopspec_replay, snapshot):
    assert loopspec_replay.verdict == "pass", loopspec_replay.explain()
    assert loopspec_replay.decisions == snapshot
"""


def make_project(pytester: pytest.Pytester, policy_text: str | None = None) -> None:
    corpus = pytester.path / "corpus"
    corpus.mkdir()
    for src in SELF_CONTAINED:
        shutil.copy(src, corpus / src.name)
    (pytester.path / "policy.yaml").write_text(policy_text or DEFAULT_POLICY.read_text())
    pytester.makeini("[pytest]\nloopspec_cassettes = corpus\nloopspec_machine = policy.yaml\n")
    pytester.makepyfile(test_guard_corpus=CORPUS_TEST)


def broken_policy() -> tuple[str, str]:
    """The default policy with one typo, and the file:line:col the error must name."""
    text = DEFAULT_POLICY.read_text()
    lines = text.splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if line.strip() == "kind: stream")
    col = lines[i].index("kind") + len("kind: ") + 1
    lines[i] = lines[i].replace("kind: stream", "kind: steam")
    return "".join(lines), f"policy.yaml:{i + 1}:{col}: error: unknown state kind 'steam'"


def report_body(out: str) -> str:
    """The run's report without pytest's closing recap: under xdist with ``CI`` set, pytest 9
    repeats each collection error's whole message in "short test summary info"."""
    return out.split("short test summary info")[0]


def test_the_corpus_runs_one_test_per_cassette(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    result = pytester.runpytest("--snapshot-update")
    result.assert_outcomes(passed=len(SELF_CONTAINED))
    result = pytester.runpytest()
    result.assert_outcomes(passed=len(SELF_CONTAINED))


def test_an_invalid_policy_is_one_clean_collection_error(pytester: pytest.Pytester) -> None:
    text, where = broken_policy()
    make_project(pytester, text)
    pytester.makepyfile(test_guard_more="def test_policy_loads(loopspec_policy):\n    pass\n")
    result = pytester.runpytest()
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=2)
    assert report_body(out).count(where) == 1, out
    assert "did you mean 'stream'" in out
    assert "(loopspec validate policy.yaml reports the same)" in out
    assert "see the error collecting test_guard_corpus.py" in out, "the second module points back to the first"
    assert "Traceback" not in out and "SpecError" not in out and "raise " not in out


def test_an_invalid_policy_is_reported_once_under_xdist(pytester: pytest.Pytester) -> None:
    text, where = broken_policy()
    make_project(pytester, text)
    result = pytester.runpytest_subprocess("-n", "2")
    out = result.stdout.str()
    assert result.ret in (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.INTERRUPTED), out  # xdist says 1
    assert report_body(out).count(where) == 1, out
    assert "Traceback" not in out


def test_a_policy_given_as_a_cassette_says_so(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    shutil.copy(SELF_CONTAINED[0], pytester.path / "policy.yaml")
    result = pytester.runpytest()
    out = result.stdout.str()
    assert "this is a cassette ('loopspec_cassette:'), not a policy" in out
    assert out.count("unknown key") == 0


def test_a_missing_machine_setting_is_one_error(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makeini("[pytest]\nloopspec_cassettes = corpus\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert result.stdout.str().count("set loopspec_machine (ini) or --loopspec-machine") == 1


def _syrupy_has(flag: str) -> bool:
    """syrupy grew --snapshot-update-new-only after 4.6, the lowest version loopspec[pytest] allows."""
    import inspect

    import syrupy

    return flag in inspect.getsource(syrupy)


@pytest.mark.parametrize("flag", ["--snapshot-update", "--snapshot-update-new-only"])
@pytest.mark.parametrize("n", ["2", "auto"])
def test_snapshot_update_under_xdist_is_refused(pytester: pytest.Pytester, flag: str, n: str) -> None:
    if not _syrupy_has(flag):
        pytest.skip(f"this syrupy has no {flag}")
    make_project(pytester)
    result = pytester.runpytest(flag, "-n", n)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"loopspec: {flag} does not work under pytest-xdist (-n)" in err
    assert "Rerun without -n" in err
    assert not (pytester.path / "__snapshots__").exists(), "refused before anything ran"


def test_snapshot_update_without_xdist_is_allowed(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    result = pytester.runpytest("--snapshot-update", "-n", "0")
    result.assert_outcomes(passed=len(SELF_CONTAINED))
    assert (pytester.path / "__snapshots__" / "test_guard_corpus.ambr").exists()


def test_projects_without_loopspec_are_left_alone(pytester: pytest.Pytester) -> None:
    """The plugin is installed into every pytest run of the environment; it refuses nothing where
    loopspec is not configured."""
    from loopspec.pytest_plugin import _configured

    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    config = pytester.parseconfigure("--snapshot-update", "-n", "2")
    assert not _configured(config)


def test_progress_is_quiet_off_a_terminal(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    result = pytester.runpytest("--snapshot-update")
    assert "loopspec: replayed" not in result.stdout.str()
    assert "\x1b7" not in result.stdout.str()


def test_progress_draws_after_the_dots(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # room for the whole text after the dots
    make_project(pytester)
    n = len(SELF_CONTAINED)
    result = pytester.runpytest("--snapshot-update", "-o", "loopspec_progress=always")
    out = result.stdout.str()
    result.assert_outcomes(passed=n)
    for i in range(1, n + 1):
        assert f"\x1b7 loopspec: replayed {i}/{n} cassettes, 0 failed\x1b[K\x1b8" in out, out
    assert "\x1b[K" in out.split(f"replayed {n}/{n}")[1], "cleared when the corpus is done"


def test_progress_shortens_on_a_narrow_terminal(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    n = len(SELF_CONTAINED)
    # "test_guard_corpus.py " and one letter per cassette, 14 columns kept for pytest's [100%], and
    # 10 left for the progress: room for " n/n", not for " n/n, n failed" (every cassette fails
    # here: the project has no snapshots) -- 50 columns did that while the corpus had 4 such cassettes
    monkeypatch.setenv("COLUMNS", str(21 + n + 14 + 10))
    make_project(pytester)
    out = pytester.runpytest("-o", "loopspec_progress=always").stdout.str()
    assert f"\x1b7 {n}/{n}, 0 failed\x1b[K\x1b8" in out or f"\x1b7 {n}/{n}\x1b[K\x1b8" in out, out


def test_progress_counts_failures(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    make_project(pytester)
    pytester.makepyfile(test_guard_corpus="def test_cassette(loopspec_replay):\n    assert loopspec_replay.outcome == 'nope'\n")
    n = len(SELF_CONTAINED)
    result = pytester.runpytest("-o", "loopspec_progress=always")
    result.assert_outcomes(failed=n)
    assert f" loopspec: replayed {n}/{n} cassettes, {n} failed" in result.stdout.str()


def test_progress_never(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    result = pytester.runpytest("--snapshot-update", "-o", "loopspec_progress=never")
    assert "loopspec: replayed" not in result.stdout.str()


COVERAGE_TEST = """
def test_cassette(loopspec_replay):
    assert loopspec_replay.verdict == "pass", loopspec_replay.explain()
"""


def _coverage_project(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makepyfile(test_guard_corpus=COVERAGE_TEST)


def test_min_coverage_fails_a_green_session_below_the_threshold_and_says_what_is_missing(pytester: pytest.Pytester) -> None:
    _coverage_project(pytester)
    result = pytester.runpytest("--loopspec-min-coverage", "99")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=len(SELF_CONTAINED))
    result.stdout.re_match_lines([r"loopspec coverage: \d+/\d+ reachable items \(\d+\.\d %\) by \d+ cassettes; minimum 99 %", r"  not covered: .*"])
    low = pytester.runpytest("--loopspec-min-coverage", "1")
    assert low.ret == pytest.ExitCode.OK
    line = next(x for x in low.stdout.lines if x.startswith("loopspec coverage:"))
    assert line.endswith("minimum 1 %") and f"by {len(SELF_CONTAINED)} cassettes" in line


def test_min_coverage_counts_what_xdist_workers_replayed(pytester: pytest.Pytester) -> None:
    _coverage_project(pytester)
    serial = pytester.runpytest("--loopspec-min-coverage", "1")
    parallel = pytester.runpytest_subprocess("-n", "2", "--loopspec-min-coverage", "1")
    pick = lambda r: next(x for x in r.stdout.lines if x.startswith("loopspec coverage:"))  # noqa: E731
    assert pick(serial) == pick(parallel)


def test_min_coverage_out_of_range_is_a_usage_error(pytester: pytest.Pytester) -> None:
    _coverage_project(pytester)
    result = pytester.runpytest("--loopspec-min-coverage", "150")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--loopspec-min-coverage 150 must be a percentage between 0 and 100*"])
