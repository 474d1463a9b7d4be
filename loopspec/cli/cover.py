"""``loopspec cover POLICY OUT`` and ``loopspec cover POLICY --corpus DIR``.

The first generates a small set of cassettes that together fire every reachable transition of the
policy, take both outcomes of every guard and reach every reachable halt
(:mod:`loopspec.verify.cover`), checks that each replays along its intended path on both
transports, and writes them into OUT. A cassette whose transports disagree is a disagreement
between the checker's model and the interpreter: it is kept in ``OUT/failures/`` and replayed
first on the next run (and deleted from there once the transports agree). The second reports which
items a folder of cassettes fires (text, ``--json``, ``--junit FILE``), and fails below
``--min-coverage``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from typing import Any

from .replay import add_corpus_arguments
from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_files_root_argument, exit_epilog, fail, load_or_report, print_diagnostics, print_json

FAILURES = "failures"


def cmd_cover(args: argparse.Namespace) -> int:
    if (args.out is None) == (args.corpus is None):
        return fail("cover", "give either OUT (a folder to write the covering cassettes into) or --corpus DIR (a corpus to measure)")
    if args.min_coverage is not None and not 0 <= args.min_coverage <= 100:
        return fail("cover", f"--min-coverage {args.min_coverage:g} must be a percentage between 0 and 100")
    policy = load_or_report(args.policy, args.json)
    if policy is None:
        return EXIT_USAGE
    if args.corpus is not None:
        return _measure(args, policy)
    return _generate(args, policy)


# ------------------------------------------------------------------------------ measuring a corpus


def _measure(args: argparse.Namespace, policy: Any) -> int:
    from loopspec.replay.corpus import Job
    from loopspec.verify.corpus_coverage import corpus_coverage

    from .replay import print_invalid, run_cassettes

    if not os.path.isdir(args.corpus):
        return fail("cover", f"--corpus {args.corpus} is not a folder")
    job = Job("replay", (args.policy,), with_trace=True, files_root=args.files_root)
    outcomes, code = run_cassettes("cover", args, job, [args.corpus], args.json, verb="measured", show_failed=False)
    if outcomes is None:
        return int(code)
    bad = [o for o in outcomes if o.invalid]
    if bad:
        if not args.json:
            print_invalid(bad)
        return fail("cover", f"{len(bad)} invalid cassette{'s' if len(bad) > 1 else ''} under {args.corpus}; coverage of part of a corpus would mislead")
    traces = [(str(o.record["name"]), o.record.get("trace") or []) for o in outcomes]
    coverage = corpus_coverage(policy, traces=traces)
    if args.junit:
        try:
            write_junit(args.junit, coverage)
        except OSError as exc:
            return fail("cover", f"cannot write {args.junit}: {exc.strerror or exc}")
    below = args.min_coverage is not None and coverage.ratio * 100 < args.min_coverage
    if args.json:
        print_json({**coverage.to_json(), "min_coverage": args.min_coverage, "ok": not below})
    else:
        print(f"{args.corpus}: {len(coverage.covered)}/{len(coverage.reachable)} reachable items covered "
              f"({coverage.ratio:.1%}) by {coverage.cassettes} cassettes under {policy.name}")
        for kind, (r, n) in coverage.by_kind().items():
            print(f"  {kind:<12} {n}/{r}")
        if coverage.missing:
            print("not covered:")
            for item in coverage.missing:
                print(f"  - {item.describe()}")
        if coverage.unreachable:
            print("unreachable (no run reaches them on the checker's graph, or their event is one this configuration never emits; not counted):")
            for item in coverage.unreachable:
                print(f"  - {item.describe()}")
        if below:
            print(f"coverage {coverage.ratio:.1%} is below --min-coverage {args.min_coverage:g} %", file=sys.stderr)
    return EXIT_FAILED if below else EXIT_OK


def write_junit(path: str, coverage: Any) -> None:
    """One testcase per reachable item: a failure when no cassette covers it; unreachable items are
    skipped testcases, so a CI dashboard shows them without counting them."""
    from xml.sax.saxutils import quoteattr

    lines = ['<?xml version="1.0" encoding="utf-8"?>']
    n = len(coverage.reachable) + len(coverage.unreachable)
    lines.append(f'<testsuite name={quoteattr("loopspec cover " + coverage.policy)} tests="{n}" '
                 f'failures="{len(coverage.missing)}" skipped="{len(coverage.unreachable)}">')
    for item in coverage.reachable:
        who = coverage.fired.get(item)
        lines.append(f'  <testcase classname={quoteattr(item.kind)} name={quoteattr(item.name)}>')
        if who:
            lines.append(f"    <system-out>{_escape('covered by ' + ', '.join(who))}</system-out>")
        else:
            lines.append(f'    <failure message={quoteattr("no cassette covers it: " + item.describe())}/>')
        lines.append("  </testcase>")
    for item in coverage.unreachable:
        lines.append(f'  <testcase classname={quoteattr(item.kind)} name={quoteattr(item.name)}>')
        lines.append('    <skipped message="unreachable: the checker proves no run reaches it"/>')
        lines.append("  </testcase>")
    lines.append("</testsuite>")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def _escape(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(text)


# ------------------------------------------------------------------------------ generating


def _generate(args: argparse.Namespace, policy: Any) -> int:
    from loopspec.replay.cassette import find_cassettes, read_cassette, write_cassette
    from loopspec.verify.cover import cover

    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        return fail("cover", f"{out} exists and is not a folder; give a folder for the cassettes")
    failures_dir = os.path.join(out, FAILURES)
    # the failures of the last run first: each is a disagreement someone has to fix. They are
    # checked as the new cassettes are, against the decisions each one stores
    still_failing: list[str] = []
    earlier: dict[str, list[tuple[str, str, str]]] = {}
    for path in find_cassettes([failures_dir]) if os.path.isdir(failures_dir) else []:
        c, _diags = read_cassette(path, files_root=args.files_root)
        if c is None:
            still_failing.append(path)
        else:
            earlier[os.path.basename(path)] = [(s.state, s.event, s.target) for s in c.trace]
    if earlier:
        rechecked = _check_staged(args, failures_dir, earlier)
        if isinstance(rechecked, int):
            return rechecked
        for path, problem in rechecked.items():
            if problem is None:
                os.remove(path)
                if not args.json:
                    print(f"fixed since the last run (removed): {path}", file=sys.stderr)
            else:
                still_failing.append(path)
        still_failing.sort()
    from .progress import is_terminal

    drawing = not args.json and is_terminal(sys.stderr)
    result = cover(policy, progress=_progress_line if drawing else None)
    if drawing:
        print("\r\033[K", end="", file=sys.stderr, flush=True)  # wipe the progress line
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        return fail("cover", f"cannot create {out}: {exc.strerror or exc}")
    disagreements: list[tuple[Any, str]] = []
    written: list[str] = []
    staging = tempfile.mkdtemp(prefix=".cover-staging-", dir=out)
    try:
        for cc in result.cassettes:
            write_cassette(cc.cassette, os.path.join(staging, cc.cassette.file))
        planned = {cc.cassette.file: [(s.state, s.event, s.target) for s in cc.cassette.trace] for cc in result.cassettes}
        checked = _check_staged(args, staging, planned)
        if isinstance(checked, int):
            return checked
        for staged, problem in checked.items():
            target = out if problem is None else failures_dir
            os.makedirs(target, exist_ok=True)
            path = os.path.join(target, os.path.basename(staged))
            os.replace(staged, path)
            if problem is None:
                written.append(path)
            else:
                disagreements.append((path, problem))
    except OSError as exc:
        return fail("cover", f"cannot write the cassettes into {out}: {exc.strerror or exc}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    covered = result.covered & set(result.reachable)
    ok = not disagreements and not still_failing
    if args.json:
        data = result.to_json()
        data.update(written=written, disagreements=[{"cassette": p, "reason": r} for p, r in disagreements],
                    earlier_failures=still_failing, ok=ok, shard=str(args.shard) if args.shard else None)
        print_json(data)
    else:
        part = f" (shard {args.shard}: its part of the {len(result.cassettes)} generated)" if args.shard else ""
        print(f"{policy.name}: {len(written)} cassettes in {out}{part} cover {len(covered)}/{len(result.reachable)} reachable items")
        if result.missing:
            print("not covered (no recordable run found):")
            for item, why in sorted(result.missing.items()):
                print(f"  - {item.describe()}: {why}")
        if result.unreachable:
            print("unreachable (no run reaches them on the checker's graph, or their event is one this configuration never emits; not counted):")
            for item in result.unreachable:
                print(f"  - {item.describe()}")
        for path, why in disagreements:
            print(f"DISAGREE {path}: {why}")
        for path in still_failing:
            print(f"STILL FAILING {path}")
    return EXIT_OK if ok else EXIT_FAILED


def _progress_line(done: int, total: int) -> None:
    print(f"\rcover: recording witness runs {done}/{total}", end="", file=sys.stderr, flush=True)


def _check_staged(args: argparse.Namespace, staging: str, planned: dict[str, list[tuple[str, str, str]]]) -> dict[str, str | None] | int:
    """Replay the cassettes of this shard in ``staging`` named in ``planned``, as written, on each
    transport (``--jobs`` processes, or Ray): each file with what parted from its planned decisions
    (by file name in ``planned``), None when both transports follow them; or the exit code after a
    usage error. Files outside the shard, or not named, are not checked."""
    from loopspec.replay.corpus import Job, discover, select

    from .replay import run_cassettes

    problems: dict[str, str | None] = {}
    if not select(discover([staging]), args.shard):
        return problems  # a shard the (few) generated cassettes all hashed past
    for transport in ("inproc", "http") if args.http else ("inproc",):
        job = Job("replay", (args.policy,), transport, with_trace=True, files_root=args.files_root)
        outcomes, code = run_cassettes("cover", args, job, [staging], args.json, verb=f"checked ({transport})", show_failed=True,
                                       cache=False)
        if outcomes is None:
            return int(code)
        for o in outcomes:
            if os.path.basename(o.file) in planned and problems.get(o.file) is None:
                problems[o.file] = _disagreement(transport, o.record, planned[os.path.basename(o.file)])
    return problems


def _disagreement(transport: str, record: dict[str, Any], want: list[tuple[str, str, str]]) -> str | None:
    """What a replay record says went differently from the planned decisions ``want``, or from
    the cassette's expectations (None: nothing)."""
    got = [(s["state"], s["event"], s["target"]) for s in record.get("trace") or []]
    if got != want:
        return _parted(transport, got, want)
    if record.get("verdict") != "pass" or record.get("trace_divergence"):
        failures = record.get("failures") or [d.get("message", "") for d in record.get("diagnostics") or []]
        if record.get("trace_divergence"):
            failures = [f"its stored trace parts from the replay: {record['trace_divergence']['reason']}", *failures]
        return f"{transport}: {record.get('verdict')}: {'; '.join(failures)[:300]}"
    return None


