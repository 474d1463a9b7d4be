"""What loopspec adds to a live turn, measured side by side in one run.

1. Wall time of a turn driven by loopspec (default.yaml, tool call then answer) against the same
   two requests made with ``litellm.acompletion`` directly, on the same loopback stream, in rounds
   run back to back (rotating order). Each round gives one ratio; the report is the median ratio
   with a 95 % confidence interval (order statistics), over at least 200 rounds. Target: the
   interval's upper end at most +5 % added wall time. Three more arms split the added time: the
   direct requests with ``stream_options.include_usage`` as loopspec makes them (it needs the usage
   chunk: budgets, and a reply whose output all went to hidden reasoning), litellm's handling of
   that chunk; the same, each stream ended as loopspec ends it when nobody listens for litellm's
   end (the upstream's rest read with ``rest_to_the_end``, no rebuild of the reply): what that
   saves; and against that arm, loopspec's own share of the turn.
2. The interpreter's own cost per step: ``Policy.step`` + the ``transitions`` move + the trace
   record, over a recorded decision path. Target: <= 20 us per step. Measured without callbacks
   (the plain machine) and with four no-op callbacks (the dispatching machine).

Both targets are measured without a journal or tracing: what those add to the same turn, ratio
and cost per decision side by side, is part 2 of ``bench/journal_cost.py``.

A fifth arm runs the same loopspec turn with the tool registered as a coroutine function: a plain
function runs in a worker thread (so a hung tool can still be timed out and the turn cancelled),
and that hop is shown on its own.

Last, loopspec's own work in a turn, on its own: the same turn (coroutine tool) run in process on
the litellm chunks one live turn received, kept and handed back by a stand-in for litellm's stream
wrapper, so everything loopspec does per turn runs (the policy's steps, the stall timer, reading
each chunk, assembling and classifying the reply, the tool batch, the result) and nothing else
does. Its share of a direct turn is what cutting loopspec's code can win back; the rest of the
added time is the live turn's, not any loopspec function's (on 2026-12-04: 0.31 ms of loopspec's
work in a turn that added about 1 ms with a coroutine tool).

The loopback server runs in a child process by default (``--server process``), as a provider runs
elsewhere: in a thread of this process (``--server thread``) its own work shares the GIL with the
turn under test and lengthens both arms' turns alike, which shrinks the ratio (on 2026-12-04, 300
rounds: about 36 ms a direct turn with the server in a thread, 27 ms with it in a process, and the
same 1.7 ms added by loopspec either way).

    python bench/interpreter_overhead.py [--turns 200] [--server process|thread]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import litellm  # noqa: E402

from loopspec import Event, ToolRegistry, Turn, TurnCallbacks, load_policy  # noqa: E402
from loopspec.engine.clock import RealClock  # noqa: E402
from loopspec.engine.machine import TurnModel  # noqa: E402
from loopspec.providers.litellm_provider import (  # noqa: E402
    LiteLLMProvider, LiteLLMResponseStream, reply_ended_unheard, rest_to_the_end)
from loopspec.replay.interactions import StreamResponse  # noqa: E402
from loopspec.replay.server import LoopbackServer  # noqa: E402

from _stats import median_ci  # noqa: E402

STREAMS = ROOT / "fixtures" / "streams"
POLICY = load_policy(str(ROOT / "machines" / "default.yaml"))
USER = [{"role": "user", "content": "What is the capital of the UK?"}]
TOOLS = [{"type": "function", "function": {"name": "get_capital", "description": "",
                                             "parameters": {"type": "object", "properties": {"country": {"type": "string"}}}}}]


def registry(in_task: bool = False) -> ToolRegistry:
    """The turn's one tool. A plain function, as most tools are, runs in a worker thread (loopspec
    never blocks its event loop, so a hung tool can still be timed out); ``in_task`` registers the
    same tool as a coroutine function, which runs in the turn's own task."""
    reg = ToolRegistry()

    async def get_capital(country: str) -> str:
        return "London"

    reg.register(get_capital if in_task else (lambda country: "London"), name="get_capital",
                 parameters=TOOLS[0]["function"]["parameters"])
    return reg


