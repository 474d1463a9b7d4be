"""``loopspec replay``, ``diff``, ``fork``, ``rerun``, ``import`` and ``record`` subcommands.

Importing this module is cheap; replay machinery (and litellm, for the HTTP transport and the
live commands) is imported inside the handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .common import (CRASH_HELP, EXIT_FAILED, counting_number, decision_number, print_replay_record, add_files_root_argument, EXIT_OK, EXIT_USAGE, load_or_report, print_json, print_result_json, exit_epilog, fail,
                     print_diagnostics, run_async)
from .progress import Progress


def _shard(text: str) -> Any:
    """argparse type of ``--shard``: a bad value is a usage error (exit 2) saying what is wrong."""
    from loopspec.replay.corpus import Shard

    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_jobs = counting_number("a number of processes")


def add_corpus_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", "-j", type=_jobs, default=None, metavar="N",
                   help="local worker processes (default: all cores); the report is the same for any N")
    p.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                   help="run only the I-th of N parts of the corpus, picked by a hash of each cassette's "
                        "path relative to the folder it is under: CI matrices and clusters split it alike")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="keep read cassettes in DIR, so an unchanged cassette is not parsed again "
                        "(default: $LOOPSPEC_CACHE_DIR, else .loopspec_cache)")
    p.add_argument("--no-cache", action="store_true", help="read every cassette afresh and keep nothing")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local (default): a process pool of --jobs; ray: Ray tasks of 200-1,000 cassettes "
                        "on the cluster RAY_ADDRESS names, or a local one (pip install 'loopspec[ray]')")


def run_cassettes(command: str, args: argparse.Namespace, job: Any, paths: list[str], quiet: bool, *,
         verb: str, show_failed: bool, cache: bool = True) -> Any:
    """Every cassette under ``paths`` in ``args.shard`` run as ``job``: (outcomes, None), or
    (None, exit code) after reporting why not. ``cache=False`` for cassettes that live only as long
    as the command (nothing would ever read their entries again)."""
    import dataclasses

    from loopspec.replay.cassette_cache import default_cache_dir
    from loopspec.replay.corpus import RayMissing, default_jobs, discover, run_corpus, select

    if cache and not args.no_cache:
        job = dataclasses.replace(job, cache_dir=os.path.abspath(args.cache_dir or default_cache_dir()))

    files = select(discover(paths), args.shard)
    if not files:
        where = " ".join(paths) + (f" in shard {args.shard}" if args.shard else "")
        return None, fail(command, f"no cassettes (*.cassette.yaml) under {where}")
    enabled = False if quiet or len(files) < 2 else None
    with Progress(len(files), verb=verb, show_failed=show_failed, enabled=enabled) as progress:
        def done(batch: list[Any]) -> None:
            for o in batch:
                progress.advance(failed=o.record.get("verdict") != "pass")

        try:
            outcomes = run_corpus(job, files, jobs=args.jobs or default_jobs(), backend=args.backend, on_done=done)
        except RayMissing as exc:
            progress.close()
            return None, fail(command, str(exc))
    return outcomes, None


def print_invalid(outcomes: list[Any]) -> None:
    for o in outcomes:
        if o.invalid:
            print_diagnostics(o.file, o.diagnostics, "cassette")


def _journal_clash(path: str, paths: list[str], shard: Any) -> str | None:
    """Why ``--journal path`` cannot take these cassettes' turns (None when it can): not a journal,
    or it already holds a turn one of them would be written as (and that turn got as far as its
    first checkpoint: one cut before that had no effect, and is started again)."""
    from loopspec.journal import JournalError, SqliteJournal
    from loopspec.replay.corpus import discover, select
    from loopspec.replay.journal_note import turn_id_of

    from loopspec.replay.journaled import started

    try:
        with SqliteJournal(path) as journal:  # a turn cut before any effect may start again
            held = {t for t in journal.turn_ids() if started(journal.entries(t))}
    except JournalError as exc:
        return str(exc)
    clash = sorted(held & {turn_id_of(f) for f in select(discover(paths), shard)})
    if clash:
        return (f"{path} already holds turn {clash[0]!r}" + (f" and {len(clash) - 1} more" if len(clash) > 1 else "")
                + ": finish a cut one with loopspec resume, or journal this replay to another file")
    return None


def cmd_replay(args: argparse.Namespace) -> int:
    from loopspec.replay.corpus import Job, prime_policy

    policy = load_or_report(args.machine, args.json)
    if policy is None:
        return EXIT_USAGE
    if args.journal:
        problem = _journal_clash(args.journal, args.paths, args.shard)
        if problem:
            return fail("replay", problem)
    if args.crash_after_step is not None:
        args.jobs = 1  # the hook ends *this* process at an exact decision: no worker pool
    prime_policy(args.machine, policy)
    job = Job("replay", (args.machine,), args.transport, with_trace=args.trace, store_trace=args.store_trace,
              files_root=args.files_root, journal=args.journal, crash_after_step=args.crash_after_step)
    outcomes, code = run_cassettes("replay", args, job, args.paths, args.json, verb="replayed", show_failed=True)
    if outcomes is None:
        return int(code)
    if not args.json:
        print_invalid(outcomes)
    errors = [o.error for o in outcomes if o.error]
    if errors:
        return fail("replay", errors[0], EXIT_FAILED)
    if args.store_trace and not args.json:
        stored = sum(1 for o in outcomes if not o.invalid)
        print(f"stored the decision trace under {args.machine} in {stored} cassette(s)", file=sys.stderr)
    records = [o.record for o in outcomes]
    ok = all(r["verdict"] == "pass" for r in records)
    if args.json:
        data: dict[str, Any] = {"machine": args.machine, "transport": args.transport, "ok": ok}
        if args.shard:
            data["shard"] = str(args.shard)
        if args.journal:
            data["journal"] = args.journal
        print_result_json(dict(data, cassettes=records))
    else:
        for r in records:
            print_replay_record(r)
        passed = sum(1 for r in records if r["verdict"] == "pass")
        print(f"{passed} passed, {len(records) - passed} failed")
        if args.journal:
            turns = sum(1 for r in records if "turn_id" in r)
            print(f"journal: {turns} turn(s) in {args.journal}, each under its cassette's path", file=sys.stderr)
    return EXIT_OK if ok else EXIT_FAILED


def _gate_rule(args: argparse.Namespace) -> Any:
    """The ``--worse`` and ``--tolerance`` of ``diff`` as a GateRule; ValueError on a bad value."""
    from loopspec.language.alphabet import OUTCOMES
    from loopspec.replay.gate import GateRule, parse_tolerance, parse_worse

    return GateRule(parse_worse(args.worse, list(OUTCOMES)), parse_tolerance(args.tolerance))


def cmd_diff(args: argparse.Namespace) -> int:
    from loopspec.replay.corpus import Job, prime_policy
    from loopspec.replay.gate import judge, markdown

    try:
        rule = _gate_rule(args)
    except ValueError as exc:
        return fail("diff", str(exc))
    old = load_or_report(args.old, args.json)
    new = load_or_report(args.new, args.json)
    if old is None or new is None:
        return EXIT_USAGE
    prime_policy(args.old, old)
    prime_policy(args.new, new)
    outcomes, code = run_cassettes("diff", args, Job("diff", (args.old, args.new), args.transport, files_root=args.files_root), [args.corpus],
                          args.json, verb="compared", show_failed=False)
    if outcomes is None:
        return int(code)
    bad = [o.record for o in outcomes if o.invalid]
    if bad:
        # A diff over part of the corpus would report "nothing changed" for the cassettes it
        # skipped; the diagnostics name each file:line:col.
        if args.json:
            print_json({"old": args.old, "new": args.new, "corpus": args.corpus, "invalid": bad})
        else:
            print_invalid(outcomes)
        n = len(bad)
        return fail("diff", f"{n} invalid cassette{'s' if n > 1 else ''} under {args.corpus}; fix "
                            f"{'them' if n > 1 else 'it'} or move {'them' if n > 1 else 'it'} out of the corpus")
    rows = judge([o.record for o in outcomes], rule)
    n_changed = sum(1 for r in rows if r["changed"])
    n_bad = sum(1 for r in rows if r["regressions"])
    shard = str(args.shard) if args.shard else None
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(markdown(rows, old=args.old, new=args.new, corpus=args.corpus, rule=rule, shard=shard))
    if args.json:
        data: dict[str, Any] = {"old": args.old, "new": args.new, "corpus": args.corpus}
        if shard:
            data["shard"] = shard
        print_result_json(dict(data, changed=n_changed, regressed=n_bad, cassettes=rows))
    else:
        for r in rows:
            if not r["changed"] and not r["regressions"]:
                continue
            o, n = r["old"], r["new"]
            print(f"{r['name']}: {o['outcome']} ({o['model_calls']} calls, {o['tool_batches']} batches) -> "
                  f"{n['outcome']} ({n['model_calls']} calls, {n['tool_batches']} batches)")
            d = r["first_difference"]
            if d:
                fmt = lambda s: "(ended)" if s is None else f"{s[0]} --{s[1]}--> {s[2]}"  # noqa: E731
                print(f"    first difference at step {d['step']}: {fmt(d['old'])}  vs  {fmt(d['new'])}")
            for why in r["regressions"]:
                print(f"    REGRESSION: {why}")
        print(f"{n_changed} of {len(rows)} cassettes changed, {n_bad} regressed")
    if args.fail_on == "regression" and n_bad:
        return EXIT_FAILED
    if args.fail_on == "change" and n_changed:
        return EXIT_FAILED
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
    p.add_argument("--journal", metavar="OUT",
                   help="write each replayed turn's journal to this SQLite file, under the cassette's path without "
                        ".cassette.yaml as its turn id; a turn a crash cut goes on with loopspec resume --journal OUT TURN_ID")
    p.add_argument("--crash-after-step", type=decision_number, default=None, metavar="K",
                   help=CRASH_HELP + ", counted over the whole run (implies --jobs 1)")
    add_files_root_argument(p)
    add_corpus_arguments(p)
    p.set_defaults(handler=cmd_replay)

    p = sub.add_parser("diff", help="replay a corpus under two policies and report what changed",
                       epilog=exit_epilog("diff"))
    p.add_argument("old", metavar="OLD", help="policy before the change")
    p.add_argument("new", metavar="NEW", help="policy after the change")
    p.add_argument("--corpus", required=True, metavar="DIR", help="folder of cassettes (every one must be valid)")
    p.add_argument("--transport", choices=("inproc", "http"), default="inproc", help=transport_help)
    p.add_argument("--json", action="store_true", help="one record per cassette, changed or not (no progress line)")
    add_files_root_argument(p)
    p.add_argument("--fail-on", choices=("regression", "change"), default=None,
                   help="exit 1 on a regression (see --worse, --tolerance) or on any change; without it "
                        "diff reports and exits 0")
    p.add_argument("--worse", default="", metavar="OUTCOME,...",
                   help="outcomes a cassette must not move into (e.g. backstop,guardrail); leaving "
                        "completed for any other outcome is always a regression")
    p.add_argument("--tolerance", default="10%", metavar="PERCENT",
                   help="how many more model calls or tool batches a cassette may spend before it "
                        "regresses (default 10%%; 0%% allows none)")
    p.add_argument("--markdown", metavar="OUT", help="also write the report as markdown, for a PR comment")
    add_corpus_arguments(p)
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
        add_files_root_argument(p)
        p.set_defaults(handler=handler)
