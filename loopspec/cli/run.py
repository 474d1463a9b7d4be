"""``loopspec run``: one live turn through litellm, printing the streamed answer and the trace.

Imports litellm only when it runs, so the rest of the CLI stays fast.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from typing import Any

from .common import CRASH_HELP, EXIT_FAILED, EXIT_OK, EXIT_PAUSED, EXIT_USAGE, decision_number, load_or_report, print_replay_record, print_json, print_result_json, exit_epilog, fail, run_async


def demo_tools():  # type: ignore[no-untyped-def]
    """Two harmless tools, so a live turn can exercise the tool loop."""
    from loopspec.engine.tools import ToolRegistry

    reg = ToolRegistry()

    def current_time(timezone: str = "UTC") -> str:
        """The current date and time in UTC (ISO 8601)."""
        return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    def word_count(text: str) -> int:
        """Count the words in a text."""
        return len(text.split())

    free = lambda **_: 0.0  # noqa: E731 - harmless: auto-approval may run them at no cost
    reg.register(current_time, parameters={"type": "object", "properties": {"timezone": {"type": "string"}}}, cost_estimator=free)
    reg.register(
        word_count,
        parameters={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        cost_estimator=free,
    )
    return reg


def missing_credentials(model: str) -> list[str]:
    """Environment variables ``model``'s provider needs and the environment lacks (empty when
    nothing is missing). Never imports litellm; raises :class:`loopspec.providers.credentials.UnknownProvider`
    for a model name no known provider serves."""
    from loopspec.providers.credentials import check_credentials

    return list(check_credentials(model).missing)


def add_live_arguments(p: argparse.ArgumentParser, *, model_help: str | None = None) -> None:
    """The options every command that calls a live model shares (run, record, rerun, fork; resume,
    where ``--model`` is only needed for a live turn and ``model_help`` says so)."""
    p.add_argument("--machine", required=True, metavar="FILE", help="policy YAML")
    p.add_argument("--model", required=model_help is None,
                   help=model_help or "litellm model name as PROVIDER/MODEL, e.g. openai/gpt-4o-mini (bare gpt-* and claude-* work too)")
    p.add_argument("--api-base", default=None, help="OpenAI-compatible base URL (e.g. a loopback server)")
    p.add_argument("--api-key", default=None,
                   help="API key (default: the provider's variable, e.g. $OPENAI_API_KEY; with --api-base, "
                        "$LOOPSPEC_API_KEY); never written to a cassette")


def live_api_key(args: argparse.Namespace, command: str) -> tuple[bool, str | None]:
    """(ok, api key) for a live command, decided before litellm is imported. Not ok, with the
    reason printed, when the model names no known provider or needs credentials the environment
    lacks. An explicit --api-base (any key will do) or --api-key satisfies the credential check."""
    from loopspec.providers.credentials import UnknownProvider

    try:
        missing = missing_credentials(args.model)
    except UnknownProvider as exc:
        fail(command, str(exc))
        return False, None
    if args.api_base is not None:
        return True, args.api_key or os.environ.get("LOOPSPEC_API_KEY") or "sk-loopspec"
    if missing and not args.api_key:
        fail(
            command,
            f"no credentials for model '{args.model}': set {', '.join(missing)} in the environment "
            "(or pass --api-key, or point --api-base at an OpenAI-compatible server)",
        )
        return False, None
    return True, args.api_key


def console(args: argparse.Namespace) -> Any:
    """The terminal as the turn's consumer: streamed text on stdout (not with --json), retries and
    escalations on stderr with -v."""
    from loopspec.engine.consumers import Consumers

    def on_delta(text: str) -> None:
        if not args.json:
            sys.stdout.write(text)
            sys.stdout.flush()

    def on_status(note: str) -> None:
        if not args.json and getattr(args, "verbose", False):
            print(f"\n[{note}]", file=sys.stderr)

    return Consumers(on_delta=on_delta, on_status=on_status)


def tool_choice_of(value: str | None) -> Any:
    """--tool-choice as litellm takes it: auto, required and none as they are; any other word
    names the one tool the model must call."""
    if value is None or value in ("auto", "required", "none"):
        return value
    return {"type": "function", "function": {"name": value}}


def cmd_run(args: argparse.Namespace) -> int:
    policy = load_or_report(args.machine, args.json)
    if policy is None:
        return EXIT_USAGE
    ok, api_key = live_api_key(args, "run")
    if not ok:
        return EXIT_USAGE
    from loopspec.engine.turn import Turn
    from loopspec.providers.litellm_provider import LiteLLMProvider

    journal = None
    if args.journal:
        from loopspec.journal import JournalError, SqliteJournal

        try:
            journal = SqliteJournal(args.journal)
        except JournalError as exc:
            return fail("run", str(exc))
    turn = Turn(
        policy,
        LiteLLMProvider(),
        model=args.model,
        tools=demo_tools(),
        approvals=approval_session(args),
        consumers=console(args),
        api_base=args.api_base,
        api_key=api_key,
        tool_choice=tool_choice_of(args.tool_choice),
        observers=otel_observers(args) + crash_hook(args),
        journal=journal,
    )
    try:
        result = run_async(turn.run([{"role": "user", "content": args.prompt}]))
    finally:
        if journal is not None:
            journal.close()
    if journal is not None and not args.json:
        print(f"journal: turn {turn.turn_id} in {args.journal}", file=sys.stderr)
    if args.json:
        data: dict[str, Any] = result.to_json()
        if journal is not None:
            data["journal"] = {"file": args.journal, "turn_id": turn.turn_id}
        print_result_json(data, api_key)
    else:
        print()
        print(
            f"--- {result.outcome} ({result.halt_state}): {result.usage.model_calls} model calls, "
            f"{result.usage.tool_batches} tool batches, {len(result.trace)} steps",
            file=sys.stderr,
        )
        for s in result.trace:
            print(f"  {s.state:>24} --{s.event}--> {s.target}", file=sys.stderr)
        note_pause(result, args.journal)
    return exit_of(result)


def approval_session(args: argparse.Namespace) -> Any:
    """--auto-approve turns auto-approval on; without it the turn takes the policy's
    ``approvals.auto_approve`` (None: :class:`~loopspec.Turn` decides)."""
    if not args.auto_approve:
        return None
    from loopspec.engine.approvals import ApprovalSession

    return ApprovalSession(auto_approve=True)


def exit_of(result: Any) -> int:
    """0 completed, 3 paused for a person's approval, 1 any other end."""
    if result.pause is not None:
        return EXIT_PAUSED
    return EXIT_OK if result.outcome == "completed" else EXIT_FAILED