async def direct_turn(api_base: str, usage: bool = False, rest: bool = False) -> None:
    """The same two requests made by a minimal hand-written loop: read each delta's text and tool
    call fragments, run the tool, send its result back. ``usage`` asks for the usage chunk as
    loopspec does (``stream_options.include_usage``) and stops reading at it, as loopspec did
    until 2026-12-05 when litellm has no success callback to run. ``rest`` (with ``usage``) ends
    each stream as loopspec does now: after the reply's last chunk, the upstream's rest is read
    with loopspec's own ``rest_to_the_end`` instead of litellm's end, which rebuilds the reply."""
    messages = list(USER)
    tool = registry().tools["get_capital"].fn
    extra = {"stream_options": {"include_usage": True}} if usage else {}
    for _ in range(2):
        resp = await litellm.acompletion(model="openai/x", api_base=api_base, api_key="sk-bench", messages=messages,
                                         tools=TOOLS, stream=True, max_retries=0, timeout=30, **extra)
        text, call_id, args = [], None, []
        async for chunk in resp:
            if usage and resp.sent_stream_usage:  # litellm's usage chunk is the last: stop, as loopspec does
                await resp.aclose()
                break
            if chunk.choices:
                delta = chunk.choices[0].delta
                if delta.content:
                    text.append(delta.content)
                for tc in delta.tool_calls or []:
                    call_id = tc.id or call_id
                    args.append(tc.function.arguments or "")
            if rest and reply_ended_unheard(resp) and (await rest_to_the_end(resp))[1] is not None:
                await resp.aclose()
                break
        if call_id is None:
            break
        result = tool(**json.loads("".join(args)))
        messages = messages + [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "get_capital", "arguments": "".join(args)}}]},
            {"role": "tool", "tool_call_id": call_id, "content": result},
        ]


async def loopspec_turn(api_base: str, in_task: bool = False) -> None:
    turn = Turn(POLICY, LiteLLMProvider(), model="openai/x", api_base=api_base, api_key="sk-bench",
                tools=registry(in_task), clock=RealClock())
    result = await turn.run(USER)
    assert result.outcome == "completed", result.outcome


def responses(turns: int) -> list[StreamResponse]:
    """Enough of the recorded tool call and answer for every arm's turns, the warm-up included."""
    tool = StreamResponse(sse=(STREAMS / "openai_stream_tool_call_single.sse").read_text())
    text = StreamResponse(sse=(STREAMS / "openai_stream_text.sse").read_text())
    return [tool, text] * (5 * turns + 10)  # five arms, their warm-up and the kept turn


def serve(turns: int, conn: Any) -> None:
    """The child process's server: sends its address, serves until told to stop."""
    with LoopbackServer(responses(turns)) as server:
        conn.send(server.api_base)
        conn.recv()


