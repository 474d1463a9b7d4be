"""Sync tools run on kept daemon threads: a call does not start a thread when one is idle, a thread
stuck in a tool that hangs is never handed another call, and context variables still reach it."""

from __future__ import annotations

import asyncio
import contextvars
import threading

from loopspec.engine.tools import _WORKERS, in_thread

WHO = contextvars.ContextVar("who", default="nobody")


def _tool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "loopspec-tool"]


def test_sequential_sync_calls_reuse_one_kept_thread() -> None:
    async def many() -> set[int]:
        return {await in_thread(threading.get_ident, {}) for _ in range(50)}

    idents = asyncio.run(many())
    assert len(idents) == 1, "each call started a thread of its own"
    assert len(_tool_threads()) <= _WORKERS.keep + 1


def test_a_thread_stuck_in_a_hung_tool_is_never_given_another_call() -> None:
    release = threading.Event()

    async def scenario() -> tuple[int, int]:
        hung = asyncio.ensure_future(in_thread(lambda: (release.wait(10), threading.get_ident())[1], {}))
        await asyncio.sleep(0.05)
        other = await asyncio.wait_for(in_thread(threading.get_ident, {}), 5)
        release.set()
        return await hung, other

    stuck, other = asyncio.run(scenario())
    assert stuck != other, "the second call waited behind the hung one"


def test_the_callers_context_variables_reach_the_kept_thread() -> None:
    async def as_alice() -> str:
        WHO.set("alice")
        return await in_thread(WHO.get, {})

    assert asyncio.run(as_alice()) == "alice"
    assert asyncio.run(in_thread(WHO.get, {})) == "nobody", "a kept thread carries no context from its last call"
