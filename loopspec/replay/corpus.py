"""Run a cassette corpus serially, on a local process pool, or as Ray tasks, with one result.

``loopspec replay`` and ``loopspec diff`` hand this module a list of cassettes and a :class:`Job`
(which policies, which transport); it returns one :class:`Outcome` per cassette, sorted by the
cassette's path, whatever ran them. So a report is byte-identical under ``--jobs 1``, ``--jobs 8``
or Ray, and ``--shard I/N`` picks cassettes by a stable hash of their path relative to the folder
they were found under: CI matrices, local pools and clusters split a corpus the same way, and the
union of the N shards' outcomes is the serial run's.

Workers read and replay cassettes themselves (reading is half the cost of a replay) and send back
plain records (JSON-able dicts, plus the diagnostics of an invalid file), never a ``TurnResult``.
Policies travel as file paths and are compiled once per worker process.
"""

from __future__ import annotations

import gc
import hashlib
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Literal, Sequence

from loopspec.language.diagnostics import Diagnostic

Mode = Literal["replay", "diff"]
Backend = Literal["local", "ray"]

RAY_BATCH_MIN = 200
"""Fewest cassettes per Ray task (the corpus's tail aside): a task costs milliseconds to schedule,
a cassette about as much to replay, so smaller batches would spend the cluster on scheduling."""
RAY_BATCH_MAX = 1000
"""Most cassettes per Ray task, so a lost or slow worker costs at most a second or so of rework
and the results arrive in steps small enough to show progress."""


# --- which cassettes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A cassette to run: ``file`` as the user's paths name it, ``key`` the path the shard hash reads."""

    file: str
    key: str


def discover(paths: Sequence[str]) -> list[Entry]:
    """Every cassette under ``paths``, sorted by file. A cassette's key is its path relative to
    the folder argument it was found under (``/`` separated), or, for a file named directly, the
    path as given: the same on every machine that checks the corpus out anywhere."""
    from .cassette import find_cassettes

    seen: dict[str, Entry] = {}
    for p in paths:
        for f in find_cassettes([p]):
            key = os.path.relpath(f, p) if os.path.isdir(p) else os.path.normpath(f)
            seen.setdefault(f, Entry(f, key.replace(os.sep, "/")))
    return sorted(seen.values(), key=lambda e: e.file)


@dataclass(frozen=True)
class Shard:
    """``--shard I/N``: the I-th of N disjoint parts of a corpus (1 <= I <= N)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"2/4"`` -> Shard(2, 4); a ValueError whose message says what is wrong otherwise."""
        i, sep, n = text.partition("/")
        if not sep or not i.strip().isdigit() or not n.strip().isdigit():
            raise ValueError(f"--shard takes I/N, two whole numbers such as 1/4, not {text!r}")
        index, count = int(i), int(n)
        if count < 1:
            raise ValueError(f"--shard {text}: N must be at least 1")
        if not 1 <= index <= count:
            raise ValueError(f"--shard {text}: I must be between 1 and {count}")
        return cls(index, count)

    def holds(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(key: str, count: int) -> int:
    """The 0-based shard of ``key`` among ``count``: SHA-256, so no Python hash seed, platform or
    process can change it."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % count


# --- what each worker does ------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What every worker needs besides the cassettes: picklable, so it crosses process and Ray
    boundaries. ``policies`` is (policy,) for replay and (old, new) for diff."""

    mode: Mode
    policies: tuple[str, ...]
    transport: str = "inproc"
    with_trace: bool = False
    store_trace: bool = False
    files_root: str | None = None
    """A folder ``sse_file`` may read under besides each cassette's own (``--files-root``)."""
    journal: str | None = None
    """Write each replayed turn to this journal file (``--journal``), under the cassette's turn id."""
    crash_after_step: int | None = None
    """The test hook ``--crash-after-step K``: end the process right after its K-th journaled decision."""
    cache_dir: str | None = None
    """Read cassettes through the cache in this folder (an absolute path; None: read every file)."""


@dataclass
class Outcome:
    """One cassette's result: ``record`` is its JSON record (``diff`` rows or ``replay`` reports);
    ``diagnostics`` is set for an invalid cassette, ``error`` when storing its trace failed."""

    file: str
    record: dict[str, Any]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    error: str | None = None

    @property
    def invalid(self) -> bool:
        return self.record.get("verdict") == "invalid"


_POLICIES: dict[str, Any] = {}


def prime_policy(path: str, policy: Any) -> None:
    """Hand this process an already compiled policy, so serial runs (and forked workers) skip
    compiling it again."""
    _POLICIES[path] = policy


def _policy(path: str) -> Any:
    if path not in _POLICIES:
        from loopspec.language.validate import validate_file

        policy, diags = validate_file(path)
        if policy is None:  # the parent validated it; only a file edited mid-run gets here
            raise RuntimeError(f"{path}: the policy became invalid while the corpus ran ({diags[0].message})")
        _POLICIES[path] = policy
    return _POLICIES[path]


def run_batch(job: Job, files: Sequence[str]) -> list[Outcome]:
    """Read and replay ``files`` under ``job``: the unit of work of every backend."""
    import asyncio

    with _fewer_collections():
        return asyncio.run(_run_batch(job, list(files)))


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector about thirty times less often while a batch replays.

    A replayed turn is freed by reference counting (no cycles, see ``RecordedTools``), so the
    collector's young-generation passes over each turn's fresh objects found next to nothing and
    cost about a tenth of a corpus replay (``bench/replay_cost.py``). Garbage in a cycle is still
    collected, only in larger passes; the thresholds are restored after the batch."""
    before = gc.get_threshold()
    gc.set_threshold(20_000, 50, 50)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def run_batch_in(cwd: str, job: Job, files: Sequence[str]) -> list[Outcome]:
    """:func:`run_batch` from the driver's working directory when this machine has it (a Ray
    worker starts elsewhere), so relative paths resolve, and read the same, as in a local run."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return run_batch(job, files)