async def wall_time(turns: int, server_in: str, kept: list[list[Any]]
                    ) -> tuple[list[float], list[float], list[float], list[float], list[float]]:
    """Each arm's turn times; ``kept`` receives the chunks of one more live loopspec turn."""
    direct: list[float] = []
    with_usage: list[float] = []
    same_end: list[float] = []
    ours: list[float] = []
    ours_in_task: list[float] = []
    if server_in == "process":
        here, there = multiprocessing.Pipe()
        child = multiprocessing.get_context("spawn").Process(target=serve, args=(turns, there), daemon=True)
        child.start()
        api_base, stop = here.recv(), lambda: (here.send("stop"), child.join(10))
    else:
        server = LoopbackServer(responses(turns)).start()
        api_base, stop = server.api_base, server.close
    try:
        await direct_turn(api_base)  # warm every path (connection pool, imports)
        await direct_turn(api_base, usage=True)
        await direct_turn(api_base, usage=True, rest=True)
        await loopspec_turn(api_base)
        await loopspec_turn(api_base, in_task=True)
        arms = [(lambda b: direct_turn(b), direct), (lambda b: direct_turn(b, usage=True), with_usage),
                (lambda b: direct_turn(b, usage=True, rest=True), same_end),
                (loopspec_turn, ours), (lambda b: loopspec_turn(b, in_task=True), ours_in_task)]
        for i in range(turns):  # rotating order, so no arm always runs first or last
            for run, into in arms[i % len(arms):] + arms[: i % len(arms)]:
                t = time.perf_counter()
                await run(api_base)
                into.append(time.perf_counter() - t)
        kept.extend(await kept_turn(api_base))
    finally:
        stop()
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    await close_litellm_async_clients()
    return direct, with_usage, same_end, ours, ours_in_task


class KeptChunks:
    """Stands in for litellm's stream wrapper: hands back the chunks one live response produced,
    marking the usage chunk as litellm does (``sent_stream_usage``)."""

    def __init__(self, chunks: list[Any]) -> None:
        self.chunks = chunks
        self.at = 0
        self.sent_stream_usage = False

    def __aiter__(self) -> "KeptChunks":
        return self

    async def __anext__(self) -> Any:
        if self.at == len(self.chunks):
            raise StopAsyncIteration
        chunk = self.chunks[self.at]
        self.at += 1
        self.sent_stream_usage = self.at == len(self.chunks) and getattr(chunk, "usage", None) is not None
        return chunk

    async def aclose(self) -> None:
        self.at = len(self.chunks)


class KeptResponses:
    """A provider whose responses are the kept chunks of a live turn, read through loopspec's own
    litellm stream reader (``LiteLLMResponseStream``)."""

    def __init__(self, responses: list[list[Any]]) -> None:
        self.responses = responses
        self.calls = 0

    async def open(self, request: Any) -> LiteLLMResponseStream:
        chunks = self.responses[self.calls % len(self.responses)]
        self.calls += 1
        return LiteLLMResponseStream(KeptChunks(chunks), model=request.model)


async def kept_turn(api_base: str) -> list[list[Any]]:
    """The chunks litellm hands loopspec in one live turn (tool call, then answer)."""
    kept: list[list[Any]] = []
    real = litellm.acompletion

    async def keeping(**kwargs: Any) -> Any:
        wrapper = await real(**kwargs)
        chunks = [c async for c in wrapper]
        kept.append(chunks)
        return KeptChunks(chunks)

    litellm.acompletion = keeping
    try:
        await loopspec_turn(api_base, in_task=True)
    finally:
        litellm.acompletion = real
    return kept


async def own_work(kept: list[list[Any]], turns: int) -> list[float]:
    """Seconds of loopspec's own work per turn: the turn run in process on the kept chunks."""
    times = []
    for _ in range(turns):
        turn = Turn(POLICY, KeptResponses(kept), model="openai/x", tools=registry(in_task=True), clock=RealClock())
        t = time.perf_counter()
        result = await turn.run(USER)
        times.append(time.perf_counter() - t)
        assert result.outcome == "completed", result.outcome
    return times


def noop_callbacks() -> TurnCallbacks:
    """One callback of each kind, doing nothing: what dispatching costs on its own."""
    def noop(event: object) -> None:
        pass

    return (TurnCallbacks().before_state_change(noop).after_state_change(noop)
            .on_enter("read_stream", noop).on_exit("call_model", noop))


