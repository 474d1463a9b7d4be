"""What every ``loopspec`` subcommand shares: exit codes, one-line errors, JSON output, loading a policy.

Exit codes mean the same everywhere: 0 success (valid, proven, replay green), 1 the input was
found wanting (invalid or unreadable file, failed property, failed expectation), 2 a usage error
(which includes a policy or cassette the command needs in order to run at all, and missing
credentials). ``EXIT_CODES`` spells this out per command for ``--help`` and README. Every error
the CLI reports itself is one ``loopspec COMMAND: ...`` line (see :func:`fail`) or the file's
``FILE:LINE:COL`` diagnostics, never a traceback. Subcommands import only what they need: ``validate``, ``check``, ``graph`` and ``schema`` never
import litellm (about 2.5 s), so they start fast.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Sequence

from .colour import painter

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PAUSED = 3
"""``run`` and ``resume`` with a journal: the turn paused until a person approves or denies a call."""

# What each exit code means, per command: printed at the foot of ``loopspec COMMAND --help`` and
# kept word for word in the Commands table of README.md (tests/cli/test_cli.py compares the two).
EXIT_CODES: dict[str, str] = {
    "validate": "0 valid, 1 invalid, 2 usage",
    "check": "0 proven, 1 a property fails, 2 usage or invalid file",
    "replay": "0 all pass, 1 a failure or an invalid cassette, 2 usage or invalid policy",
    "diff": "0 no regression (or no --fail-on), 1 a regression under --fail-on, 2 usage, invalid policy or invalid cassette",
    "cover": "0 covered (or coverage met), 1 a transport disagrees with the checker or coverage below --min-coverage, 2 usage or invalid input",
    "graph": "0 drawn, 2 usage or invalid file",
    "run": "0 completed, 1 other outcome, 2 usage, invalid policy or no credentials, 3 paused for approval (with --journal)",
    "resume": "0 completed (a replayed turn: its replay passes), 1 other outcome (a replayed turn: it fails), 2 usage, invalid policy, "
    "no credentials or a turn that cannot be resumed, 3 paused for approval again",
    "record": "0 written, 1 not written, 2 usage, invalid policy or no credentials",
    "import": "0 written, 1 not written, 2 usage",
    "rerun": "0 completed, 1 other outcome, 2 usage, invalid input or no credentials",
    "fork": "0 completed, 1 other outcome, 2 usage, invalid input or no credentials",
    "schema": "0",
    "cassette-schema": "0",
    "completion": "0 printed, 2 usage",
}


def exit_epilog(command: str) -> str:
    """The ``--help`` footer of a subcommand: what its exit codes mean."""
    return f"Exit codes: {EXIT_CODES[command]}."


def fail(command: str, message: str, code: int = EXIT_USAGE) -> int:
    """Print ``loopspec COMMAND: message`` on stderr and return ``code``: the one shape of every
    error the CLI reports itself."""
    print(painter(sys.stderr).command_error(command, message), file=sys.stderr)
    return code


def print_diagnostics(path: str, diags: Sequence[Any], wanted: str) -> bool:
    """Print a file's diagnostics on stderr (warnings on stdout), one per line; when the file failed
    because it is the other kind of loopspec document (a cassette given as a policy, a policy given
    as a cassette), print that single fact instead of one unknown-key error per top-level key, and
    return True."""
    swapped = _swapped(path, wanted) if any(d.severity == "error" for d in diags) else None
    if swapped:
        print(painter(sys.stderr).error_line(*swapped), file=sys.stderr)
        return True
    for d in diags:
        stream = sys.stderr if d.severity == "error" else sys.stdout
        print(painter(stream).diagnostic(d), file=stream)
    return False


def swapped_kind(path: str, wanted: str) -> str | None:
    """A one-line error when ``path`` is the other kind of loopspec document than ``wanted``
    ("policy" or "cassette"); None when it is not (or cannot be read)."""
    swapped = _swapped(path, wanted)
    return None if swapped is None else "{}: {}: {}".format(*swapped)


def _swapped(path: str, wanted: str) -> tuple[str, str, str] | None:
    """:func:`swapped_kind` in parts, (where, "error", message), so the CLI can paint them."""
    from ..language.yamlsource import LoadError, load_yaml_file

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
        return (where, "error", "this is a cassette ('loopspec_cassette:'), not a policy; "
                "replay it with: loopspec replay CASSETTE --machine POLICY")
    return where, "error", "this is a policy ('loopspec:'), not a cassette; a policy goes after --machine"


def run_async(coro: Any) -> Any:
    """``asyncio.run``, with asyncio imported only by the commands that need it (validate/check don't)."""
    import asyncio

    return asyncio.run(coro)


def print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def print_result_json(data: object, api_key: str | None = None) -> None:
    """A turn's or a replay's result as JSON, redacted like a cassette: provider key shapes,
    credential fields, ``token=``/``key=`` values, ``api_key`` and credential environment values
    never reach stdout, wherever in the result they surfaced (an error body, a tool error, a reply)."""
    from loopspec.wire.redaction import env_secrets, literal_secrets, redact

    print_json(redact(data, (*literal_secrets(api_key), *env_secrets())))


def load_or_report(path: str, as_json: bool):  # type: ignore[no-untyped-def]
    """Compile a policy for commands that need one; print diagnostics and return None if invalid."""
    from ..language.validate import validate_file

    policy, diags = validate_file(path)
    if policy is None:
        if as_json:
            print_json({"file": path, "valid": False, "diagnostics": [d.to_json() for d in diags]})
        elif not print_diagnostics(path, diags, "policy"):
            print(f"{path}: invalid policy; fix the errors above (loopspec validate {path})", file=sys.stderr)
    return policy


def add_files_root_argument(p: Any) -> None:
    """``--files-root DIR``: where ``sse_file`` may read besides each cassette's own folder."""
    p.add_argument("--files-root", default=None, metavar="DIR",
                   help="also let sse_file read files under DIR (default: only the cassette's own folder, "
                        "or $LOOPSPEC_FILES_ROOT)")


def print_replay_record(r: dict[str, Any]) -> None:
    """One replayed cassette's verdict line and its failures (nothing for an invalid cassette)."""
    if r["verdict"] == "invalid":
        return
    paint = painter(sys.stdout)
    mark = {"pass": "PASS", "fail": "FAIL", "diverged": "DIVERGED"}[r["verdict"]]
    print(f"{paint.verdict(mark, 8)} {r['name']}: {r['outcome']}, {r['model_calls']} calls, {r['tool_batches']} tool batches")
    for f in r["failures"]:
        print(f"         - {f}")
    d = r["trace_divergence"]
    if d is not None:
        print(f"         - decisions part from the recorded trace at step {d['step']}: {d['reason']}")


def counting_number(what: str) -> Any:
    """An argparse type for a whole number from 1 (``what`` it counts names it in the usage error)."""
    import argparse

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise argparse.ArgumentTypeError(f"takes {what}, 1 or more, not {text!r}")
        return n

    return parse


decision_number = counting_number("a decision number")
"""argparse type of ``--crash-after-step``."""


CRASH_HELP = ("test hook: end the process abruptly (exit 137, no cleanup, as SIGKILL would) right after its K-th "
              "decision is journaled")
"""The ``--help`` of ``--crash-after-step`` (run, replay): how tests kill a turn at an exact step."""
