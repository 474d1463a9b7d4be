"""Start-up cost of `loopspec validate` against a bare interpreter, measured side by side.

Target (issue #2): `loopspec validate` starts within 250 ms of `python -c pass` and never imports
litellm. Prints medians of interleaved runs and the difference, plus `import litellm` for scale.
`loopspec run` without credentials must fail (exit 2) within a second: it checks them before it
imports litellm. Also timed: one shell completion (what a TAB costs: the shell runs loopspec with
argcomplete's environment, the only time argcomplete is imported).

    python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICY = str(ROOT / "machines" / "default.yaml")

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "loopspec validate default.yaml": [sys.executable, "-m", "loopspec", "validate", POLICY],
    "loopspec run, no credentials": [sys.executable, "-m", "loopspec", "run", "hi", "--machine", POLICY,
                                     "--model", "openai/gpt-4o-mini"],
    "loopspec completion, TAB": [sys.executable, "-m", "loopspec"],
    "python -c 'import litellm'": [sys.executable, "-c", "import litellm"],
}
# What the bash hook sets when completing `loopspec ch<TAB>`; the candidates go to /dev/null.
_TAB = "loopspec ch"
EXTRA_ENV = {
    "loopspec completion, TAB": {"_ARGCOMPLETE": "1", "COMP_LINE": _TAB, "COMP_POINT": str(len(_TAB)),
                                 "_ARGCOMPLETE_STDOUT_FILENAME": "/dev/null"},
}


def time_once(cmd: list[str], extra_env: dict[str, str] | None = None) -> float:
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PATH": "/usr/bin:/bin", **(extra_env or {})}
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    elapsed = time.perf_counter() - start
    expected = 2 if "run" in cmd else 0  # no API key in this environment: a usage error
    if done.returncode != expected:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}, expected {expected}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--skip-litellm", action="store_true")
    args = parser.parse_args()
    names = [n for n in COMMANDS if not (args.skip_litellm and "litellm" in n)]
    samples: dict[str, list[float]] = {n: [] for n in names}
    for i in range(args.runs):  # interleaved, so drift affects every command alike
        for n in names:
            if "litellm" in n and i >= 3:
                continue
            samples[n].append(time_once(COMMANDS[n], EXTRA_ENV.get(n)))
        print(f"\rrun {i + 1}/{args.runs}", end="", file=sys.stderr)
    print(file=sys.stderr)
    med = {n: statistics.median(v) for n, v in samples.items()}
    base = med["python -c pass"]
    for n in names:
        print(f"{n:34s} median {med[n] * 1000:8.1f} ms   x{med[n] / base:5.2f} of bare python")
    added = (med["loopspec validate default.yaml"] - base) * 1000
    verdict = "OK" if added <= 250 else "OVER"
    print(f"validate adds {added:.1f} ms over bare python (target <= 250 ms): {verdict}")
    run_ms = med["loopspec run, no credentials"] * 1000
    print(f"run without credentials fails in {run_ms:.1f} ms (target <= 1000 ms): {'OK' if run_ms <= 1000 else 'OVER'}")
    tab = (med["loopspec completion, TAB"] - base) * 1000
    print(f"a TAB completion adds {tab:.1f} ms over bare python, {tab - added:+.1f} ms against validate")


if __name__ == "__main__":
    main()
