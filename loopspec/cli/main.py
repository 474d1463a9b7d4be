"""The ``loopspec`` command line: the parser and the entry point.

Exit codes mean the same everywhere: 0 success (valid, proven, replay green), 1 the input was
found wanting (invalid or unreadable file, failed property, failed expectation), 2 a usage error
(which includes a policy or cassette the command needs in order to run at all, and missing
credentials). ``EXIT_CODES`` (in :mod:`.common`) spells this out per command for ``--help`` and
README. Each subcommand lives in its own module, cheap to import; ``validate``, ``check``, ``graph``
and ``schema`` never import litellm (about 2.5 s), so they start fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from .colour import CHOICES as COLOR_CHOICES, use as use_colour
from .common import EXIT_CODES, EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail
from .completion import autocomplete


Handler = Callable[[argparse.Namespace], int]
# Subcommands that live in their own modules; each module is cheap to import (heavy imports happen
# inside its handler) and exposes ``register(subparsers)``.
_COMMAND_MODULES = (
    "loopspec.cli.language",
    "loopspec.cli.check",
    "loopspec.cli.cover",
    "loopspec.cli.run",
    "loopspec.cli.replay",
    "loopspec.cli.capture",
    "loopspec.cli.completion",
)

_COLOR_HELP = ("colour verdicts and diagnostics: auto (default) on a terminal, unless NO_COLOR is set "
               "(FORCE_COLOR forces it); always; never. --json output is never coloured")


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
    parser.add_argument("--color", choices=COLOR_CHOICES, default="auto", help=_COLOR_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    import importlib

    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    # Also after the subcommand (``loopspec check x --color never``); SUPPRESS keeps the top-level
    # value when it is not given there.
    for p in sub.choices.values():
        p.add_argument("--color", choices=COLOR_CHOICES, default=argparse.SUPPRESS, help=_COLOR_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if argv is None:  # the console script: answer a shell's completion request (_ARGCOMPLETE) and exit
        autocomplete(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help and --version
        return int(exc.code or 0)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    use_colour("never" if getattr(args, "json", False) else args.color)
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
    finally:
        use_colour("auto")  # main() runs many times in one process under the tests


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