async def _run_batch(job: Job, files: list[str]) -> list[Outcome]:
    from .cassette import read_cassette

    policies = [_policy(p) for p in job.policies]
    read = read_cassette
    if job.cache_dir is not None:
        from .cassette_cache import CassetteCache

        read = CassetteCache(job.cache_dir).read
    out: list[Outcome] = []
    journal = None
    if job.journal is not None:  # one connection per batch; SQLite serialises the workers' writes
        from loopspec.journal import SqliteJournal

        journal = SqliteJournal(job.journal)
    try:
        for f in files:
            c, diags = read(f, files_root=job.files_root)
            if c is None:
                out.append(Outcome(f, {"cassette": f, "verdict": "invalid",
                                       "diagnostics": [d.to_json() for d in diags]}, list(diags)))
            elif job.mode == "replay":
                out.append(await _replay_one(job, c, policies[0], journal))
            else:
                out.append(await _diff_one(job, c, policies[0], policies[1]))
    finally:
        if journal is not None:
            journal.close()
        if job.transport == "http":
            from loopspec.providers.litellm_provider import close_clients

            await close_clients()
    return out


_CRASH_HOOKS: dict[int, Any] = {}


def _observers(job: Job) -> list[Any]:
    """The crash hook, one per process: it counts the decisions of every turn the process runs."""
    if job.crash_after_step is None:
        return []
    from loopspec.engine.crash_hook import CrashAfterStep

    return [_CRASH_HOOKS.setdefault(job.crash_after_step, CrashAfterStep(job.crash_after_step))]


async def _replay_one(job: Job, c: Any, policy: Any, journal: Any = None) -> Outcome:
    from .harness import replay

    r = await replay(c, policy, transport=job.transport, journal=journal, observers=_observers(job),  # type: ignore[arg-type]
                     files_root=job.files_root)
    error = None
    if job.store_trace:
        from .cassette import RecordedStep, store_trace

        try:
            store_trace(r.cassette, [RecordedStep(s.state, s.event, s.target, s.transition) for s in r.result.trace])
            r.divergence = None
        except OSError as exc:
            error = f"cannot store the trace in {r.cassette}: {exc.strerror or exc}"
    record = r.to_json(with_trace=job.with_trace)
    if journal is not None:
        from .journal_note import turn_id_of

        record["turn_id"] = turn_id_of(c.file)
    return Outcome(c.file, record, error=error)


async def _diff_one(job: Job, c: Any, old: Any, new: Any) -> Outcome:
    from .harness import replay
    from .judge import decision_path, first_difference

    a = await replay(c, old, transport=job.transport)  # type: ignore[arg-type]
    b = await replay(c, new, transport=job.transport)  # type: ignore[arg-type]
    pa, pb = decision_path(a.result), decision_path(b.result)
    part = first_difference(pa, pb)
    row: dict[str, Any] = {
        "cassette": a.cassette,
        "name": a.name,
        "changed": part is not None or a.outcome != b.outcome,
        "old": {"outcome": a.outcome, "model_calls": a.result.usage.model_calls,
                "tool_batches": a.result.usage.tool_batches, "verdict": a.verdict},
        "new": {"outcome": b.outcome, "model_calls": b.result.usage.model_calls,
                "tool_batches": b.result.usage.tool_batches, "verdict": b.verdict},
        "first_difference": None,
    }
    if part is not None:
        row["first_difference"] = {
            "step": part,
            "old": list(pa[part]) if part < len(pa) else None,
            "new": list(pb[part]) if part < len(pb) else None,
        }
    return Outcome(c.file, row)


