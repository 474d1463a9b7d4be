"""Running a corpus: shards by a stable hash of the relative path, the same outcomes in the same
order whatever runs them (serially, a process pool, Ray tasks), and Ray's batching and
back-pressure, checked against :class:`FakeRayForTests`, a stand-in for the slice of Ray's task API
that :func:`run_on_ray` uses (real Ray is optional; a slow test runs it when it is installed)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from loopspec.replay.corpus import (
    RAY_BATCH_MAX,
    RAY_BATCH_MIN,
    Job,
    Outcome,
    RayMissing,
    Shard,
    discover,
    local_batch_size,
    ray_batch_size,
    run_corpus,
    run_on_ray,
    select,
    shard_of,
)

from _paths import DEFAULT_POLICY, FIXTURES

INCIDENTS = FIXTURES / "incidents"
POLICY = str(DEFAULT_POLICY)


# ------------------------------------------------------------------------------------- shards


@pytest.mark.parametrize("text,message", [
    ("0/3", "I must be between 1 and 3"),
    ("4/3", "I must be between 1 and 3"),
    ("1/0", "N must be at least 1"),
    ("x/y", "two whole numbers"),
    ("3", "two whole numbers"),
    ("-1/3", "two whole numbers"),
])
def test_a_bad_shard_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Shard.parse(text)


def test_a_good_shard_parses() -> None:
    assert Shard.parse("2/4") == Shard(2, 4) and Shard.parse("1/1") == Shard(1, 1)
    assert str(Shard(3, 5)) == "3/5"


def test_the_shard_hash_is_pinned() -> None:
    """The hash is part of the contract (a CI matrix and a cluster must agree across releases):
    these values are SHA-256's, and any change of hash or key encoding breaks them."""
    assert [shard_of(f"{i:04d}-x.cassette.yaml", 4) for i in range(8)] == [2, 0, 3, 1, 3, 3, 1, 2]
    assert shard_of("a/b.cassette.yaml", 7) == 6
    assert shard_of("hermes-2642-retry-after-429.cassette.yaml", 3) == 1


def test_every_cassette_is_in_exactly_one_shard() -> None:
    entries = discover([str(INCIDENTS)])
    for n in (1, 2, 3, 5):
        parts = [select(entries, Shard(i, n)) for i in range(1, n + 1)]
        flat = [f for p in parts for f in p]
        assert sorted(flat) == [e.file for e in entries] and len(set(flat)) == len(flat)
    assert all(select(entries, Shard(i, 3)) for i in (1, 2, 3)), "27 cassettes leave no shard of 3 empty"


def test_keys_are_relative_to_the_folder_so_any_checkout_splits_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    there = tmp_path / "checkout" / "corpus"
    (there / "sub").mkdir(parents=True)
    for name in ("a.cassette.yaml", "sub/b.cassette.yaml"):
        (there / name).write_text("x")
    monkeypatch.chdir(tmp_path)
    absolute = discover([str(there)])
    relative = discover(["checkout/corpus"])
    assert [e.key for e in absolute] == [e.key for e in relative] == ["a.cassette.yaml", "sub/b.cassette.yaml"]
    assert [e.file for e in relative] == ["checkout/corpus/a.cassette.yaml", "checkout/corpus/sub/b.cassette.yaml"]
    named = discover(["checkout/corpus/sub/b.cassette.yaml"])
    assert [e.key for e in named] == ["checkout/corpus/sub/b.cassette.yaml"]


# ------------------------------------------------------------------------------ one result


def test_local_batches_are_small_enough_to_balance() -> None:
    assert local_batch_size(27, 1) == 7 and local_batch_size(27, 2) == 4
    assert local_batch_size(10_000, 2) == 50 and local_batch_size(1, 8) == 1


def test_a_process_pool_returns_the_serial_outcomes_in_path_order() -> None:
    files = select(discover([str(INCIDENTS)]), None)
    job = Job("replay", (POLICY,))
    seen: list[str] = []
    serial = run_corpus(job, files, jobs=1)
    pooled = run_corpus(job, files, jobs=2, on_done=lambda batch: seen.extend(o.file for o in batch))
    assert [o.file for o in serial] == files
    assert [o.record for o in pooled] == [o.record for o in serial]
    assert sorted(seen) == files, "every cassette reported to the progress callback once"


