"""``loopspec replay``, ``diff``, ``fork``, ``rerun``, ``import`` and ``record`` subcommands.

Importing this module is cheap; replay machinery (and litellm, for the HTTP transport and the
live commands) is imported inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from loopspec.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _load_or_report, _print_json, run_async


def _progress(i: int, n: int, name: str, quiet: bool) -> None:
    if not quiet and n > 1 and sys.stderr.isatty():
        print(f"\r[{i}/{n}] {name[:60]:60s}", end="", file=sys.stderr, flush=True)


def _read_all(paths: list[str], as_json: bool):  # type: ignore[no-untyped-def]
    """Every cassette under ``paths``; prints diagnostics for bad ones. Returns (cassettes, bad)."""
    from .cassette import find_cassettes, read_cassette

    files = find_cassettes(paths)
    cassettes, bad = [], []
    for f in files:
        c, diags = read_cassette(f)
        if c is None:
            bad.append({"cassette": f, "verdict": "invalid", "diagnostics": [d.to_json() for d in diags]})
            if not as_json:
                for d in diags:
                    print(d.format(), file=sys.stderr)
        else:
            cassettes.append(c)
    return files, cassettes, bad


async def _replay_all(cassettes: list[Any], policy: Any, transport: str, quiet: bool) -> list[Any]:
    from .harness import replay

    reports = []
    try:
        for i, c in enumerate(cassettes, 1):
            _progress(i, len(cassettes), c.name, quiet)
            reports.append(await replay(c, policy, transport=transport))  # type: ignore[arg-type]
    finally:
        if transport == "http":
            from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

            await close_litellm_async_clients()
        if not quiet and len(cassettes) > 1 and sys.stderr.isatty():
            print(file=sys.stderr)
    return reports


def cmd_replay(args: argparse.Namespace) -> int:
    policy = _load_or_report(args.machine, args.json)
    if policy is None:
        return EXIT_USAGE
    files, cassettes, bad = _read_all(args.paths, args.json)
    if not files:
        print(f"loopspec replay: no cassettes (*.cassette.yaml) under {' '.join(args.paths)}", file=sys.stderr)
        return EXIT_USAGE
    reports = run_async(_replay_all(cassettes, policy, args.transport, args.json))
    if args.store_trace:
        from .cassette import RecordedStep, store_trace

        for r in reports:
            store_trace(r.cassette, [RecordedStep(s.state, s.event, s.target, s.transition) for s in r.result.trace])
            r.divergence = None
        if not args.json:
            print(f"stored the decision trace under {args.machine} in {len(reports)} cassette(s)", file=sys.stderr)
    ok = not bad and all(r.verdict == "pass" for r in reports)
    if args.json:
        _print_json({"machine": args.machine, "transport": args.transport, "ok": ok,
                     "cassettes": [r.to_json(with_trace=args.trace) for r in reports] + bad})
    else:
        for r in reports:
            mark = {"pass": "PASS", "fail": "FAIL", "diverged": "DIVERGED"}[r.verdict]
            print(f"{mark:8s} {r.name}: {r.outcome}, {r.result.usage.model_calls} calls, {r.result.usage.tool_batches} tool batches")
            for f in r.failures:
                print(f"         - {f}")
            if r.divergence is not None:
                print(f"         - decisions part from the recorded trace at step {r.divergence.step}: {r.divergence.reason}")
        passed = sum(1 for r in reports if r.verdict == "pass")
        print(f"{passed} passed, {len(reports) - passed + len(bad)} failed")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_diff(args: argparse.Namespace) -> int:
    from .harness import decision_path

    old = _load_or_report(args.old, args.json)
    new = _load_or_report(args.new, args.json)
    if old is None or new is None:
        return EXIT_USAGE
    files, cassettes, bad = _read_all([args.corpus], args.json)
    if not cassettes:
        print(f"loopspec diff: no readable cassettes under {args.corpus}", file=sys.stderr)
        return EXIT_USAGE
    before = run_async(_replay_all(cassettes, old, args.transport, args.json))
    after = run_async(_replay_all(cassettes, new, args.transport, args.json))
    rows = []
    for a, b in zip(before, after):
        pa, pb = decision_path(a.result), decision_path(b.result)
        part = next((i for i, (x, y) in enumerate(zip(pa, pb)) if x != y), None)
        if part is None and len(pa) != len(pb):
            part = min(len(pa), len(pb))
        changed = part is not None or a.outcome != b.outcome
        row: dict[str, Any] = {
            "cassette": a.cassette,
            "name": a.name,
            "changed": changed,
            "old": {"outcome": a.outcome, "model_calls": a.result.usage.model_calls, "tool_batches": a.result.usage.tool_batches, "verdict": a.verdict},
            "new": {"outcome": b.outcome, "model_calls": b.result.usage.model_calls, "tool_batches": b.result.usage.tool_batches, "verdict": b.verdict},
            "first_difference": None,
        }
        if part is not None:
            row["first_difference"] = {
                "step": part,
                "old": list(pa[part]) if part < len(pa) else None,
                "new": list(pb[part]) if part < len(pb) else None,
            }
        rows.append(row)
    n_changed = sum(1 for r in rows if r["changed"])
    if args.json:
        _print_json({"old": args.old, "new": args.new, "corpus": args.corpus, "changed": n_changed, "cassettes": rows})
    else:
        for r in rows:
            if not r["changed"]:
                continue
            o, n = r["old"], r["new"]
            print(f"{r['name']}: {o['outcome']} ({o['model_calls']} calls, {o['tool_batches']} batches) -> "
                  f"{n['outcome']} ({n['model_calls']} calls, {n['tool_batches']} batches)")
            d = r["first_difference"]
            if d:
                fmt = lambda s: "(ended)" if s is None else f"{s[0]} --{s[1]}--> {s[2]}"  # noqa: E731
                print(f"    first difference at step {d['step']}: {fmt(d['old'])}  vs  {fmt(d['new'])}")
        print(f"{n_changed} of {len(rows)} cassettes changed")
    return EXIT_OK


def _live_common(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .cassette import read_cassette

    policy = _load_or_report(args.machine, False)
    c, diags = read_cassette(args.cassette)
    for d in diags:
        print(d.format(), file=sys.stderr)
    if policy is None or c is None:
        return None
    from loopspec.cli_run import live_api_key

    ok, args.api_key = live_api_key(args, args.command)
    return (policy, c) if ok else None


def _print_live(result: Any, as_json: bool) -> int:
    if as_json:
        _print_json(result.to_json())
    else:
        print(result.message)
        print(f"--- {result.outcome}: {result.usage.model_calls} calls, {result.usage.tool_batches} tool batches", file=sys.stderr)
    return EXIT_OK if result.outcome == "completed" else EXIT_FAILED


def cmd_rerun(args: argparse.Namespace) -> int:
    from .harness import rerun

    loaded = _live_common(args)
    if loaded is None:
        return EXIT_USAGE
    policy, c = loaded
    result = run_async(rerun(c, policy, model=args.model, api_base=args.api_base, api_key=args.api_key))
    return _print_live(result, args.json)


def cmd_fork(args: argparse.Namespace) -> int:
    from .harness import fork

    loaded = _live_common(args)
    if loaded is None:
        return EXIT_USAGE
    policy, c = loaded
    if not 0 <= args.at <= len(c.interactions):
        print(f"--at must be between 0 and {len(c.interactions)} (the recorded model calls)", file=sys.stderr)
        return EXIT_USAGE
    result = run_async(fork(c, policy, args.at, model=args.model, api_base=args.api_base, api_key=args.api_key))
    return _print_live(result, args.json)


def register(sub: Any) -> None:
    from loopspec.cli_run import add_live_arguments

    p = sub.add_parser("replay", help="replay cassettes under a policy (offline) and judge their expectations")
    p.add_argument("paths", nargs="+", metavar="PATH", help="cassette files or folders (*.cassette.yaml)")
    p.add_argument("--machine", required=True, metavar="FILE", help="policy YAML")
    p.add_argument("--transport", choices=("inproc", "http"), default="inproc",
                   help="inproc: recorded chunks straight into the delta layer (virtual time); "
                        "http: litellm against a loopback server serving the recording")
    p.add_argument("--json", action="store_true", help="one record per cassette")
    p.add_argument("--trace", action="store_true", help="with --json: include each decision trace")
    p.add_argument(
        "--store-trace",
        action="store_true",
        help="write this replay's decision trace into each cassette (later replays under an edited "
        "policy then name the first step whose decision changed, and the guard that changed it)",
    )
    p.set_defaults(handler=cmd_replay)

    p = sub.add_parser("diff", help="replay a corpus under two policies and report what changed")
    p.add_argument("old", metavar="OLD", help="policy before the change")
    p.add_argument("new", metavar="NEW", help="policy after the change")
    p.add_argument("--corpus", required=True, metavar="DIR", help="folder of cassettes")
    p.add_argument("--transport", choices=("inproc", "http"), default="inproc")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_diff)

    for name, handler, helptext in (
        ("rerun", cmd_rerun, "run a cassette's opening messages live, through litellm"),
        ("fork", cmd_fork, "replay a cassette's first K model calls, then continue live under a policy"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("cassette", metavar="CASSETTE")
        add_live_arguments(p)
        if name == "fork":
            p.add_argument("--at", type=int, required=True, metavar="K", help="recorded model calls to replay first")
        p.add_argument("--json", action="store_true")
        p.set_defaults(handler=handler)
