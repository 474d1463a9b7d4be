"""``loopspec replay``, ``diff``, ``fork``, ``rerun``, ``import`` and ``record`` subcommands.

Importing this module is cheap; replay machinery (and litellm, for the HTTP transport and the
live commands) is imported inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, load_or_report, print_json, print_result_json, exit_epilog, fail,
                     print_diagnostics, run_async)
from .colour import painter
from .progress import Progress


def _read_all(paths: list[str], as_json: bool, files_root: str | None = None):  # type: ignore[no-untyped-def]
    """Every cassette under ``paths``; prints diagnostics for bad ones. Returns (files, cassettes, bad)."""
    from loopspec.replay.cassette import find_cassettes, read_cassette

    files = find_cassettes(paths)
    cassettes, bad = [], []
    with Progress(len(files), verb="read", enabled=False if as_json or len(files) < 2 else None) as progress:
        for f in files:
            c, diags = read_cassette(f, files_root=files_root)
            if c is None:
                bad.append({"cassette": f, "verdict": "invalid", "diagnostics": [d.to_json() for d in diags]})
                if not as_json:
                    progress.close()
                    print_diagnostics(f, diags, "cassette")
            else:
                cassettes.append(c)
            progress.advance(failed=c is None)
    return files, cassettes, bad


async def _replay_all(cassettes: list[Any], policy: Any, transport: str, quiet: bool, *, label: str = "",
                      failed: int = 0, show_failed: bool = True) -> list[Any]:
    """Replay each cassette, drawing ``replayed i/n cassettes, k failed`` on a terminal unless ``quiet``."""
    from loopspec.replay.harness import replay

    reports = []
    enabled = False if quiet or len(cassettes) < 2 else None
    try:
        with Progress(len(cassettes), label=label, failed=failed, show_failed=show_failed, enabled=enabled) as progress:
            for c in cassettes:
                report = await replay(c, policy, transport=transport)  # type: ignore[arg-type]
                reports.append(report)
                progress.advance(failed=report.verdict != "pass")
    finally:
        if transport == "http":
            from loopspec.providers.litellm_provider import close_clients

            await close_clients()
    return reports


def cmd_replay(args: argparse.Namespace) -> int:
    policy = load_or_report(args.machine, args.json)
    if policy is None:
        return EXIT_USAGE
    files, cassettes, bad = _read_all(args.paths, args.json, args.files_root)
    if not files:
        return fail("replay", f"no cassettes (*.cassette.yaml) under {' '.join(args.paths)}")
    reports = run_async(_replay_all(cassettes, policy, args.transport, args.json, failed=len(bad)))
    if args.store_trace:
        from loopspec.replay.cassette import RecordedStep, store_trace

        for r in reports:
            try:
                store_trace(r.cassette, [RecordedStep(s.state, s.event, s.target, s.transition) for s in r.result.trace])
            except OSError as exc:
                return fail("replay", f"cannot store the trace in {r.cassette}: {exc.strerror or exc}", EXIT_FAILED)
            r.divergence = None
        if not args.json:
            print(f"stored the decision trace under {args.machine} in {len(reports)} cassette(s)", file=sys.stderr)
    ok = not bad and all(r.verdict == "pass" for r in reports)
    if args.json:
        print_result_json({"machine": args.machine, "transport": args.transport, "ok": ok,
                           "cassettes": [r.to_json(with_trace=args.trace) for r in reports] + bad})
    else:
        paint = painter(sys.stdout)
        for r in reports:
            mark = {"pass": "PASS", "fail": "FAIL", "diverged": "DIVERGED"}[r.verdict]
            print(f"{paint.verdict(mark, 8)} {r.name}: {r.outcome}, {r.result.usage.model_calls} calls, {r.result.usage.tool_batches} tool batches")
            for f in r.failures:
                print(f"         - {f}")
            if r.divergence is not None:
                print(f"         - decisions part from the recorded trace at step {r.divergence.step}: {r.divergence.reason}")
        passed = sum(1 for r in reports if r.verdict == "pass")
        print(f"{passed} passed, {len(reports) - passed + len(bad)} failed")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_diff(args: argparse.Namespace) -> int:
    from loopspec.replay.harness import decision_path

    old = load_or_report(args.old, args.json)
    new = load_or_report(args.new, args.json)
    if old is None or new is None:
        return EXIT_USAGE
    files, cassettes, bad = _read_all([args.corpus], args.json, args.files_root)
    if bad:
        # A diff over part of the corpus would report "nothing changed" for the cassettes it
        # skipped; the diagnostics above name each file:line:col.
        if args.json:
            print_json({"old": args.old, "new": args.new, "corpus": args.corpus, "invalid": bad})
        n = len(bad)
        return fail("diff", f"{n} invalid cassette{'s' if n > 1 else ''} under {args.corpus}; fix "
                            f"{'them' if n > 1 else 'it'} or move {'them' if n > 1 else 'it'} out of the corpus")
    if not cassettes:
        return fail("diff", f"no cassettes (*.cassette.yaml) under {args.corpus}")
    before = run_async(_replay_all(cassettes, old, args.transport, args.json, label="old policy: ", show_failed=False))
    after = run_async(_replay_all(cassettes, new, args.transport, args.json, label="new policy: ", show_failed=False))
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
        print_result_json({"old": args.old, "new": args.new, "corpus": args.corpus, "changed": n_changed, "cassettes": rows})
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
    from loopspec.replay.cassette import read_cassette

    policy = load_or_report(args.machine, False)
    c, diags = read_cassette(args.cassette, files_root=args.files_root)
    print_diagnostics(args.cassette, diags, "cassette")
    if policy is None or c is None:
        return None
    from loopspec.cli.run import live_api_key

    ok, args.api_key = live_api_key(args, args.command)
    return (policy, c) if ok else None


def _print_live(result: Any, as_json: bool, api_key: str | None = None) -> int:
    if as_json:
        print_result_json(result.to_json(), api_key)
    else:
        from loopspec.wire.redaction import env_secrets, literal_secrets, redact_text

        print(redact_text(result.message, (*literal_secrets(api_key), *env_secrets())))
        print(f"--- {result.outcome}: {result.usage.model_calls} calls, {result.usage.tool_batches} tool batches", file=sys.stderr)
    return EXIT_OK if result.outcome == "completed" else EXIT_FAILED


def cmd_rerun(args: argparse.Namespace) -> int:
    from loopspec.replay.harness import rerun

    loaded = _live_common(args)
    if loaded is None:
        return EXIT_USAGE
    policy, c = loaded
    result = run_async(rerun(c, policy, model=args.model, api_base=args.api_base, api_key=args.api_key))
    return _print_live(result, args.json, args.api_key)


def cmd_fork(args: argparse.Namespace) -> int:
    from loopspec.replay.harness import fork

    loaded = _live_common(args)
    if loaded is None:
        return EXIT_USAGE
    policy, c = loaded
    if not 0 <= args.at <= len(c.interactions):
        return fail("fork", f"--at must be between 0 and {len(c.interactions)} (the model calls {c.file} recorded), not {args.at}")
    result = run_async(fork(c, policy, args.at, model=args.model, api_base=args.api_base, api_key=args.api_key))
    return _print_live(result, args.json, args.api_key)


def _files_root_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--files-root", default=None, metavar="DIR",
                   help="also let sse_file read files under DIR (default: only the cassette's own folder, "
                        "or $LOOPSPEC_FILES_ROOT)")


def register(sub: Any) -> None:
    from loopspec.cli.run import add_live_arguments

    transport_help = ("inproc (default): recorded chunks straight into the delta layer, in virtual time; "
                      "http: through litellm against a loopback server serving the recording")

    p = sub.add_parser("replay", help="replay cassettes under a policy (offline) and judge their expectations",
                       epilog=exit_epilog("replay"))
    p.add_argument("paths", nargs="+", metavar="PATH", help="cassette files or folders (*.cassette.yaml)")
    p.add_argument("--machine", required=True, metavar="FILE", help="policy YAML")
    p.add_argument("--transport", choices=("inproc", "http"), default="inproc", help=transport_help)
    p.add_argument("--json", action="store_true", help="one record per cassette (no progress line)")
    p.add_argument("--trace", action="store_true", help="with --json: include each decision trace")
    p.add_argument(
        "--store-trace",
        action="store_true",
        help="write this replay's decision trace into each cassette (later replays under an edited "
        "policy then name the first step whose decision changed, and the guard that changed it)",
    )
    _files_root_argument(p)
    p.set_defaults(handler=cmd_replay)

    p = sub.add_parser("diff", help="replay a corpus under two policies and report what changed",
                       epilog=exit_epilog("diff"))
    p.add_argument("old", metavar="OLD", help="policy before the change")
    p.add_argument("new", metavar="NEW", help="policy after the change")
    p.add_argument("--corpus", required=True, metavar="DIR", help="folder of cassettes (every one must be valid)")
    p.add_argument("--transport", choices=("inproc", "http"), default="inproc", help=transport_help)
    p.add_argument("--json", action="store_true", help="one record per cassette, changed or not (no progress line)")
    _files_root_argument(p)
    p.set_defaults(handler=cmd_diff)

    for name, handler, helptext in (
        ("rerun", cmd_rerun, "run a cassette's opening messages live, through litellm"),
        ("fork", cmd_fork, "replay a cassette's first K model calls, then continue live under a policy"),
    ):
        p = sub.add_parser(name, help=helptext, epilog=exit_epilog(name))
        p.add_argument("cassette", metavar="CASSETTE", help="the cassette whose opening messages start the turn")
        add_live_arguments(p)
        if name == "fork":
            p.add_argument("--at", type=int, required=True, metavar="K",
                           help="recorded model calls to replay before going live (0 to the number recorded)")
        p.add_argument("--json", action="store_true", help="print the result (outcome, trace, messages) as JSON")
        _files_root_argument(p)
        p.set_defaults(handler=handler)