def _parted(transport: str, got: list[tuple[str, str, str]], want: list[tuple[str, str, str]]) -> str:
    i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    seen = got[i] if i < len(got) else "(ended)"
    planned = want[i] if i < len(want) else "(ended)"
    return f"{transport}: the path parts from the planned one at step {i + 1}: {seen} instead of {planned}"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "cover",
        help="generate cassettes that cover every reachable transition, guard outcome and halt; or measure a corpus",
        epilog=exit_epilog("cover"),
    )
    p.add_argument("policy", metavar="FILE", help="policy YAML")
    p.add_argument("out", metavar="OUT", nargs="?", help="folder to write the covering cassettes into")
    p.add_argument("--corpus", metavar="DIR", help="measure which items the cassettes under DIR fire, instead of generating")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--junit", metavar="OUT", help="with --corpus: write a JUnit XML report, one testcase per item")
    p.add_argument("--min-coverage", type=float, metavar="PCT", help="with --corpus: exit 1 when less than PCT %% of the reachable items are covered")
    p.add_argument("--no-http", dest="http", action="store_false",
                   help="check the generated cassettes in-process only (default: on both transports)")
    add_files_root_argument(p)
    add_corpus_arguments(p)
    p.set_defaults(handler=cmd_cover)


__all__ = ["register", "write_junit"]
