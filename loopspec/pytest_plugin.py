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

Registered through the ``pytest11`` entry point; it adds nothing unless a test asks for its fixtures.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("loopspec", "loopspec cassette replay")
    group.addoption("--loopspec-cassettes", action="append", default=None, metavar="PATH",
                    help="cassette file or folder to turn into tests (repeatable)")
    group.addoption("--loopspec-machine", default=None, metavar="FILE", help="policy to replay them under")
    group.addoption("--loopspec-transport", default=None, choices=("inproc", "http"),
                    help="replay transport (default inproc)")
    parser.addini("loopspec_cassettes", "cassette files or folders", type="paths", default=[])
    parser.addini("loopspec_machine", "policy to replay cassettes under", default="")
    parser.addini("loopspec_transport", "replay transport: inproc or http", default="inproc")


def _cassette_paths(config: pytest.Config) -> list[str]:
    from loopspec.replay.cassette import find_cassettes

    paths = config.getoption("loopspec_cassettes") or [str(p) for p in config.getini("loopspec_cassettes")]
    return find_cassettes([os.fspath(p) for p in paths])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "loopspec_cassette_path" not in metafunc.fixturenames:
        return
    paths = _cassette_paths(metafunc.config)
    ids = [os.path.basename(p).removesuffix(".yaml").removesuffix(".cassette") for p in paths]
    metafunc.parametrize("loopspec_cassette_path", paths, ids=ids)


@pytest.fixture(scope="session")
def loopspec_policy(request: pytest.FixtureRequest) -> Any:
    """The compiled policy named by --loopspec-machine / loopspec_machine."""
    from loopspec import load_policy

    path = request.config.getoption("loopspec_machine") or request.config.getini("loopspec_machine")
    if not path:
        pytest.fail("set loopspec_machine (ini) or --loopspec-machine to the policy to replay under")
    if not os.path.isabs(path):
        path = os.path.join(str(request.config.rootpath), path)
    return load_policy(path)


@pytest.fixture
def loopspec_cassette(loopspec_cassette_path: str) -> Any:
    """The loaded cassette of this test item (invalid cassettes fail with their diagnostics)."""
    from loopspec.replay.cassette import read_cassette

    cassette, diags = read_cassette(loopspec_cassette_path)
    if cassette is None:
        pytest.fail("\n".join(d.format() for d in diags), pytrace=False)
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
    return CassetteRun(asyncio.run(replay(loopspec_cassette, loopspec_policy, transport=transport)))
