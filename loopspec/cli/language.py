"""The language's own commands: ``validate``, ``graph`` (with ``--trace``) and ``schema``.

Cheap to import: none of them imports litellm, and ``graph --trace`` replays in-process."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .colour import painter
from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, exit_epilog, fail, load_or_report, print_diagnostics, print_json, run_async


def cmd_validate(args: argparse.Namespace) -> int:
    from ..language.validate import validate_file

    results = []
    failed = False
    for path in args.files:
        policy, diags = validate_file(path)
        errors = [d for d in diags if d.severity == "error"]
        failed = failed or bool(errors) or policy is None
        results.append({"file": path, "valid": not errors and policy is not None, "diagnostics": [d.to_json() for d in diags]})
        if not args.json:
            print_diagnostics(path, diags, "policy")
            if not errors and policy is not None:
                print(f"{path}: {painter(sys.stdout).verdict('ok')} ({len(policy.states) - 1} states, {len(policy.counters)} counters)")
    if args.json:
        print_json({"valid": not failed, "files": results})
    elif len(args.files) > 1:
        bad = sum(1 for r in results if not r["valid"])
        print(f"{len(args.files) - bad} valid, {bad} invalid")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    from ..language.graph import to_dot, to_mermaid

    if args.trace and args.format != "mermaid":
        return fail("graph", "--trace draws Mermaid only (transitions' diagram engine without Graphviz)")
    policy = load_or_report(args.file, False)
    if policy is None:
        return EXIT_USAGE
    if args.trace:
        text = _trace_graph(policy, args.trace)
        if text is None:
            return EXIT_USAGE
    else:
        text = to_mermaid(policy) if args.format == "mermaid" else to_dot(policy)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            return fail("graph", f"cannot write {args.output}: {exc.strerror or exc}")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _trace_graph(policy: Any, cassette: str) -> str | None:
    """Replay the cassette in-process and draw its path (the replay machinery never imports litellm)."""
    from ..replay.cassette import read_cassette
    from ..replay.trace_graph import trace_graph

    c, diags = read_cassette(cassette)
    if c is None:
        for d in diags:
            print(painter(sys.stderr).diagnostic(d), file=sys.stderr)
        return None
    text, report = run_async(trace_graph(c, policy))
    r = report.result
    print(f"{c.name}: {report.verdict}, {r.outcome} in {r.halt_state} after {len(r.trace)} steps", file=sys.stderr)
    return str(text)


def cmd_schema(args: argparse.Namespace) -> int:
    from ..language.schema import json_schema

    print_json(json_schema())
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check policy files for errors (file:line:col)", epilog=exit_epilog("validate"))
    p.add_argument("files", nargs="+", metavar="FILE", help="policy YAML files")
    p.add_argument("--json", action="store_true", help="machine-readable diagnostics")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("graph", help="draw a policy as Mermaid or DOT", epilog=exit_epilog("graph"))
    p.add_argument("file", metavar="FILE", help="policy YAML file")
    p.add_argument("--format", choices=("mermaid", "dot"), default="mermaid",
                   help="mermaid (default; renders on GitHub) or dot (Graphviz)")
    p.add_argument("-o", "--output", metavar="OUT", help="write to a file instead of stdout")
    p.add_argument("--trace", metavar="CASSETTE", help="replay CASSETTE in-process under FILE and highlight the path it takes")
    p.set_defaults(handler=cmd_graph)

    p = sub.add_parser("schema", help="print the JSON Schema of the policy language", epilog=exit_epilog("schema"))
    p.set_defaults(handler=cmd_schema)
