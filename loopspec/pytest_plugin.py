"""pytest plugin: one test per cassette, for CI suites that guard a policy.

Point it at a folder of cassettes and a policy (command line or ini), request the
``loopspec_replay`` fixture, and every cassette becomes its own test item::

    # pytest.ini / pyproject [tool.pytest.ini_options]
    loopspec_cassettes = fixtures/incidents
    loopspec_machine = machines/default.yaml

    # tests/test_corpus.py
    def test_cassette(loopspec_replay, snapshot):
        assert loopspec_replay.verdict == "pass", loopspec_replay.explain()
        assert loopspec_replay.decisions == snapshot      # syrupy: the trace is reviewed like code

Registered through the ``pytest11`` entry point; it adds nothing unless a test asks for its fixtures
or the ini/command line configures it. What it does for CI maintainers:

- An invalid policy is one collection error for the test module that asks for the corpus, naming
  every ``file:line:col`` once, instead of the same traceback on every cassette. A collection error
  rather than ``pytest.UsageError``: it shows up in JUnit XML and CI test reports against the
  module that needs the policy, is reported once even under xdist (the controller deduplicates
  workers' identical collection errors, where a UsageError raised in a worker crashes it), and
  does not stop a run that never asks for the corpus (``pytest tests/test_unit.py``).
- ``--snapshot-update`` under pytest-xdist is refused before any test runs: each worker would
  rewrite the snapshot files with only the snapshots of the tests it ran (pytest #9600).
- On a terminal, the cassette run draws ``loopspec: replayed 120/1000 cassettes, 3 failed`` after
  pytest's dots (ini ``loopspec_progress``: auto, always or never).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import pytest

_CASSETTE_PROPERTY = "loopspec_cassette"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("loopspec", "loopspec cassette replay")
    group.addoption("--loopspec-cassettes", action="append", default=None, metavar="PATH",
                    help="cassette file or folder to turn into tests (repeatable)")
    group.addoption("--loopspec-machine", default=None, metavar="FILE", help="policy to replay them under")
    group.addoption("--loopspec-transport", default=None, choices=("inproc", "http"),
                    help="replay transport (default inproc)")
    group.addoption("--loopspec-min-coverage", type=float, default=None, metavar="PCT",
                    help="fail the session when the replayed cassettes cover less than PCT %% of the policy's "
                         "reachable transitions, guard outcomes and halts (see loopspec cover)")
    parser.addini("loopspec_cassettes", "cassette files or folders", type="paths", default=[])
    parser.addini("loopspec_machine", "policy to replay cassettes under", default="")
    parser.addini("loopspec_transport", "replay transport: inproc or http", default="inproc")
    parser.addini("loopspec_progress", "progress line for cassette runs: auto (on a terminal), always or never",
                  default="auto")


def _configured(config: pytest.Config) -> bool:
    """Whether this session uses loopspec at all (the plugin is installed into every pytest run
    of an environment that has loopspec, and must not meddle with projects that don't use it)."""
    return bool(
        config.getoption("loopspec_cassettes") or config.getoption("loopspec_machine")
        or config.getini("loopspec_cassettes") or config.getini("loopspec_machine")
    )


# ---------------------------------------------------------------------------- snapshots and xdist


def _snapshot_update_flag(config: pytest.Config) -> str | None:
    """The syrupy option that writes snapshot files, if given."""
    if config.getoption("update_snapshots", False):
        return "--snapshot-update"
    if config.getoption("update_new_snapshots_only", False):
        return "--snapshot-update-new-only"
    return None


def _distributed(config: pytest.Config) -> bool:
    """Whether pytest-xdist spreads this run over several processes (or this is one of them).
    By pytest_configure xdist has turned ``-n auto`` into a number and set ``dist``."""
    if hasattr(config, "workerinput"):
        return True
    numprocesses = config.getoption("numprocesses", None)
    return bool(numprocesses) or config.getoption("dist", "no") not in (None, "no") or bool(config.getoption("tx", None))


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if not _configured(config):
        return
    flag = _snapshot_update_flag(config)
    if flag and _distributed(config):
        raise pytest.UsageError(
            f"loopspec: {flag} does not work under pytest-xdist (-n): each worker rewrites the snapshot "
            "files with only the snapshots of the tests it ran, and the others are lost (pytest #9600). "
            f"Rerun without -n (or with -n 0) to update snapshots: pytest {flag} -n 0"
        )
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(_CorpusProgress(config), "loopspec-progress")
        minimum = config.getoption("loopspec_min_coverage")
        if minimum is not None:
            if not 0 <= minimum <= 100:
                raise pytest.UsageError(f"loopspec: --loopspec-min-coverage {minimum:g} must be a percentage between 0 and 100")
            config.pluginmanager.register(_CoverageGate(config, minimum), "loopspec-coverage")


# -------------------------------------------------------------------------------- the policy

_POLICY_KEY = pytest.StashKey[tuple[Any, str | None]]()
_REPORTED_KEY = pytest.StashKey[str]()


def _machine_path(config: pytest.Config) -> str | None:
    path = config.getoption("loopspec_machine") or config.getini("loopspec_machine")
    if not path:
        return None
    path = os.fspath(path)
    if not os.path.isabs(path):
        path = os.path.join(str(config.rootpath), path)
    return path


def _shown(path: str) -> str:
    """``path`` relative to the working directory when it is under it (CI logs read better)."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _policy(config: pytest.Config) -> tuple[Any, str | None]:
    """(the compiled policy, None) or (None, the one message that says why there is none); cached."""
    if _POLICY_KEY in config.stash:
        return config.stash[_POLICY_KEY]
    path = _machine_path(config)
    result: tuple[Any, str | None]
    if path is None:
        result = (None, "loopspec: set loopspec_machine (ini) or --loopspec-machine to the policy to replay the cassettes under")
    else:
        from loopspec.cli import swapped_kind
        from loopspec.language.validate import validate_file

        shown = _shown(path)
        policy, diags = validate_file(shown)
        if policy is not None:
            result = (policy, None)
        else:
            swapped = swapped_kind(shown, "policy")
            lines = [swapped] if swapped else [d.format() for d in diags if d.severity == "error"]
            result = (None, "\n".join([
                f"loopspec: {shown} is not a valid policy, so no cassette can be replayed under it:",
                *lines,
                f"(loopspec validate {shown} reports the same)",
            ]))
    config.stash[_POLICY_KEY] = result
    return result


def _cassette_paths(config: pytest.Config) -> list[str]:
    from loopspec.replay.cassette import find_cassettes

    paths = config.getoption("loopspec_cassettes") or [str(p) for p in config.getini("loopspec_cassettes")]
    return find_cassettes([os.fspath(p) for p in paths])


def _cassette_id(path: str) -> str:
    return os.path.basename(path).removesuffix(".yaml").removesuffix(".cassette")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "loopspec_policy" in metafunc.fixturenames:
        _compiled, problem = _policy(metafunc.config)
        if problem is not None:
            # One clean error for the module that needs the policy; any later module that needs
            # it too points back here instead of repeating every diagnostic.
            first = metafunc.config.stash.setdefault(_REPORTED_KEY, metafunc.definition.nodeid.split("::")[0])
            if first != metafunc.definition.nodeid.split("::")[0]:
                problem = f"loopspec: the policy is invalid; see the error collecting {first}"
            raise pytest.Collector.CollectError(problem)
    if "loopspec_cassette_path" not in metafunc.fixturenames:
        return
    paths = _cassette_paths(metafunc.config)
    metafunc.parametrize("loopspec_cassette_path", paths, ids=[_cassette_id(p) for p in paths])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Mark cassette items, so reports (also those a pytest-xdist worker sends back) say which
    # cassette they replayed; JUnit XML shows it as a test property too.
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "loopspec_cassette_path" in callspec.params:
            item.user_properties.append((_CASSETTE_PROPERTY, callspec.params["loopspec_cassette_path"]))


@pytest.fixture(scope="session")
def loopspec_policy(request: pytest.FixtureRequest) -> Any:
    """The compiled policy named by --loopspec-machine / loopspec_machine."""
    policy, problem = _policy(request.config)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    return policy


@pytest.fixture
def loopspec_cassette(loopspec_cassette_path: str) -> Any:
    """The loaded cassette of this test item (invalid cassettes fail with their diagnostics)."""
    from loopspec.cli import swapped_kind
    from loopspec.replay.cassette import read_cassette

    cassette, diags = read_cassette(loopspec_cassette_path)
    if cassette is None:
        swapped = swapped_kind(loopspec_cassette_path, "cassette")
        pytest.fail(swapped or "\n".join(d.format() for d in diags), pytrace=False)
    return cassette


@dataclass
class CassetteRun:
    """A replay report plus the decision path, the part worth snapshotting."""

    report: Any

    @property
    def verdict(self) -> str:
        return str(self.report.verdict)

    @property
    def outcome(self) -> str:
        return str(self.report.outcome)

    @property
    def decisions(self) -> list[str]:
        return [f"{s.state} --{s.event}--> {s.target}" for s in self.report.result.trace]

    def explain(self) -> str:
        return str(self.report.explain())


@pytest.fixture
def loopspec_replay(request: pytest.FixtureRequest, loopspec_cassette: Any, loopspec_policy: Any) -> CassetteRun:
    """Replay this item's cassette under the configured policy."""
    from loopspec.replay.harness import replay

    transport = request.config.getoption("loopspec_transport") or request.config.getini("loopspec_transport")
    run = CassetteRun(asyncio.run(replay(loopspec_cassette, loopspec_policy, transport=transport)))
    if request.config.getoption("loopspec_min_coverage") is not None and run.report.result is not None:
        from loopspec.verify.cover import run_items

        # a property of the report, so that pytest-xdist workers send it to the process that counts
        covered = sorted(f"{i.kind}:{i.name}" for i in run_items(loopspec_policy, run.report.result.steps))
        request.node.user_properties.append((_COVERED_PROPERTY, covered))
    return run


# ---------------------------------------------------------------------------------- coverage

_COVERED_PROPERTY = "loopspec_covered"


class _CoverageGate:
    """``--loopspec-min-coverage PCT``: counts what the replayed cassettes cover (from each test's
    report, so pytest-xdist workers count too) and fails the session below PCT %."""

    def __init__(self, config: pytest.Config, minimum: float) -> None:
        self.config = config
        self.minimum = minimum
        self.covered: set[str] = set()
        self.runs = 0

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == _COVERED_PROPERTY and isinstance(value, list):
                self.covered.update(str(v) for v in value)
                self.runs += 1

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        policy, problem = _policy(self.config)
        if policy is None or problem is not None:
            return
        from loopspec.verify.cover import reachable_items

        reachable = {f"{i.kind}:{i.name}" for i in reachable_items(policy)}
        hit = reachable & self.covered
        ratio = 100.0 * len(hit) / len(reachable) if reachable else 100.0
        missing = sorted(reachable - hit)
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"loopspec coverage: {len(hit)}/{len(reachable)} reachable items ({ratio:.1f} %) by {self.runs} cassettes; "
                 f"minimum {self.minimum:g} %"]
        if ratio < self.minimum:
            lines += [f"  not covered: {m}" for m in missing[:20]]
            if len(missing) > 20:
                lines.append(f"  ... and {len(missing) - 20} more (loopspec cover POLICY --corpus DIR lists them all)")
            if session.exitstatus == 0:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if tr is not None:
            tr.write_line("")
            for line in lines:
                tr.write_line(line, red=ratio < self.minimum, bold=ratio < self.minimum)


