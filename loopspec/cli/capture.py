"""``loopspec import``, ``record`` and ``cassette-schema``: getting turns into cassettes.

Cheap to import; the import and recording machinery (and litellm, for ``record``) load inside the
handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

from .colour import painter
from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, load_or_report, print_json, exit_epilog, fail, run_async


def _positive_float(text: str) -> float:
    """argparse type for --time-scale: a number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0 (e.g. 0.01), got {text}")
    return value


def _unwritable(path: str) -> str | None:
    """Why ``path`` cannot be written, checked before a live turn spends model calls; None if it can."""
    if not path:
        return "the path is empty"
    if os.path.isdir(path):
        return "it is a folder; name the cassette file, e.g. OUT.cassette.yaml"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"no such folder {os.path.dirname(path) or parent}"
    return None


def _write_cassette(command: str, render: Callable[[], str], path: str) -> bool:
    """Render the cassette text through ``render`` (which redacts), check it as ``replay`` would
    read it, and only then write it: False, with the reason printed and nothing left on disk, if
    redaction refused, the reader would reject the text, or the file could not be written."""
    from loopspec.language import codes
    from loopspec.language.yamlsource import MAX_NODES
    from loopspec.replay.cassette import read_cassette_text
    from loopspec.replay.recorder import RedactionError

    try:
        text = render()
    except RedactionError as exc:
        fail(command, f"{exc}; nothing written")
        return False
    c, diags = read_cassette_text(text, path)
    if c is None:
        for d in diags:
            if d.code == codes.TOO_MANY_NODES:
                fail(command, f"{path} not written: the cassette would hold more than {MAX_NODES} YAML nodes, the most "
                              "replay reads; import a shorter part of the session (cut the transcript at a user message)")
            else:
                fail(command, f"{path} not written: replay would refuse it: {d.message}"
                              + (f" (at {d.path})" if d.path else "") + (f"; {d.hint}" if d.hint else ""))
        return False
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        fail(command, f"cannot write {path}: {exc.strerror}")
        return False
    return True


def cmd_import(args: argparse.Namespace) -> int:
    from loopspec.replay.importer import TranscriptError, import_transcript
    from loopspec.replay.recorder import safe_dump

    try:
        imported = import_transcript(args.transcript, name=args.name)
    except TranscriptError as exc:
        for d in exc.diagnostics:
            print(painter(sys.stderr).diagnostic(d), file=sys.stderr)
        return EXIT_FAILED
    if not _write_cassette("import", lambda: safe_dump(imported.to_data(), imported.secrets), args.output):
        return EXIT_FAILED
    c = imported.cassette
    for note in imported.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {args.output}: {len(c.messages)} opening messages, {len(c.interactions)} model responses, "
          f"{len(c.tool_results)} tool results, {len(c.tools)} tools")
    return EXIT_OK


def cmd_record(args: argparse.Namespace) -> int:
    policy = load_or_report(args.machine, False)
    if policy is None:
        return EXIT_USAGE
    why = _unwritable(args.output)
    if why:
        return fail("record", f"cannot write {args.output or repr(args.output)}: {why}")
    from loopspec.cli.run import live_api_key

    ok, api_key = live_api_key(args, "record")
    if not ok:
        return EXIT_USAGE
    name = args.name or os.path.basename(args.output).split(".")[0]
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": args.prompt})
    recording = run_async(_record(policy, messages, args, api_key, name))
    if not _write_cassette("record", recording.render, args.output):
        return EXIT_FAILED
    r = recording.result
    print(f"wrote {args.output}: {r.outcome} ({r.halt_state}), {r.usage.model_calls} model calls, "
          f"{r.usage.tool_batches} tool batches, {len(recording.cassette.interactions)} responses recorded")
    return EXIT_OK


async def _record(policy: Any, messages: list[dict[str, Any]], args: argparse.Namespace, api_key: str | None, name: str) -> Any:
    from loopspec.cli.run import demo_tools

    from loopspec.replay.recorder import record_turn

    options: dict[str, Any] = {}
    if args.time_scale is not None:
        from loopspec.engine.clock import ScaledClock

        options["clock"] = ScaledClock(args.time_scale)
    try:
        return await record_turn(
            policy, messages, model=args.model, tools=demo_tools(), api_base=args.api_base, api_key=api_key,
            name=name, machine=args.machine, **options,
        )
    finally:
        from loopspec.providers.litellm_provider import close_clients

        await close_clients()


def cmd_cassette_schema(args: argparse.Namespace) -> int:
    from loopspec.replay.cassette_schema import cassette_json_schema

    print_json(cassette_json_schema())
    return EXIT_OK


def register(sub: Any) -> None:
    from loopspec.cli.run import add_live_arguments

    p = sub.add_parser("import", help="turn a saved session (OpenAI messages: JSON or JSONL) into a cassette",
                       epilog=exit_epilog("import"))
    p.add_argument("transcript", metavar="TRANSCRIPT",
                   help="a JSON array of messages, {\"messages\": [...], \"tools\": [...]}, or JSONL (one message a line)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the cassette to write (*.cassette.yaml)")
    p.add_argument("--name", default=None, help="the cassette's name (default: the transcript's file name)")
    p.set_defaults(handler=cmd_import)

    p = sub.add_parser("record", help="run one live turn and record it as a cassette (secrets redacted)",
                       epilog=exit_epilog("record"))
    p.add_argument("prompt", help="the user message")
    add_live_arguments(p)
    p.add_argument("--system", default=None, help="a system message before the prompt")
    p.add_argument("--name", default=None, help="the cassette's name (default: the output file name)")
    p.add_argument("--time-scale", type=_positive_float, default=None, metavar="F",
                   help="compress the policy's backoffs and timeouts by F > 0 (e.g. 0.01 against a local test "
                        "server); recorded stall lengths stay in real seconds")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the cassette to write")
    p.set_defaults(handler=cmd_record)

    p = sub.add_parser("cassette-schema", help="print the JSON Schema of the cassette format",
                       epilog=exit_epilog("cassette-schema"))
    p.set_defaults(handler=cmd_cassette_schema)
