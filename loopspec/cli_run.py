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

from .cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _load_or_report, _print_json, run_async


def demo_tools():  # type: ignore[no-untyped-def]
    """Two harmless tools, so a live turn can exercise the tool loop."""
    from .engine.tools import ToolRegistry

    reg = ToolRegistry()

    def current_time(timezone: str = "UTC") -> str:
        """The current date and time in UTC (ISO 8601)."""
        return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    def word_count(text: str) -> int:
        """Count the words in a text."""
        return len(text.split())

    reg.register(current_time, parameters={"type": "object", "properties": {"timezone": {"type": "string"}}})
    reg.register(
        word_count,
        parameters={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    )
    return reg


def missing_credentials(model: str) -> list[str]:
    """Environment variables litellm needs for this model and cannot find."""
    from .providers.litellm_provider import import_litellm

    litellm = import_litellm()
    try:
        info = litellm.validate_environment(model=model)
    except Exception:
        return []
    if info.get("keys_in_environment"):
        return []
    return list(info.get("missing_keys") or [])


def add_live_arguments(p: argparse.ArgumentParser) -> None:
    """The options every command that calls a live model shares (run, record, rerun, fork)."""
    p.add_argument("--machine", required=True, metavar="FILE", help="policy YAML")
    p.add_argument("--model", required=True, help="litellm model name, e.g. openai/gpt-4o-mini")
    p.add_argument("--api-base", default=None, help="OpenAI-compatible base URL (e.g. a loopback server)")
    p.add_argument("--api-key", default=None, help="API key for --api-base (default: $LOOPSPEC_API_KEY); never written to a cassette")


def live_api_key(args: argparse.Namespace, command: str) -> tuple[bool, str | None]:
    """(ok, api key) for a live command. Not ok, with the missing variable named, when the model
    needs credentials the environment lacks; with --api-base any key will do."""
    if args.api_base is not None:
        return True, args.api_key or os.environ.get("LOOPSPEC_API_KEY") or "sk-loopspec"
    missing = missing_credentials(args.model)
    if missing:
        print(
            f"loopspec {command}: no credentials for model '{args.model}': set {', '.join(missing)} in the "
            "environment (or point --api-base at an OpenAI-compatible server)",
            file=sys.stderr,
        )
        return False, None
    return True, args.api_key


def cmd_run(args: argparse.Namespace) -> int:
    policy = _load_or_report(args.machine, args.json)
    if policy is None:
        return EXIT_USAGE
    ok, api_key = live_api_key(args, "run")
    if not ok:
        return EXIT_USAGE
    from .engine.consumers import Consumers
    from .engine.interpreter import Turn
    from .providers.litellm_provider import LiteLLMProvider

    def on_delta(text: str) -> None:
        if not args.json:
            sys.stdout.write(text)
            sys.stdout.flush()

    def on_status(note: str) -> None:
        if not args.json and args.verbose:
            print(f"\n[{note}]", file=sys.stderr)

    turn = Turn(
        policy,
        LiteLLMProvider(),
        model=args.model,
        tools=demo_tools(),
        consumers=Consumers(on_delta=on_delta, on_status=on_status),
        api_base=args.api_base,
        api_key=api_key,
    )
    result = run_async(turn.run([{"role": "user", "content": args.prompt}]))
    if args.json:
        data: dict[str, Any] = result.to_json()
        _print_json(data)
    else:
        print()
        print(
            f"--- {result.outcome} ({result.halt_state}): {result.usage.model_calls} model calls, "
            f"{result.usage.tool_batches} tool batches, {len(result.trace)} steps",
            file=sys.stderr,
        )
        for s in result.trace:
            print(f"  {s.state:>24} --{s.event}--> {s.target}", file=sys.stderr)
    return EXIT_OK if result.outcome == "completed" else EXIT_FAILED


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run one live turn through litellm (needs credentials)")
    p.add_argument("prompt", help="the user message")
    add_live_arguments(p)
    p.add_argument("--json", action="store_true", help="print the result (outcome, trace, messages) as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="print retries and escalations as they happen")
    p.set_defaults(handler=cmd_run)


__all__ = ["register", "demo_tools", "json"]
