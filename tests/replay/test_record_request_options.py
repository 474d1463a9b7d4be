"""``loopspec record`` keeps what the caller passed to the Turn (``request:``), so a replay sends
the same forced tool_choice and token limit the recorded run did."""

from __future__ import annotations

import asyncio
from pathlib import Path

from _paths import DEFAULT_POLICY
from loopspec import load_policy
from loopspec.engine.clock import ScaledClock
from loopspec.engine.tools import ToolRegistry
from loopspec.replay.cassette import read_cassette
from loopspec.replay.harness import replay
from loopspec.replay.recorder import record_turn
from loopspec.replay.server import LoopbackServer
from loopspec.replay.synth import reply


def test_recorded_request_options_are_written_and_replayed(tmp_path: Path) -> None:
    policy = load_policy(str(DEFAULT_POLICY))
    tools = ToolRegistry()
    tools.register(lambda: "12 passed", name="run_tests", parameters={"type": "object"})

    async def go():  # type: ignore[no-untyped-def]
        async with LoopbackServer([reply(tool_calls=[("run_tests", {})]), reply("All green.")]) as srv:
            rec = await record_turn(
                policy, [{"role": "user", "content": "run the tests"}], model="openai/x", tools=tools,
                api_base=srv.api_base, api_key="sk-loopspec-test", clock=ScaledClock(0.01),
                tool_choice="required", max_tokens=64, extra={"temperature": 0},
            )
        path = tmp_path / "rec.cassette.yaml"
        rec.write(str(path))
        c, diags = read_cassette(str(path))
        assert c is not None, diags
        return path.read_text(), c, await replay(c, policy)

    text, c, report = asyncio.run(go())
    assert "request:\n  tool_choice: required\n  max_tokens: 64\n  extra:\n    temperature: 0\n" in text
    assert report.verdict == "pass", report.failures
    assert [(r.tool_choice, r.max_tokens) for r in report.result.requests] == [("required", 64), ("auto", 64)]