def note_pause(result: Any, journal: str | None) -> None:
    """A paused turn: which calls wait, and the command that answers them."""
    if result.pause is None:
        return
    print(f"--- paused: turn {result.pause.turn_id} awaits a person's answer for:", file=sys.stderr)
    for c in result.pause.calls:
        print(f"  {c['id']}  {c['name']}({c['arguments']})", file=sys.stderr)
    first = result.pause.calls[0]["id"]
    print(f"go on with: loopspec resume --journal {journal} {result.pause.turn_id} --machine ... --model ... "
          f"--approve {first} (or --deny {first}, or --abandon)", file=sys.stderr)


def crash_hook(args: Any) -> list[Any]:
    """``--crash-after-step K`` (a test hook): the observer that ends the process after decision K."""
    if getattr(args, "crash_after_step", None) is None:
        return []
    from loopspec.engine.crash_hook import CrashAfterStep

    return [CrashAfterStep(args.crash_after_step)]


def otel_observers(args: Any) -> list[Any]:
    """``--otel``: the turn's spans go to the tracer provider the environment set up (for example
    under ``opentelemetry-instrument``); ``--otel-content`` records prompts and replies too."""
    if not (args.otel or args.otel_content):
        return []
    from loopspec.engine.tracing import OpenTelemetryTracing

    return [OpenTelemetryTracing(capture_content=args.otel_content)]


