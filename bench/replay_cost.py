"""Replay costs, measured side by side in one run.

1. In-process replay cost per streamed chunk against a bare ``json.loads`` of the same chunks
   (target, issue #4: <= 3x), for the delta layer alone and for a whole interpreter turn over a
   long stream; and, for scale, litellm's own stream wrapper (``CustomStreamWrapper`` fed by
   ``mock_response``, no network) per chunk.
2. A 1,000-cassette corpus replayed through the pytest plugin, serially and with pytest-xdist.

    python bench/replay_cost.py [--corpus 1000] [--skip-corpus]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loopspec import InProcessProvider, Turn, VirtualClock, load_policy  # noqa: E402
from loopspec.wire.assemble import ReplyAssembler  # noqa: E402
from loopspec.providers.chunks import delta_from_chunk_dict, iter_sse_data  # noqa: E402
from loopspec.replay.interactions import StreamResponse, sse_events  # noqa: E402
from loopspec.replay.synth import reply_chunks  # noqa: E402

POLICY = load_policy(str(ROOT / "machines" / "default.yaml"))


def best_of(fn, repeats: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def per_chunk_costs(n_chunks: int = 4000) -> dict[str, float]:
    chunks = reply_chunks("word " * n_chunks, piece=5)
    resp = StreamResponse(chunks=tuple(chunks))
    events = sse_events(resp)
    payloads = [e[6:-2] for e in events if e != b"data: [DONE]\n\n"]
    n = len(payloads)

    def bare() -> None:
        for p in payloads:
            json.loads(p)

    def delta_layer() -> None:
        asm = ReplyAssembler()
        for e in events:
            for obj in iter_sse_data(e):
                asm.feed(delta_from_chunk_dict(obj))
        asm.result()

    raw = StreamResponse(sse=b"".join(events).decode())

    def whole_turn(recorded: StreamResponse):  # type: ignore[no-untyped-def]
        def go() -> None:
            turn = Turn(POLICY, InProcessProvider([recorded]), model="replay", clock=VirtualClock())
            result = asyncio.run(turn.run([{"role": "user", "content": "hi"}]))
            assert result.outcome == "completed"

        return go

    return {
        "json.loads": best_of(bare) / n * 1e6,
        "delta layer (SSE)": best_of(delta_layer) / n * 1e6,
        "turn, raw SSE": best_of(whole_turn(raw)) / n * 1e6,
        "turn, chunk JSON": best_of(whole_turn(resp)) / n * 1e6,
    }


def litellm_wrapper_cost(n_chars: int = 6000) -> float:
    import litellm

    litellm.suppress_debug_info = True
    text = " ".join(f"w{i}" for i in range(n_chars // 4))  # distinct chunks (litellm rejects repeats)

    def run() -> int:
        count = 0
        for _ in litellm.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], mock_response=text, stream=True):
            count += 1
        return count

    chunks = run()
    return best_of(run, 3) / chunks * 1e6


def corpus(n: int) -> None:
    src = sorted((ROOT / "fixtures" / "incidents").glob("*.cassette.yaml"))
    tmp = Path(tempfile.mkdtemp(prefix="loopspec-corpus-"))
    try:
        (tmp / "streams").mkdir()
        for f in (ROOT / "fixtures" / "streams").glob("*.sse"):
            shutil.copy(f, tmp / "streams" / f.name)
        cdir = tmp / "incidents"
        cdir.mkdir()
        for i in range(n):
            f = src[i % len(src)]
            shutil.copy(f, cdir / f"{i:04d}-{f.name}")
        (tmp / "test_corpus.py").write_text(
            "def test_cassette(loopspec_replay):\n    assert loopspec_replay.verdict == 'pass', loopspec_replay.explain()\n"
        )
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp),
                "--loopspec-cassettes", str(cdir), "--loopspec-machine", str(ROOT / "machines" / "default.yaml"),
                str(tmp / "test_corpus.py")]
        timings = {}
        for label, extra in (("serial", ["-p", "no:xdist"]), ("xdist -n 2", ["-n", "2"])):
            t = time.perf_counter()
            out = subprocess.run(base + extra, capture_output=True, text=True, cwd=tmp)
            timings[label] = time.perf_counter() - t
            tail = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-300:]
            print(f"  {label:12s} {timings[label]:7.1f} s  ({timings[label] / n * 1000:.1f} ms per cassette)  {tail}")
        print(f"  xdist speed-up: x{timings['serial'] / timings['xdist -n 2']:.2f} on {os.cpu_count()} cores")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=int, default=1000)
    parser.add_argument("--skip-corpus", action="store_true")
    args = parser.parse_args()
    costs = per_chunk_costs()
    base = costs["json.loads"]
    print("per streamed chunk (best of 5, 4000-chunk stream):")
    for name, us in costs.items():
        print(f"  {name:18s} {us:7.2f} us   x{us / base:5.2f} of json.loads")
    wrapper = litellm_wrapper_cost()
    print(f"  {'litellm wrapper':18s} {wrapper:7.2f} us   x{wrapper / base:5.2f} of json.loads (mock_response, for scale)")
    worst = costs["turn, raw SSE"] / base
    print(f"in-process replay of a whole turn from raw SSE: x{worst:.2f} of json.loads (target <= 3x): {'OK' if worst <= 3 else 'OVER'}")
    if not args.skip_corpus:
        print(f"{args.corpus}-cassette corpus through the pytest plugin:")
        corpus(args.corpus)


if __name__ == "__main__":
    main()