# --- backends -------------------------------------------------------------------------------------

Done = Callable[[list[Outcome]], None]
"""Called with each finished batch, in the order batches finish (for a progress line)."""


def batches(files: Sequence[str], size: int) -> list[list[str]]:
    """``files`` cut into consecutive batches of ``size`` (the last may be shorter)."""
    return [list(files[i:i + size]) for i in range(0, len(files), max(1, size))]


def local_batch_size(n: int, jobs: int) -> int:
    """About four batches per worker (so a slow batch does not leave the others idle at the
    end), and at most 50 cassettes each (so progress moves)."""
    return max(1, min(50, math.ceil(n / (jobs * 4))))


def ray_batch_size(n: int, cpus: int) -> int:
    """About four tasks per CPU, each of :data:`RAY_BATCH_MIN` to :data:`RAY_BATCH_MAX` cassettes."""
    return max(RAY_BATCH_MIN, min(RAY_BATCH_MAX, math.ceil(n / max(1, cpus * 4))))


def run_corpus(job: Job, files: Sequence[str], *, jobs: int = 1, backend: Backend = "local",
               on_done: Done | None = None) -> list[Outcome]:
    """Every file's outcome, sorted by file: serially (``jobs == 1``), on ``jobs`` local processes,
    or as Ray tasks."""
    done = on_done or (lambda _batch: None)
    if backend == "ray":
        outcomes = run_on_ray(job, files, on_done=done)
    elif jobs <= 1 or len(files) <= 1:
        outcomes = []
        for batch in batches(files, local_batch_size(len(files), 1)):
            result = run_batch(job, batch)
            done(result)
            outcomes += result
    else:
        outcomes = _run_pool(job, files, jobs, done)
    return sorted(outcomes, key=lambda o: o.file)


def _run_pool(job: Job, files: Sequence[str], jobs: int, done: Done) -> list[Outcome]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # fork where the platform has it: workers inherit the imports and the compiled policies
    # (start-up in milliseconds instead of an interpreter each); spawn elsewhere.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    outcomes: list[Outcome] = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(run_batch, job, b) for b in batches(files, local_batch_size(len(files), jobs))]
        for fut in as_completed(futures):
            result = fut.result()
            done(result)
            outcomes += result
    return outcomes


class RayMissing(RuntimeError):
    """``--backend ray`` without Ray installed."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayMissing("--backend ray needs Ray: pip install 'loopspec[ray]'") from exc
    return ray


def run_on_ray(job: Job, files: Sequence[str], *, on_done: Done | None = None, ray: Any = None,
               max_in_flight: int | None = None) -> list[Outcome]:
    """Run ``files`` as Ray core tasks of :func:`ray_batch_size` cassettes each, with at most
    ``max_in_flight`` tasks submitted and unfinished (default: twice the cluster's CPUs), so a
    100k-cassette corpus never queues its whole self at once. ``ray`` is imported here, not at
    module level, so the CLI starts as fast without it; tests pass a stand-in module.

    Connects to the cluster ``RAY_ADDRESS`` names, or starts a local one, unless Ray is already
    initialised. Workers read cassettes and policies from the same paths, so a cluster needs them
    on a shared file system (or in the job's ``working_dir``)."""
    ray = ray if ray is not None else _import_ray()
    done = on_done or (lambda _batch: None)
    if not ray.is_initialized():
        ray.init()
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    limit = max_in_flight if max_in_flight is not None else 2 * cpus
    task = ray.remote(run_batch_in)
    here = os.getcwd()
    todo = batches(files, ray_batch_size(len(files), cpus))
    todo.reverse()  # pop() from the end submits them in file order
    pending: list[Any] = []
    outcomes: list[Outcome] = []
    while todo or pending:
        while todo and len(pending) < limit:
            pending.append(task.remote(here, job, todo.pop()))
        ready, pending = ray.wait(pending, num_returns=1)
        for ref in ready:
            result = ray.get(ref)
            done(result)
            outcomes += result
    return outcomes


def default_jobs() -> int:
    """All the cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def select(entries: Iterable[Entry], shard: Shard | None) -> list[str]:
    """The files of ``entries`` in ``shard`` (all of them without one), sorted."""
    return sorted(e.file for e in entries if shard is None or shard.holds(e.key))