def cmd_resume(args: argparse.Namespace) -> int:
    """``loopspec resume --journal FILE [TURN_ID]``: go on with a turn from its last checkpoint."""
    policy = load_or_report(args.machine, args.json)
    if policy is None:
        return EXIT_USAGE
    if not os.path.isfile(args.journal):
        return fail("resume", f"no journal at {args.journal} (write one with loopspec run --journal)")
    from loopspec.journal import JournalError, SqliteJournal

    try:
        journal = SqliteJournal(args.journal)
    except JournalError as exc:  # it names the file
        return fail("resume", str(exc))
    try:
        with journal:
            return _resume_from(args, policy, journal)
    except JournalError as exc:  # an entry that does not read: it names the file and the entry
        return fail("resume", str(exc))


def _resume_from(args: argparse.Namespace, policy: Any, journal: Any) -> int:
    """``cmd_resume`` with its journal open."""
    turn_id = args.turn_id
    if turn_id is None:  # the newest turn that has not ended
        open_turns = [t for t in journal.turn_ids() if not any(e.kind == "halt" for e in journal.entries(t))]
        if not open_turns:
            return fail("resume", f"every turn in {args.journal} has ended: nothing to resume")
        turn_id = open_turns[-1]
    from loopspec.engine.resume import ResumeError, abandon

    if args.abandon:  # no model call: no credentials needed
        if args.approve or args.deny:
            return fail("resume", "--abandon answers every waiting call: it does not go with --approve or --deny")
        try:
            messages = abandon(policy, journal, turn_id)
        except ResumeError as exc:
            return fail("resume", f"{args.journal}: {exc}")  # the file, then the entry
        if args.json:
            print_json({"turn_id": turn_id, "outcome": "abandoned", "messages": messages})
        else:
            print(f"--- abandoned {turn_id}: its waiting calls are answered so; the history has "
                  f"{len(messages)} messages", file=sys.stderr)
        return EXIT_OK
    from loopspec.replay.journaled import replay_entry, started

    entries = journal.entries(turn_id)
    if replay_entry(entries) is not None:
        return _resume_replayed(args, policy, journal, turn_id)
    if entries and not started(entries) and not any(e.kind == "halt" for e in entries):
        return fail("resume", f"turn {turn_id!r} stopped before its first model call, before any effect: run it "
                              "again (a replayed cassette: replay it again into the same journal)")
    if args.model is None:
        return fail("resume", f"turn {turn_id!r} is a live turn: give --model (and its credentials) to go on with it")
    ok, api_key = live_api_key(args, "resume")
    if not ok:
        return EXIT_USAGE
    from loopspec.engine.turn import Turn
    from loopspec.providers.litellm_provider import LiteLLMProvider

    turn = Turn(policy, LiteLLMProvider(), model=args.model, tools=demo_tools(), consumers=console(args),
                api_base=args.api_base, api_key=api_key, journal=journal, turn_id=turn_id,
                approvals=approval_session(args))
    try:
        result = run_async(turn.resume(turn_id, approve=args.approve, deny=args.deny))
    except ResumeError as exc:
        return fail("resume", f"{args.journal}: {exc}")  # the file, then the entry
    if args.json:
        print_result_json({**result.to_json(), "journal": {"file": args.journal, "turn_id": turn_id}}, api_key)
    else:
        print()
        print(f"--- resumed {turn_id}: {result.outcome} ({result.halt_state}), {result.usage.model_calls} model calls, "
              f"{result.usage.tool_batches} tool batches in all", file=sys.stderr)
        note_pause(result, args.journal)
    return exit_of(result)


