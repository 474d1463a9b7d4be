"""``loopspec check FILE [--strict] [--json] [--counterexample OUT]``.

Exit 0 when every property is proven, 1 when one fails (with ``--strict``, also when a loop is
bounded only by an undeclared backstop), 2 on usage errors or an unreadable or invalid file.
"""

from __future__ import annotations

import argparse
import json
import sys


def cmd_check(args: argparse.Namespace) -> int:
    from .common import EXIT_USAGE, load_or_report, print_json, fail

    try:
        policy = load_or_report(args.file, args.json)
    except OSError as exc:  # pragma: no cover - validate_file reports unreadable files itself
        print(f"{args.file}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if policy is None:
        return EXIT_USAGE
    from loopspec.verify.checker import check_policy

    result = check_policy(policy, strict=args.strict)
    written: list[str] = []
    if args.counterexample:
        try:
            if args.counterexample.endswith(".json"):
                data = {
                    "file": result.file,
                    "policy": result.policy,
                    "counterexamples": {name: cex.to_json() for name, cex in result.counterexamples().items()},
                }
                with open(args.counterexample, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, indent=2, default=str)
                    fh.write("\n")
                written = [args.counterexample] if result.counterexamples() else []
            else:
                from loopspec.verify.to_cassette import write_counterexamples

                written = write_counterexamples(policy, result, args.counterexample)
        except OSError as exc:
            return fail("check", f"cannot write {args.counterexample}: {exc.strerror or exc}")
    if args.json:
        print_json(result.to_json())
    else:
        from .colour import painter

        print(painter(sys.stdout).check_report(result.format_text()))
        for path in written:
            print(f"wrote counterexample {path} (replay it: loopspec replay {path} --machine {args.file})", file=sys.stderr)
        if args.counterexample:
            for name, p in result.properties.items():
                cex = p.counterexample
                if p.status == "fail" and (cex is None or not cex.concrete):
                    why = cex.note if cex is not None and cex.note else "no concrete run was found"
                    print(f"no counterexample cassette for {name}: {why}", file=sys.stderr)
    return result.exit_code


def register(sub: argparse._SubParsersAction) -> None:
    from .common import exit_epilog

    p = sub.add_parser(
        "check",
        help="prove that every path halts; worst-case cost; built-in properties",
        epilog=exit_epilog("check"),
        description=(
            "Prove a policy: every path halts within its caps, every halt delivers a message, no tool runs "
            "from a truncated call, disabled tools stay disabled, a mid-tool-call stub is never a silent end, "
            "the history stays valid. Reports the worst-case model calls and tool batches per turn."
        ),
    )
    p.add_argument("file", metavar="FILE", help="policy YAML file")
    p.add_argument("--strict", action="store_true", help="fail loops bounded only by an undeclared global backstop")
    p.add_argument("--json", action="store_true", help="machine-readable result")
    p.add_argument(
        "--counterexample",
        metavar="OUT",
        help="write each failed property's shortest counterexample as a replayable cassette "
        "(OUT.cassette.yaml, or a folder; OUT.json writes the event paths instead)",
    )
    p.set_defaults(handler=cmd_check)
