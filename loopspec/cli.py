"""The ``loopspec`` command line.

Exit codes mean the same everywhere: 0 success (valid, proven, replay green), 1 the input was
found wanting (invalid or unreadable file, failed property, failed expectation), 2 a usage error.
Subcommands import only what they need: ``validate``, ``check``, ``graph`` and ``schema`` never
import litellm (about 2.5 s), so they start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def run_async(coro: Any) -> Any:
    """``asyncio.run``, with asyncio imported only by the commands that need it (validate/check don't)."""
    import asyncio

    return asyncio.run(coro)


def _print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def cmd_validate(args: argparse.Namespace) -> int:
    from .spec.validate import validate_file

    results = []
    failed = False
    for path in args.files:
        policy, diags = validate_file(path)
        errors = [d for d in diags if d.severity == "error"]
        failed = failed or bool(errors) or policy is None
        results.append({"file": path, "valid": not errors and policy is not None, "diagnostics": [d.to_json() for d in diags]})
        if not args.json:
            for d in diags:
                print(d.format(), file=sys.stderr if d.severity == "error" else sys.stdout)
            if not errors and policy is not None:
                print(f"{path}: ok ({len(policy.states) - 1} states, {len(policy.counters)} counters)")
    if args.json:
        _print_json({"valid": not failed, "files": results})
    elif len(args.files) > 1:
        bad = sum(1 for r in results if not r["valid"])
        print(f"{len(args.files) - bad} valid, {bad} invalid")
    return EXIT_FAILED if failed else EXIT_OK


def _load_or_report(path: str, as_json: bool):  # type: ignore[no-untyped-def]
    """Compile a policy for commands that need one; print diagnostics and return None if invalid."""
    from .spec.validate import validate_file

    policy, diags = validate_file(path)
    if policy is None:
        if as_json:
            _print_json({"file": path, "valid": False, "diagnostics": [d.to_json() for d in diags]})
        else:
            for d in diags:
                print(d.format(), file=sys.stderr)
            print(f"{path}: invalid policy; fix the errors above (loopspec validate {path})", file=sys.stderr)
    return policy


def cmd_graph(args: argparse.Namespace) -> int:
    from .spec.graph import to_dot, to_mermaid

    if args.trace and args.format != "mermaid":
        print("loopspec graph: --trace draws Mermaid only (transitions' diagram engine without Graphviz)", file=sys.stderr)
        return EXIT_USAGE
    policy = _load_or_report(args.file, False)
    if policy is None:
        return EXIT_USAGE
    if args.trace:
        text = _trace_graph(policy, args.trace)
        if text is None:
            return EXIT_USAGE
    else:
        text = to_mermaid(policy) if args.format == "mermaid" else to_dot(policy)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _trace_graph(policy: Any, cassette: str) -> str | None:
    """Replay the cassette in-process and draw its path (the replay machinery never imports litellm)."""
    from .replay.cassette import read_cassette
    from .replay.trace_graph import trace_graph

    c, diags = read_cassette(cassette)
    if c is None:
        for d in diags:
            print(d.format(), file=sys.stderr)
        return None
    text, report = run_async(trace_graph(c, policy))
    r = report.result
    print(f"{c.name}: {report.verdict}, {r.outcome} in {r.halt_state} after {len(r.trace)} steps", file=sys.stderr)
    return str(text)


def cmd_schema(args: argparse.Namespace) -> int:
    from .spec.schema import json_schema

    _print_json(json_schema())
    return EXIT_OK


Handler = Callable[[argparse.Namespace], int]
# Subcommands that live in their own modules; each module is cheap to import (heavy imports happen
# inside its handler) and exposes ``register(subparsers)``.
_COMMAND_MODULES = (
    "loopspec.verify.cli_check",
    "loopspec.cli_run",
    "loopspec.replay.cli_replay",
    "loopspec.replay.cli_capture",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loopspec",
        description="An LLM agent's turn lifecycle as a YAML state machine: validate, check, run, replay.",
        epilog="Exit codes: 0 ok, 1 found wanting (invalid or unreadable file, unproven, replay failed), 2 usage error.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("validate", help="check policy files for errors (file:line:col)")
    p.add_argument("files", nargs="+", metavar="FILE", help="policy YAML files")
    p.add_argument("--json", action="store_true", help="machine-readable diagnostics")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("graph", help="draw a policy as Mermaid or DOT")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    p.add_argument("-o", "--output", metavar="OUT", help="write to a file instead of stdout")
    p.add_argument("--trace", metavar="CASSETTE", help="replay CASSETTE in-process under FILE and highlight the path it takes")
    p.set_defaults(handler=cmd_graph)

    p = sub.add_parser("schema", help="print the JSON Schema of the policy language")
    p.set_defaults(handler=cmd_schema)

    import importlib

    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