def test_an_invalid_cassette_comes_back_with_its_diagnostics(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cassette.yaml"
    bad.write_text("loopspec_cassette: 1\nnope: [\n")
    shutil.copy(INCIDENTS / "ml-intern-length-with-tool-calls.cassette.yaml", tmp_path / "good.cassette.yaml")
    out = run_corpus(Job("diff", (POLICY, POLICY)), select(discover([str(tmp_path)]), None), jobs=2)
    assert [(Path(o.file).name, o.invalid) for o in out] == [("bad.cassette.yaml", True), ("good.cassette.yaml", False)]
    assert out[0].diagnostics and out[0].record["diagnostics"][0]["file"] == str(bad)
    assert out[1].record["changed"] is False


# ------------------------------------------------------------------------------------- Ray


class FakeRayForTests:
    """A test double of the part of Ray's core API that ``run_on_ray`` uses (``is_initialized``,
    ``init``, ``cluster_resources``, ``remote``, ``wait``, ``get``). Tasks run when submitted;
    ``wait`` hands back the most recently submitted one first, so results arrive out of order, and
    it records how many tasks were in flight at each call. ``worker_cwd`` moves to another
    directory before each task, as a Ray worker starts in a directory of its own."""

    def __init__(self, cpus: int = 2, fn: Callable[..., Any] | None = None, worker_cwd: str | None = None) -> None:
        self.cpus = cpus
        self.worker_cwd = worker_cwd
        self.initialised = False
        self.fn = fn
        self.in_flight: list[int] = []
        self.batch_sizes: list[int] = []

    def is_initialized(self) -> bool:
        return self.initialised

    def init(self) -> None:
        self.initialised = True

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": float(self.cpus)}

    def remote(self, fn: Callable[..., Any]) -> Any:
        fake, body = self, self.fn or fn

        class Task:
            def remote(self, *args: Any) -> tuple[str, Any]:
                fake.batch_sizes.append(len(args[-1]))
                if fake.worker_cwd:  # a Ray worker starts in a directory of Ray's, not the driver's
                    os.chdir(fake.worker_cwd)
                return ("ref", body(*args))

        return Task()

    def wait(self, refs: list[Any], num_returns: int = 1) -> tuple[list[Any], list[Any]]:
        self.in_flight.append(len(refs))
        return refs[-num_returns:], refs[:-num_returns]

    def get(self, ref: tuple[str, Any]) -> Any:
        return ref[1]


def _echo(cwd: str, job: Job, files: list[str]) -> list[Outcome]:
    return [Outcome(f, {"cassette": f, "verdict": "pass"}) for f in files]


def test_ray_batches_hold_200_to_1000_cassettes() -> None:
    assert ray_batch_size(100, 2) == RAY_BATCH_MIN == 200
    assert ray_batch_size(10_000, 2) == RAY_BATCH_MAX == 1000
    assert ray_batch_size(100_000, 64) == 391


def test_ray_runs_every_batch_with_bounded_work_in_flight_and_sorts_the_outcomes() -> None:
    files = [f"c/{i:05d}.cassette.yaml" for i in range(10_000)]
    fake = FakeRayForTests(cpus=2, fn=_echo)
    done: list[int] = []
    out = run_on_ray(Job("replay", (POLICY,)), files, ray=fake, max_in_flight=3, on_done=lambda b: done.append(len(b)))
    assert fake.initialised
    assert fake.batch_sizes == [1000] * 10
    assert max(fake.in_flight) == 3, "never more than max_in_flight tasks submitted and unfinished"
    assert sorted(o.file for o in out) == files and sum(done) == len(files)
    ordered = run_corpus_on(fake, files)
    assert [o.file for o in ordered] == files, "out-of-order arrivals are sorted by path"


def run_corpus_on(fake: FakeRayForTests, files: list[str]) -> list[Outcome]:
    import loopspec.replay.corpus as corpus

    original = corpus._import_ray
    corpus._import_ray = lambda: fake  # type: ignore[assignment]
    try:
        return run_corpus(Job("replay", (POLICY,)), files, backend="ray")
    finally:
        corpus._import_ray = original  # type: ignore[assignment]


def test_ray_in_flight_defaults_to_twice_the_cpus() -> None:
    fake = FakeRayForTests(cpus=2, fn=_echo)
    run_on_ray(Job("replay", (POLICY,)), [f"{i:05d}" for i in range(20_000)], ray=fake)
    assert max(fake.in_flight) == 4 and len(fake.batch_sizes) == 20


def test_ray_replays_real_cassettes_like_the_serial_run_from_the_drivers_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths, as a CI job names them: the task runs from the driver's directory."""
    monkeypatch.chdir(INCIDENTS.parent.parent)
    files = select(discover(["fixtures/incidents"]), None)
    job = Job("replay", (os.path.relpath(POLICY),))
    serial = run_corpus(job, files)
    via_ray = run_on_ray(job, files, ray=FakeRayForTests(cpus=1, worker_cwd="/"))
    assert sorted((o.file, str(o.record)) for o in via_ray) == [(o.file, str(o.record)) for o in serial]
    assert all(o.record["verdict"] == "pass" for o in serial)


def test_without_ray_installed_the_error_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(RayMissing, match=r"pip install 'loopspec\[ray\]'"):
        run_corpus(Job("replay", (POLICY,)), ["x.cassette.yaml"], backend="ray")


@pytest.mark.slow
def test_real_ray_tasks_give_the_serial_outcomes(tmp_path: Path) -> None:
    """Real Ray (``ray.init(num_cpus=2)``) over the incident corpus replicated to 10,000 cassettes
    (ten tasks of 1,000, two in flight per CPU); the report, serialized, is byte for byte the serial
    run's. Ray is an optional extra: without it there is nothing to run."""
    ray = pytest.importorskip("ray", reason="the optional loopspec[ray] extra is not installed")
    corpus = tmp_path / "incidents"
    corpus.mkdir()
    shutil.copytree(FIXTURES / "streams", tmp_path / "streams")
    src = sorted(INCIDENTS.glob("*.cassette.yaml"))
    for i in range(10_000):
        shutil.copy(src[i % len(src)], corpus / f"{i:05d}-{src[i % len(src)].name}")
    files = select(discover([str(corpus)]), None)
    job = Job("diff", (POLICY, str(DEFAULT_POLICY.parent / "hermes_pre_32012.yaml")))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}})
    try:
        via_ray = run_corpus(job, files, backend="ray")
    finally:
        ray.shutdown()
    serial = run_corpus(job, files, jobs=1)
    assert len(via_ray) == 10_000
    assert json.dumps([o.record for o in via_ray], sort_keys=True) == json.dumps([o.record for o in serial], sort_keys=True)
