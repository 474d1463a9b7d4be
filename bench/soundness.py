"""Hold ``loopspec check`` against an exhaustive concrete reference on N generated policies.

    python bench/soundness.py --policies 500 [--seed 0] [--modes default,elim] [--json]
    python bench/soundness.py --show 0:17            # one policy: YAML, reference, findings
    python bench/soundness.py --policies 2000 --save /tmp/sound   # write every failing policy
    python bench/soundness.py --minimize false_proven_halts --modes elim   # Hypothesis-shrunk example

Each policy is generated from its own seed (``SEED:INDEX``) by the generator of
tests/_soundness.py (the one the Hypothesis strategy uses), explored through ``Policy.step`` alone
under a concrete event domain richer than its guard constants, and checked by ``check_policy`` in
each mode: ``default`` (as the CLI runs it) and ``elim`` (counter elimination alone, as on a policy
too large to enumerate). Reported per mode:

- FALSE PROVEN (must be 0): check passes ``halts`` and a run loops; passes ``events_handled`` and a
  run ends in policy_error; or reports a worst-case model-call / tool-batch bound below the exact
  worst case. Findings that only events lacking an attribute show are counted apart.
- false alarms: check fails ``halts``, the reference finds no loop and check's own counterexample
  does not replay as one.
- false claims: the structure report calls a transition dead or a state unreachable and a run
  shows otherwise; outcome bounds: a per-outcome bound too low or a reachable outcome missing.
- bound slack: check's upper bound minus the exact worst case, over policies both call halting.

Each policy with a false PROVEN gets a likely cause (tests/_soundness.py: triage): ``event-cases``
(the checker's own event cases miss it), ``backstop-escape``, ``absent-attribute`` or ``other`` -
a new defect class; the examples list every ``other``.

Exit status 1 when any FALSE PROVEN was found (typed events), else 0.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import _soundness as S  # noqa: E402

FALSE_PROVEN = ("false_proven_halts", "false_proven_bound", "false_proven_events", "checker_crash")


ESCAPE = True


def policy_text(pid: str) -> str:
    return S.generate_policy(S.RandomChooser(random.Random(pid)), ESCAPE)


def run(args: argparse.Namespace) -> dict[str, Any]:
    modes = args.modes.split(",")
    t0 = time.perf_counter()
    ref_s = 0.0
    stats: dict[str, Any] = {
        "policies": 0,
        "skipped": 0,
        "reference_loops": 0,
        "reference_halts": 0,
        "reference_policy_error": 0,
        "modes": {},
    }
    per: dict[str, dict[str, Any]] = {
        m: {"false_proven": Counter(), "false_proven_absent_only": Counter(), "causes": Counter(), "other": Counter(),
            "slack": {}, "check_seconds": 0.0, "examples": [], "policies": 0}
        for m in modes
    }
    for m in modes:
        for b in ("model_calls", "tool_batches"):
            per[m]["slack"][b] = []
    save = Path(args.save) if args.save else None
    if save:
        save.mkdir(parents=True, exist_ok=True)
    for i in range(args.policies):
        pid = f"{args.seed}:{i}"
        text = policy_text(pid)
        policy = S.load(text, f"{pid}.yaml")
        t1 = time.perf_counter()
        ref = S.explore(policy, absent=args.absent, limit=args.limit)
        ref_s += time.perf_counter() - t1
        stats["policies"] += 1
        if ref.skipped is not None:
            stats["skipped"] += 1
            continue
        stats["reference_loops" if ref.loops else "reference_halts"] += 1
        stats["reference_policy_error"] += bool(ref.policy_errors)
        for m in modes:
            c = S.compare(policy, mode=m, absent=args.absent, limit=args.limit, ref=ref)
            p = per[m]
            p["check_seconds"] += c.seconds
            for b, v in c.slack.items():
                p["slack"][b].append(v)
            bad = []
            for f in c.findings:
                if f.kind in FALSE_PROVEN:
                    (p["false_proven_absent_only"] if f.absent_only else p["false_proven"])[f.kind] += 1
                    if not f.absent_only:
                        bad.append(f)
                else:
                    p["other"][f.kind + (" (absent only)" if f.absent_only else "")] += 1
            p["policies"] += bool(bad)
            causes = sorted({S.triage(policy, f, ref, args.limit) for f in bad})
            for cause in causes:
                p["causes"][cause] += 1
            if bad and (len(p["examples"]) < args.examples or ("other" in causes and args.examples)):
                p["examples"].append(
                    {"policy": pid, "finding": bad[0].kind, "cause": "/".join(causes), "detail": bad[0].detail.splitlines()[0]}
                )
            if save and c.findings:
                kinds = sorted({f.kind for f in c.findings})
                header = "".join(f"# [{m}] {f.kind}{' (absent only)' if f.absent_only else ''}: {line}\n"
                                 for f in c.findings for line in f.detail.splitlines()[:1])
                (save / f"{pid.replace(':', '_')}-{m}-{'+'.join(kinds)}.yaml").write_text(header + text)
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    stats["reference_seconds"] = round(ref_s, 2)
    for m in modes:
        p = per[m]
        slack = {}
        for b, vals in p["slack"].items():
            ok = [v for v in vals if v >= 0]
            slack[b] = {
                "policies": len(vals),
                "mean": round(statistics.fmean(ok), 3) if ok else None,
                "max": max(ok) if ok else None,
                "exact": sum(1 for v in ok if v == 0),
                "too_low": sum(1 for v in vals if v < 0),
            }
        stats["modes"][m] = {
            "false_proven": sum(p["false_proven"].values()),
            "false_proven_policies": p["policies"],
            "false_proven_by_kind": dict(sorted(p["false_proven"].items())),
            "false_proven_absent_only": dict(sorted(p["false_proven_absent_only"].items())),
            "false_proven_policies_by_cause": dict(sorted(p["causes"].items())),
            "false_alarms": p["other"].get("false_alarm_halts", 0),
            "other_findings": dict(sorted(p["other"].items())),
            "slack": slack,
            "check_seconds": round(p["check_seconds"], 2),
            "examples": p["examples"],
        }
    return stats


def print_text(stats: dict[str, Any]) -> None:
    print(
        f"policies run: {stats['policies']} ({stats['skipped']} skipped: exploration limit); reference: "
        f"{stats['reference_halts']} halt, {stats['reference_loops']} loop, {stats['reference_policy_error']} reach policy_error"
    )
    for m, r in stats["modes"].items():
        print(f"\n[{m}]")
        kinds = ", ".join(f"{k} {v}" for k, v in r["false_proven_by_kind"].items()) or "none"
        print(f"  FALSE PROVEN: {r['false_proven']} findings in {r['false_proven_policies']} policies  ({kinds})")
        if r["false_proven_policies_by_cause"]:
            print("  policies with a false PROVEN, by likely cause: "
                  + ", ".join(f"{k} {v}" for k, v in r["false_proven_policies_by_cause"].items()))
        if r["false_proven_absent_only"]:
            print("  false proven with absent attributes only: " + ", ".join(f"{k} {v}" for k, v in r["false_proven_absent_only"].items()))
        print(f"  false alarms (halts): {r['false_alarms']}")
        others = {k: v for k, v in r["other_findings"].items() if k != "false_alarm_halts"}
        if others:
            print("  other findings: " + ", ".join(f"{k} {v}" for k, v in others.items()))
        for b, s in r["slack"].items():
            if s["policies"]:
                print(
                    f"  bound slack {b}: mean {s['mean']}, max {s['max']}, exact in {s['exact']}/{s['policies']}"
                    + (f", TOO LOW in {s['too_low']}" if s["too_low"] else "")
                )
        print(f"  check time: {r['check_seconds']} s")
        for ex in r["examples"]:
            print(f"    e.g. --show {ex['policy']}: {ex['finding']} [{ex['cause']}]: {ex['detail']}")
    print(f"\ntime: {stats['seconds']} s (reference {stats['reference_seconds']} s)")


def show(pid: str, args: argparse.Namespace) -> int:
    text = policy_text(pid)
    print(text)
    policy = S.load(text, f"{pid}.yaml")
    ref = S.explore(policy, absent=args.absent, limit=args.limit)
    if ref.skipped:
        print(f"# reference skipped: {ref.skipped}")
        return 0
    verdict = "LOOPS" if ref.loops else f"halts; worst case {ref.worst} (by outcome {ref.by_outcome})"
    print(f"# reference: {ref.configs} configurations, {verdict}")
    if ref.loops:
        print(S.format_lasso(ref))
    for st, ev, attrs in ref.policy_errors:
        print(f"# policy_error: '{ev}' {attrs} in '{st}'")
    for m in args.modes.split(","):
        c = S.compare(policy, mode=m, absent=args.absent, limit=args.limit, ref=ref)
        print(f"# [{m}] check: halts {'pass' if c.check_halts else 'FAIL'}, events_handled "
              f"{'pass' if c.check_events else 'FAIL'}, worst case {c.check_worst}")
        for f in c.findings:
            cause = f" [likely cause: {S.triage(policy, f, ref, args.limit)}]" if f.kind.startswith("false_proven") else ""
            print(f"#   {f.kind}{' (absent only)' if f.absent_only else ''}{cause}: {f.detail}")
    return 0


def minimize(kind: str, args: argparse.Namespace) -> int:
    """Let Hypothesis find and shrink a policy that shows ``kind`` in the first mode."""
    from hypothesis import HealthCheck, find, settings

    mode = args.modes.split(",")[0]

    def shows(text: str) -> bool:
        c = S.compare(S.load(text), mode=mode, absent=args.absent, limit=args.limit)
        return any(f.kind == kind and not f.absent_only for f in c.findings)

    text = find(
        S.policies(args.escape),
        shows,
        settings=settings(max_examples=args.policies, deadline=None, database=None, suppress_health_check=list(HealthCheck)),
    )
    print(text)
    c = S.compare(S.load(text), mode=mode, absent=args.absent, limit=args.limit)
    for f in c.findings:
        print(f"# [{mode}] {f.kind}: {f.detail}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--policies", type=int, default=200, help="how many policies to generate (default 200)")
    ap.add_argument("--seed", type=int, default=0, help="base seed; policy i is generated from 'SEED:i' (default 0)")
    ap.add_argument("--modes", default="default,elim", help="check modes, comma-separated: default, elim")
    ap.add_argument("--no-absent", dest="absent", action="store_false", help="never send events that lack an attribute")
    ap.add_argument("--no-escape", dest="escape", action="store_false",
                    help="never point tool_batches.exhausted at a call state (hide the known backstop escape)")
    ap.add_argument("--limit", type=int, default=20_000, help="reference exploration limit (configurations)")
    ap.add_argument("--examples", type=int, default=5, help="failing policies to list per mode")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--save", metavar="DIR", help="write every policy with a finding to DIR (findings as comments)")
    ap.add_argument("--show", metavar="SEED:I", help="print one policy, its reference run and findings")
    ap.add_argument("--minimize", metavar="KIND", help="Hypothesis-find a minimal policy showing KIND (e.g. false_proven_halts)")
    args = ap.parse_args()
    global ESCAPE
    ESCAPE = args.escape
    for m in args.modes.split(","):
        if m not in S.MODES:
            ap.error(f"unknown mode {m!r}; expected one of {', '.join(S.MODES)}")
    if args.show:
        return show(args.show, args)
    if args.minimize:
        return minimize(args.minimize, args)
    stats = run(args)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print_text(stats)
    return 1 if any(r["false_proven"] for r in stats["modes"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