def step_cost(repeats: int = 20000, callbacks: TurnCallbacks | None = None) -> float:
    """Microseconds per decision step (compiled-model step + machine move + trace-style record)."""
    path = ["opened", "tool_calls", "ok", "opened", "text"]
    attrs = {"tools": ["get_capital"], "count": 1, "chars": 0, "finish_reason": "stop"}
    events = [Event(e, attrs) for e in path]
    steps = 0
    start = time.perf_counter()
    for _ in range(repeats // len(path)):
        cfg = POLICY.initial_config()
        model = TurnModel.acquire(POLICY, callbacks)
        trace = []
        for ev in events:
            step = POLICY.step(cfg, ev)
            model.perform(step)
            trace.append((step.before.state, ev.name, step.after.state, dict(zip(POLICY.counter_names, step.after.counters))))
            cfg = step.after
            steps += 1
        model.release()
    return (time.perf_counter() - start) / steps * 1e6


def added(base: list[float], arm: list[float]) -> str:
    """The median of ``arm``'s time over ``base``'s, round by round, as added percent with its CI."""
    ratio, lo, hi = median_ci([b / a for a, b in zip(base, arm)])
    return f"{(ratio - 1) * 100:+.1f} % (95 % CI {(lo - 1) * 100:+.1f} to {(hi - 1) * 100:+.1f} %)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200, help="interleaved pairs (at least 200 for the target)")
    parser.add_argument("--server", choices=["process", "thread"], default="process",
                        help="where the loopback server runs (default: a child process, as a provider is elsewhere)")
    args = parser.parse_args()
    kept: list[list[Any]] = []
    direct, with_usage, same_end, ours, ours_in_task = asyncio.run(wall_time(args.turns, args.server, kept))
    print(f"turn wall time ({args.turns} interleaved rounds, 2 requests each, loopback server in a {args.server}):")
    for name, xs in (("litellm directly", direct), ("  + include_usage", with_usage),
                     ("  + loopspec's end", same_end), ("loopspec turn", ours), ("  async tool", ours_in_task)):
        print(f"  {name:18s} median {statistics.median(xs) * 1000:8.2f} ms")
    ratio, lo, hi = median_ci([b / a for a, b in zip(direct, ours)])
    verdict = "OK" if hi <= 1.05 else "OVER"
    print(f"  added wall time    median {(ratio - 1) * 100:+.1f} % (95 % CI {(lo - 1) * 100:+.1f} to {(hi - 1) * 100:+.1f} %)"
          f"   target: upper end <= +5 %: {verdict}")
    print(f"    litellm's usage chunk (asked for by loopspec): {added(direct, with_usage)}")
    print(f"    each stream's end read as loopspec reads it (no rebuild of the reply): {added(with_usage, same_end)}")
    print(f"    loopspec over the same requests, ended the same way (its own share): {added(same_end, ours)}")
    print(f"      of which the sync tool's worker thread: {added(ours_in_task, ours)}; "
          f"with the tool as a coroutine, loopspec's own share: {added(same_end, ours_in_task)}")
    own = asyncio.run(own_work(kept, max(args.turns, 200)))
    own_ms, own_lo, own_hi = median_ci(own)
    share = own_ms / statistics.median(direct)
    print(f"loopspec's own work in a turn (in process, on the chunks of a live turn, coroutine tool): median "
          f"{own_ms * 1000:.2f} ms (95 % CI {own_lo * 1000:.2f}-{own_hi * 1000:.2f} ms), {share * 100:.1f} % of a direct turn")
    samples = [step_cost(repeats=2000) for _ in range(41)]
    us, lo_us, hi_us = median_ci(samples)
    print(f"interpreter cost per step: median {us:.1f} us (95 % CI {lo_us:.1f}-{hi_us:.1f} us; target: upper end <= 20 us: "
          f"{'OK' if hi_us <= 20 else 'OVER'})")
    cb, cb_lo, cb_hi = median_ci([step_cost(repeats=2000, callbacks=noop_callbacks()) for _ in range(41)])
    print(f"  with four no-op callbacks: median {cb:.1f} us (95 % CI {cb_lo:.1f}-{cb_hi:.1f} us)")


if __name__ == "__main__":
    main()
