"""Time ``loopspec check --strict machines/default.yaml`` in-process; print the median and the
ratio to the 2 s target.

    python bench/check_speed.py [-n RUNS] [FILE]

Each run loads and compiles the policy and checks it (what the command does after start-up), through
the same entry point as the CLI. A ratio below 1.0 meets the target.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_S = 2.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", default=str(ROOT / "machines" / "default.yaml"))
    ap.add_argument("-n", "--runs", type=int, default=7)
    args = ap.parse_args()

    from loopspec.cli import main as cli_main

    times = []
    code = None
    for _ in range(args.runs):
        sink = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sink):
            code = cli_main(["check", "--strict", "--json", args.file])
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"check --strict {Path(args.file).name}: exit {code}, median {med:.3f} s over {args.runs} runs "
          f"(min {min(times):.3f}, max {max(times):.3f}); ratio to the {TARGET_S:.0f} s target: {med / TARGET_S:.2f}")
    return 0 if med <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