def add_auto_approve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--auto-approve", action="store_true",
                   help="auto-approve the calls the policy's approval rules mark 'ask' while their estimated cost fits "
                        "approvals.spending_cap (the demo tools cost nothing)")


def _resume_replayed(args: argparse.Namespace, policy: Any, journal: Any, turn_id: str) -> int:
    """A turn ``loopspec replay --journal`` wrote: finished in process from its cassette (no model,
    no litellm) and judged as the whole replay would have been."""
    from loopspec.engine.resume import ResumeError
    from loopspec.replay.journaled import resume_replay

    try:
        report = run_async(resume_replay(policy, journal, turn_id, files_root=args.files_root))
    except ResumeError as exc:
        return fail("resume", f"{args.journal}: {exc}")  # the file, then the entry
    record = {**report.to_json(with_trace=True), "turn_id": turn_id}
    if args.json:  # like a live turn's: the trace and the whole history too
        print_result_json({**record, "messages": report.result.messages, "journal": {"file": args.journal, "turn_id": turn_id}})
    else:
        print_replay_record(record)
        print(f"--- resumed {turn_id}: replayed in process, {report.verdict}", file=sys.stderr)
    return EXIT_OK if report.verdict == "pass" else EXIT_FAILED


def register(sub: Any) -> None:
    from .common import add_files_root_argument

    p = sub.add_parser("resume", help="go on with a turn from its journal: after a crash, or with a person's answers to a pause",
                       epilog=exit_epilog("resume"))
    p.add_argument("turn_id", nargs="?", metavar="TURN_ID", help="the turn to resume (default: the newest that has not ended)")
    p.add_argument("--journal", required=True, metavar="FILE", help="the journal loopspec run or replay --journal wrote")
    p.add_argument("--approve", action="append", default=[], metavar="CALL_ID",
                   help="a paused turn: run this waiting call (repeat for several)")
    p.add_argument("--deny", action="append", default=[], metavar="CALL_ID",
                   help="a paused turn: answer this waiting call 'Denied' and go on without it (repeat for several)")
    p.add_argument("--abandon", action="store_true",
                   help="a paused turn: end it, answering every waiting call 'abandoned' (the user moved on); "
                        "prints the history, valid for the next turn")
    add_live_arguments(p, model_help="litellm model name as PROVIDER/MODEL for a live turn; a replayed turn "
                                     "goes on from its cassette, in process, and needs none")
    add_auto_approve(p)
    add_files_root_argument(p)
    p.add_argument("--json", action="store_true", help="print the result (outcome, trace, messages) as JSON")
    p.set_defaults(handler=cmd_resume)

    p = sub.add_parser("run", help="run one live turn through litellm (needs credentials)", epilog=exit_epilog("run"))
    p.add_argument("prompt", help="the user message")
    add_live_arguments(p)
    p.add_argument("--json", action="store_true", help="print the result (outcome, trace, messages) as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="print retries and escalations as they happen")
    add_auto_approve(p)
    p.add_argument("--tool-choice", default=None, metavar="CHOICE",
                   help="auto, required, none, or a tool's name to force that tool; sent only with requests "
                        "that offer tools, until the policy resets it (default.yaml does after each tool batch)")
    p.add_argument("--journal", metavar="OUT",
                   help="write the turn's journal (each step before its effect) to this SQLite file; "
                        "several turns may share one")
    p.add_argument("--otel", action="store_true",
                   help="emit OpenTelemetry spans (GenAI conventions) to the tracer provider the environment configures")
    p.add_argument("--otel-content", action="store_true",
                   help="like --otel, and record prompts, replies, tool arguments and results on the spans")
    p.add_argument("--crash-after-step", type=decision_number, default=None, metavar="K", help=CRASH_HELP)
    p.set_defaults(handler=cmd_run)


__all__ = ["register", "demo_tools", "json"]
