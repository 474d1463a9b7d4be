"""A corpus replay killed at every step boundary, and by SIGKILL at random points, resumes to the
same end: the history is valid, every tool ran at most once (its effects are counted in a file, outside
the process), counters and caps go on across the crash, and every cassette's verdict, outcome and
decisions equal those of the uninterrupted run.

The killed processes are real: a small fork server (one interpreter that has imported loopspec
once) forks a child per run, so each kill costs a fork instead of an interpreter start, and the
whole matrix stays at a few seconds. Children run ``loopspec replay --journal`` (in process, virtual
time) and ``loopspec resume``, and write down at their end whether litellm was ever imported.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest

from loopspec import load_policy
from loopspec.engine.history import history_problems
from loopspec.journal import SqliteJournal
from loopspec.replay.cassette import read_cassette
from loopspec.replay.harness import replay_sync
from loopspec.replay.journal_note import turn_id_of
from loopspec.replay.journaled import replay_entry

from _paths import DEFAULT_POLICY, FIXTURES, ROOT

CORPUS = [f"fixtures/incidents/{name}.cassette.yaml" for name in (
    "cogtrix-1370-truncated-write-executed",  # two tool batches, a truncated call dropped
    "hermes-2642-retry-after-429",  # a backoff: virtual time and the retry counter go on
    "hermes-30770-guardrail-silent-halt",  # guardrail memory across batches
    "ogx-6231-unknown-tool-silent-exit",  # a call of a tool that does not exist
)]
POLICY = str(DEFAULT_POLICY.relative_to(ROOT))
FILES_ROOT = str(FIXTURES)

SERVER = r'''
import json, os, signal, sys

from loopspec.cli import main
import loopspec.replay.journaled  # everything a child needs, imported once, before the forks
from loopspec.replay.recorded_tools import RecordedTools

import contextlib, io, tempfile

with tempfile.TemporaryDirectory() as warm, contextlib.redirect_stdout(io.StringIO()):
    # one whole run first, so every child starts warm (lazy imports done, patterns compiled)
    main(json.loads(sys.argv[1]) + ["--journal", warm + "/warm.db"])
assert "litellm" not in sys.modules
_player = RecordedTools._player


def _append(path, line):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.write(fd, line.encode())  # one write, no buffer: a SIGKILL right after it keeps it
    os.close(fd)


def counted_player(self, name):
    """Each replayed call writes its effect outside the process before it answers."""
    play = _player(self, name)

    async def effect(**arguments):
        _append(os.environ["EFFECTS"], json.dumps([self.cassette.name, name, "litellm" in sys.modules]) + "\n")
        CALLS[0] += 1
        if CALLS[0] == int(os.environ.get("DIE_IN_TOOL", 0)):  # after the effect, before the answer
            os.kill(os.getpid(), signal.SIGKILL)
        return await play(**arguments)

    return effect


RecordedTools._player = counted_player
CALLS = [0]

for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.environ["EFFECTS"] = job["effects"]
        os.environ["DIE_IN_TOOL"] = str(job.get("die_in_tool", 0))
        real_exit = os._exit

        def exit_noting(code, _real=real_exit, _marker=job["marker"]):
            _append(_marker, json.dumps({"code": code, "litellm": "litellm" in sys.modules}) + "\n")
            _real(code)

        os._exit = exit_noting  # the crash hook's abrupt end goes through here
        if job.get("pace"):  # a slow disk: each journal entry takes a while, so a kill lands anywhere
            import time
            from loopspec.journal import SqliteJournal

            append = SqliteJournal.append

            def slow(self, *a, _append=append, _pace=job["pace"]):
                seq = _append(self, *a)
                time.sleep(_pace)
                return seq

            SqliteJournal.append = slow
        worst = 0
        for n, argv in enumerate(job["argvs"]):  # one after the other, each printing to its own file
            out = os.open(f"{job['out']}{n}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1)
            os.dup2(out, 2)
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
            sys.stdout.flush()
            sys.stderr.flush()
            worst = max(worst, code)
        os._exit(worst)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                      "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}), flush=True)
'''


class ForkServer:
    """Runs ``loopspec`` argv lists in forked children of one warm interpreter."""

    def __init__(self) -> None:
        warm_up = ["replay", *CORPUS, "--machine", POLICY, "--files-root", FILES_ROOT, "--json", "--trace", "--jobs", "1"]
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(warm_up)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True"))

    def start(self, argvs: list[list[str]], tmp: Path, name: str, pace: float = 0.0, die_in_tool: int = 0) -> int:
        """Fork a child running each of ``argvs`` in turn; its pid. The output of the N-th goes to
        ``tmp/nameN.out``; the child's exit status is the worst of theirs."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        job = {"argvs": argvs, "out": str(tmp / name), "effects": str(tmp / "effects.jsonl"),
               "marker": str(tmp / "exits.jsonl"), "pace": pace, "die_in_tool": die_in_tool}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return int(json.loads(self.proc.stdout.readline())["pid"])

    def wait(self) -> dict[str, Any]:
        """How the last child ended: ``{"signal": N or None, "code": N or None}``."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the fork server died"
        return dict(json.loads(line))

    def run(self, argvs: list[list[str]], tmp: Path, name: str) -> tuple[dict[str, Any], list[str]]:
        """:meth:`start`, then :meth:`wait`; what each command printed."""
        self.start(argvs, tmp, name)
        status = self.wait()
        return status, [(tmp / f"{name}{n}.out").read_text() for n in range(len(argvs))]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


SHM = Path("/dev/shm")


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    """Where a test's journals and counts go: tmpfs where there is one. What is tested is a process
    dying, which the page cache survives; on a disk, the fsyncs of opening and closing a journal
    would be most of this test's time."""
    if not (SHM.is_dir() and os.access(SHM, os.W_OK)):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="loopspec-crash-", dir=SHM))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server() -> Iterator[ForkServer]:
    s = ForkServer()
    yield s
    s.close()


