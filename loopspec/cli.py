"""The ``loopspec`` command line.

Exit codes mean the same everywhere: 0 success (valid, proven, replay green), 1 the input was
found wanting (invalid or unreadable file, failed property, failed expectation), 2 a usage error
(which includes a policy or cassette the command needs in order to run at all, and missing
credentials). ``EXIT_CODES`` spells this out per command for ``--help`` and README. Every error
the CLI reports itself is one ``loopspec COMMAND: ...`` line (see :func:`fail`) or the file's
``FILE:LINE:COL`` diagnostics, never a traceback. Subcommands import only what they need: ``validate``, ``check``, ``graph`` and ``schema`` never
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

# What each exit code means, per command: printed at the foot of ``loopspec COMMAND --help`` and
# kept word for word in the Commands table of README.md (tests/test_cli.py compares the two).
EXIT_CODES: dict[str, str] = {
    "validate": "0 valid, 1 invalid, 2 usage",
    "check": "0 proven, 1 a property fails, 2 usage or invalid file",
    "replay": "0 all pass, 1 a failure or an invalid cassette, 2 usage or invalid policy",
    "diff": "0 compared, 2 usage, invalid policy or invalid cassette",
    "graph": "0 drawn, 2 usage or invalid file",
    "run": "0 completed, 1 other outcome, 2 usage, invalid policy or no credentials",
    "record": "0 written, 1 not written, 2 usage, invalid policy or no credentials",
    "import": "0 written, 1 not written, 2 usage",
    "rerun": "0 completed, 1 other outcome, 2 usage, invalid input or no credentials",
    "fork": "0 completed, 1 other outcome, 2 usage, invalid input or no credentials",
    "schema": "0",
    "cassette-schema": "0",
}


def exit_epilog(command: str) -> str:
    """The ``--help`` footer of a subcommand: what its exit codes mean."""
    return f"Exit codes: {EXIT_CODES[command]}."


def fail(command: str, message: str, code: int = EXIT_USAGE) -> int:
    """Print ``loopspec COMMAND: message`` on stderr and return ``code``: the one shape of every
    error the CLI reports itself."""
    print(f"loopspec {command}: {message}", file=sys.stderr)
    return code


def print_diagnostics(path: str, diags: Sequence[Any], wanted: str) -> bool:
    """Print a file's diagnostics on stderr (warnings on stdout), one per line; when the file failed
    because it is the other kind of loopspec document (a cassette given as a policy, a policy given
    as a cassette), print that single fact instead of one unknown-key error per top-level key, and
    return True."""
    swapped = swapped_kind(path, wanted) if any(d.severity == "error" for d in diags) else None
    if swapped:
        print(swapped, file=sys.stderr)
        return True
    for d in diags:
        print(d.format(), file=sys.stderr if d.severity == "error" else sys.stdout)
    return False


def swapped_kind(path: str, wanted: str) -> str | None:
    """A one-line error when ``path`` is the other kind of loopspec document than ``wanted``
    ("policy" or "cassette"); None when it is not (or cannot be read)."""
    from .language.yamlsource import LoadError, load_yaml_file

    try:
        doc = load_yaml_file(path)
    except (LoadError, OSError):
        return None
    if not isinstance(doc, dict):
        return None
    mine, theirs = ("loopspec", "loopspec_cassette") if wanted == "policy" else ("loopspec_cassette", "loopspec")
    if theirs not in doc or mine in doc:
        return None
    pos = getattr(doc, "key_pos", {}).get(theirs)
    where = f"{path}:{pos.line}:{pos.col}" if pos is not None else path
    if wanted == "policy":
        return (f"{where}: error: this is a cassette ('loopspec_cassette:'), not a policy; "
                "replay it with: loopspec replay CASSETTE --machine POLICY")
    return f"{where}: error: this is a policy ('loopspec:'), not a cassette; a policy goes after --machine"


def run_async(coro: Any) -> Any:
    """``asyncio.run``, with asyncio imported only by the commands that need it (validate/check don't)."""
    import asyncio

    return asyncio.run(coro)


def _print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def cmd_validate(args: argparse.Namespace) -> int:
    from .language.validate import validate_file

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
                print(f"{path}: ok ({len(policy.states) - 1} states, {len(policy.counters)} counters)")
    if args.json:
        _print_json({"valid": not failed, "files": results})
    elif len(args.files) > 1:
        bad = sum(1 for r in results if not r["valid"])
        print(f"{len(args.files) - bad} valid, {bad} invalid")
    return EXIT_FAILED if failed else EXIT_OK


def _load_or_report(path: str, as_json: bool):  # type: ignore[no-untyped-def]
    """Compile a policy for commands that need one; print diagnostics and return None if invalid."""
    from .language.validate import validate_file

    policy, diags = validate_file(path)
    if policy is None:
        if as_json:
            _print_json({"file": path, "valid": False, "diagnostics": [d.to_json() for d in diags]})
        elif not print_diagnostics(path, diags, "policy"):
            print(f"{path}: invalid policy; fix the errors above (loopspec validate {path})", file=sys.stderr)
    return policy


def cmd_graph(args: argparse.Namespace) -> int:
    from .language.graph import to_dot, to_mermaid

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
    from .language.schema import json_schema

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


class _VersionAction(argparse.Action):
    """``--version``: read from the installed package's metadata only when asked, so start-up
    does not pay for importlib.metadata."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("loopspec")
        except PackageNotFoundError:  # running from a source tree that was never installed
            text = "unknown (not installed)"
        print(f"loopspec {text}")
        parser.exit()


def _exit_code_table() -> str:
    width = max(len(c) for c in EXIT_CODES)
    rows = [f"  {command:<{width}}  {codes}" for command, codes in EXIT_CODES.items()]
    return "exit codes (0 ok, 1 the input was found wanting, 2 usage error):\n" + "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loopspec",
        description="An LLM agent's turn lifecycle as a YAML state machine: validate, check, run, replay.",
        epilog=_exit_code_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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

    import importlib

    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help and --version
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
    except OSError as exc:
        # A file the command needed to read or write, outside the paths each handler reports
        # itself: still one line, never a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(args.command, f"{where}{exc.strerror or exc}", EXIT_FAILED)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