# ---------------------------------------------------------------------------------- progress


class _CorpusProgress:
    """Draws ``loopspec: replayed i/n cassettes, k failed`` after pytest's dots while cassette items
    run (in the process that prints, so also for reports pytest-xdist workers send back).

    It never moves the cursor (see :mod:`loopspec.cli.progress`), so pytest's own output is untouched;
    it is off when stdout is not a terminal, with -v (one line per test leaves no room), and with
    ``loopspec_progress = never``.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.progress: Any = None
        self.finished = False

    def _start(self) -> Any:
        from loopspec.cli.progress import Progress

        mode = str(self.config.getini("loopspec_progress")).strip().lower()
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        # pytest's terminal writer and its file: drawing goes straight to the file, so that the
        # writer's idea of the current line (where its dots and [xx%] go) stays exact.
        tw: Any = getattr(tr, "_tw", None)
        file: Any = getattr(tw, "_file", None)
        enabled = (
            mode != "never" and tr is not None and file is not None
            and (mode == "always" or (bool(tr.isatty) and tw.hasmarkup and self.config.get_verbosity() <= 0))
        )

        def write(text: str) -> None:
            file.write(text)
            file.flush()

        def room() -> int:
            # Leave space for pytest's " [100%]" (or " [1000/1000]") at the right edge.
            return int(tw.fullwidth - tw.width_of_current_line - 14)

        return Progress(None, label=" loopspec: ", enabled=enabled, min_interval=0, write=write if enabled else None,
                        room=room if enabled else None, after_cursor=True)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if self.progress is None:
            self.progress = self._start()
        if self.progress.total is None:
            known = {_cassette_id(p) for p in _cassette_paths(self.config)}
            total = sum(1 for i in ids if i.endswith("]") and i[i.rfind("[") + 1 : -1] in known)
            self.progress.total = total or None

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        total = sum(1 for item in items if "loopspec_cassette_path" in getattr(getattr(item, "callspec", None), "params", {}))
        if self.progress is None:
            self.progress = self._start()
        self.progress.total = total or None

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.progress is None:
            self.progress = self._start()
        p = self.progress
        if not p.enabled or self.finished:
            return
        is_cassette = any(name == _CASSETTE_PROPERTY for name, _value in report.user_properties)
        if is_cassette and (report.when == "call" or (report.when == "setup" and not report.passed)):
            p.advance(failed=not report.passed and not report.skipped)
            if p.total is not None and p.done >= p.total:
                p.close()
                self.finished = True
        elif p.done and (report.when == "call" or not report.passed):
            p.draw(force=True)  # the letter pytest just printed covered the start of the text

    def pytest_sessionfinish(self) -> None:
        if self.progress is not None:
            self.progress.close()