def replay_argv(journal: Path, files: list[str], *extra: str) -> list[str]:
    return ["replay", *files, "--machine", POLICY, "--files-root", FILES_ROOT, "--journal", str(journal), "--json",
            "--trace", *extra]


def effects(tmp: Path) -> Counter[tuple[str, str]]:
    path = tmp / "effects.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    ran = [json.loads(x) for x in lines]
    assert not any(litellm for _c, _t, litellm in ran), "a replayed tool ran in a process that imported litellm"
    return Counter((c, t) for c, t, _litellm in ran)


@pytest.fixture(scope="module")
def whole(server: ForkServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted run: each turn's record (with its trace) and messages, and the effects."""
    tmp = tmp_path_factory.mktemp("whole")
    status, (out,) = server.run([replay_argv(tmp / "j.db", CORPUS)], tmp, "whole")
    assert status == {"signal": None, "code": 0}, out
    records = {r["turn_id"]: r for r in json.loads(out)["cassettes"]}
    policy = load_policy(str(DEFAULT_POLICY))
    messages = {}
    for f in CORPUS:
        c, _ = read_cassette(str(ROOT / f), files_root=FILES_ROOT)
        assert c is not None
        messages[turn_id_of(f)] = replay_sync(c, policy).result.messages
    return {"records": records, "messages": messages, "effects": effects(tmp),
            "steps": sum(len(r["trace"]) for r in records.values()), "entries": _entries(tmp / "j.db")}


def interrupted_calls(journal: Path) -> Counter[tuple[str, str]]:
    """(cassette name, tool) of each call that started and never answered in the killed process."""
    out: Counter[tuple[str, str]] = Counter()
    with SqliteJournal(journal) as j:
        for t in j.turn_ids():
            entries = j.entries(t)
            cut = next((i for i, e in enumerate(entries) if e.kind == "resume"), len(entries))
            started = {e.body["id"]: e.body["name"] for e in entries[:cut] if e.kind == "tool_start"}
            for e in entries[:cut]:
                if e.kind == "tool_finish":
                    started.pop(e.body["id"], None)
            for name in started.values():
                out[(t.rsplit("/", 1)[-1], name)] += 1
    return out


def finish(server: ForkServer, tmp: Path, journal: Path) -> dict[str, dict[str, Any]]:
    """Resume every turn the crash cut and replay the cassettes it never reached, into the same
    journal; every turn's final record (with trace and messages where resumed)."""
    with SqliteJournal(journal) as j:
        ended = {t: any(e.kind == "halt" for e in j.entries(t)) for t in j.turn_ids()}
    with SqliteJournal(journal) as j:  # a turn killed before its replay entry is replayed again
        cut = sorted(t for t, done in ended.items() if not done and replay_entry(j.entries(t)) is not None)
    rest = [f for f in CORPUS if turn_id_of(f) not in cut and not ended.get(turn_id_of(f))]
    argvs = [["resume", t, "--journal", str(journal), "--machine", POLICY, "--json"] for t in cut]
    argvs += [replay_argv(journal, rest)] if rest else []
    status, outs = server.run(argvs, tmp, "finish")
    assert status["signal"] is None, outs
    records = {t: json.loads(out) for t, out in zip(cut, outs)}
    if rest:
        records.update({r["turn_id"]: r for r in json.loads(outs[-1])["cassettes"]})
    with SqliteJournal(journal) as j:
        for t in j.turn_ids():
            if not ended.get(t, False) and t not in records:
                pytest.fail(f"turn {t} neither resumed nor replayed")
            assert j.entries(t)[-1].kind == "halt", f"turn {t} did not end in the journal"
    return records


SAME = ("verdict", "outcome", "halt_state", "model_calls", "tool_batches", "final_response", "failures", "unconsumed",
        "diverged_at", "elapsed")


def assert_same_end(tmp: Path, journal: Path, whole: dict[str, Any], finished: dict[str, dict[str, Any]]) -> None:
    for t, record in finished.items():
        want = whole["records"][t]
        assert {k: record[k] for k in SAME} == {k: want[k] for k in SAME}, t
        # the same decisions with the same counters after each: caps and counters go on across the crash
        assert record["trace"] == want["trace"], t
        if "messages" in record:  # a resumed turn: its whole history
            assert history_problems(record["messages"]) == [], t
            assert [(m["role"], m.get("content")) for m in record["messages"]] == \
                   [(m["role"], m.get("content")) for m in whole["messages"][t]], t
    ran, base, cut = effects(tmp), whole["effects"], interrupted_calls(journal)
    for key in base.keys() | ran.keys():
        # at most once: a call runs again only when the crash interrupted it (replayed tools are idempotent)
        assert base[key] <= ran[key] <= base[key] + cut[key], (key, ran[key], base[key], cut[key])
    exits = [json.loads(x) for x in (tmp / "exits.jsonl").read_text().splitlines()]
    assert exits and not any(e["litellm"] for e in exits), "a replay or resume imported litellm"


def test_the_corpus_has_tool_batches_and_every_cassette_passes(whole: dict[str, Any]) -> None:
    records = whole["records"]
    assert set(records) == {turn_id_of(f) for f in CORPUS}
    assert all(r["verdict"] == "pass" for r in records.values())
    assert sum(r["tool_batches"] for r in records.values()) >= 5 and sum(whole["effects"].values()) >= 3
    assert 20 <= whole["steps"] <= 40, "the matrix below forks twice per step: keep the corpus small"


def test_a_replay_killed_after_every_step_resumes_to_the_same_verdicts(server: ForkServer, whole: dict[str, Any],
                                                                        work: Path) -> None:
    for k in range(1, whole["steps"] + 1):
        tmp = work / f"k{k}"
        tmp.mkdir()
        journal = tmp / "j.db"
        status, (out,) = server.run([replay_argv(journal, CORPUS, "--crash-after-step", str(k))], tmp, "killed")
        assert status == {"signal": None, "code": 137}, f"K={k}: {status} {out}"
        assert out == "", "the abrupt end prints nothing, like SIGKILL"
        with SqliteJournal(journal) as j:
            steps = sum(1 for t in j.turn_ids() for e in j.entries(t) if e.kind == "step")
        assert steps == k, f"K={k}: the process died right after decision {k} was journaled"
        assert_same_end(tmp, journal, whole, finish(server, tmp, journal))


def _entries(journal: Path) -> int:
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM entries").fetchone()[0])
    except sqlite3.Error:  # not created yet
        return 0


@pytest.mark.parametrize("seed", range(4))
def test_a_replay_killed_at_a_random_point_resumes_to_the_same_verdicts(server: ForkServer, whole: dict[str, Any],
                                                                        work: Path, seed: int) -> None:
    tmp_path = work
    rng = random.Random(seed)
    journal = tmp_path / "j.db"
    target = rng.randrange(2, whole["entries"])  # kill once the journal holds this many entries, give or take
    # one process (no worker pool, whose workers would outlive the kill and finish the turns)
    pid = server.start([replay_argv(journal, CORPUS, "--jobs", "1")], tmp_path, "killed", pace=0.002)
    deadline = time.monotonic() + 30
    while _entries(journal) < target and time.monotonic() < deadline:
        time.sleep(0.0005)
    time.sleep(rng.uniform(0, 0.002))
    os.kill(pid, signal.SIGKILL)
    status = server.wait()
    assert status == {"signal": signal.SIGKILL, "code": None}, "the kill landed before the run ended"
    assert_same_end(tmp_path, journal, whole, finish(server, tmp_path, journal))


def test_a_replay_killed_inside_a_tool_plays_that_call_again_on_resume(server: ForkServer, whole: dict[str, Any],
                                                                       work: Path) -> None:
    """The kill lands after the call's effect and before its answer: a recorded tool is idempotent
    (it only takes its recorded result), so resume plays the call again, from the same result."""
    calls = sum(whole["effects"].values())
    for n in range(1, calls + 1):
        tmp = work / f"tool{n}"
        tmp.mkdir()
        journal = tmp / "j.db"
        server.start([replay_argv(journal, CORPUS, "--jobs", "1")], tmp, "killed", die_in_tool=n)
        assert server.wait() == {"signal": signal.SIGKILL, "code": None}
        assert sum(interrupted_calls(journal).values()) == 1, "one call started and never answered"
        assert_same_end(tmp, journal, whole, finish(server, tmp, journal))
        assert sum(effects(tmp).values()) == calls + 1, "the interrupted call ran again, and only it"


def test_a_replay_killed_after_its_approval_pause_resumes_to_the_same_pause(server: ForkServer, tmp_path: Path) -> None:
    f = "fixtures/incidents/goose-7915-approval-headless.cassette.yaml"
    status, (out,) = server.run([replay_argv(tmp_path / "whole.db", [f])], tmp_path, "whole")
    want = json.loads(out)["cassettes"][0]
    assert want["outcome"] == "approval_required" and len(want["trace"]) == 3
    journal = tmp_path / "j.db"
    status, _ = server.run([replay_argv(journal, [f], "--crash-after-step", "3")], tmp_path, "killed")
    assert status["code"] == 137
    status, (out,) = server.run([["resume", "--journal", str(journal), "--machine", POLICY, "--json"]], tmp_path, "resumed")
    got = json.loads(out)
    assert (got["verdict"], got["outcome"], got["model_calls"]) == ("pass", "approval_required", 1)
