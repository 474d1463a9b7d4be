"""Tools: a registry of sync or async callables with JSON Schemas, and batch execution.

Every call in a batch is answered exactly once, whatever happens: a tool that raises becomes an
error result the model sees, a call that needs approval is answered "not run", a call that outlives
its timeout is answered "timed out", a cancelled batch answers the rest "cancelled". That is what
keeps the message history valid at every halt.

A synchronous tool runs in a thread of its own, never on the event loop: a blocking tool must not
stall the other turns of the process, nor the timers that time it out or cancel it. The thread is
a daemon: Python cannot stop a thread, so a tool that hangs past its timeout is abandoned (its
result, if it ever comes, is dropped) and never keeps the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from loopspec.wire.classify import arguments_problem, canonical_arguments, canonical_json, parse_tool_arguments

ApprovalHook = Callable[["ToolCall"], "bool | Awaitable[bool]"]


@dataclass(frozen=True)
class Tool:
    name: str
    fn: Callable[..., Any]
    parameters: Mapping[str, Any]
    description: str = ""
    needs_approval: bool = False
    idempotent: bool = False
    """Running the same call twice is harmless: a resumed turn runs an interrupted call again
    instead of answering that it may or may not have completed."""
    cost_estimator: Callable[..., Any] | None = None
    """``estimate(**arguments) -> float | None``: what a call will cost (None: cannot tell). Only
    a call with an estimate can be auto-approved, within the policy's ``spending_cap``."""

    def spec(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry sent to the model."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": dict(self.parameters)},
        }


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str

    @functools.cached_property
    def parsed(self) -> dict[str, Any] | None:
        """The arguments as a dict (None: not a JSON object), parsed once: the approvals, the run
        and the loop detectors all read them. Shared by those readers: never modify it."""
        return parse_tool_arguments(self.arguments)

    @functools.cached_property
    def canonical(self) -> str:
        """The arguments in canonical form (:func:`~loopspec.wire.classify.canonical_arguments`)."""
        args = self.parsed
        return canonical_arguments(self.arguments) if args is None else canonical_json(args)

    def to_json(self) -> dict[str, str]:
        """The call as a journal and a paused turn's result hold it."""
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class ToolResult:
    call: ToolCall
    content: str
    ok: bool
    schema_valid: bool = True
    ran: bool = True
    timed_out: bool = False
    """The call outlived its timeout (``settings.tool_timeout`` or ``tool_batch_timeout``)."""


@dataclass
class ToolRegistry:
    """Named tools; ``register`` works as a plain call or a decorator."""

    tools: dict[str, Tool] = field(default_factory=dict)

    def register(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        description: str | None = None,
        needs_approval: bool = False,
        idempotent: bool = False,
        cost_estimator: Callable[..., Any] | None = None,
    ) -> Any:
        def add(f: Callable[..., Any]) -> Callable[..., Any]:
            tool_name = name or f.__name__
            params = parameters if parameters is not None else {"type": "object", "properties": {}}
            doc = description if description is not None else (inspect.getdoc(f) or "")
            self.tools[tool_name] = Tool(tool_name, f, params, doc, needs_approval, idempotent, cost_estimator)
            return f

        return add(fn) if fn is not None else add

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def specs(self) -> list[dict[str, Any]]:
        return [t.spec() for t in self.tools.values()]

    def schemas(self) -> dict[str, Mapping[str, Any]]:
        """Name -> parameters schema, as the classifier wants it."""
        return {name: t.parameters for name, t in self.tools.items()}


def result_text(value: Any) -> str:
    """The text a tool's return value becomes in the history: a string as it is, anything else as
    sorted JSON (``str`` if it is not JSON). The recorder writes recorded results the same way."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


TIMED_OUT = "Timed out: '{tool}' did not finish within {seconds:g} s and was abandoned; it returned nothing."
"""The answer a call gets when it outlives its timeout."""


def timed_out(call: ToolCall, seconds: float) -> ToolResult:
    """The answer of a call that did not finish within ``seconds``."""
    return ToolResult(call, TIMED_OUT.format(tool=call.name, seconds=seconds), ok=False, timed_out=True)


def _is_async(fn: Callable[..., Any]) -> bool:
    """``fn`` is a coroutine function (also behind ``functools.partial`` or as a callable object)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


async def in_thread(fn: Callable[..., Any], args: Mapping[str, Any]) -> Any:
    """``fn(**args)`` in a daemon thread (a kept one, see :class:`_Workers`), awaited without
    blocking the event loop.

    Cancelling the wait abandons the thread (nothing can stop it); what it returns later is dropped.
    The caller's context variables are visible in the thread, as with ``asyncio.to_thread``."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    ctx = contextvars.copy_context()

    def settle(ok: bool, outcome: Any) -> None:
        if done.done():  # the wait was cancelled or timed out
            return
        if ok:
            done.set_result(outcome)
        else:
            done.set_exception(outcome)

    def work() -> Callable[[], None]:
        try:
            outcome, ok = ctx.run(fn, **args), True
        except BaseException as exc:  # handed to the awaiting task, which decides
            outcome, ok = exc, False

        def tell() -> None:
            try:
                loop.call_soon_threadsafe(settle, ok, outcome)
            except RuntimeError:  # the loop is closed: nobody waits for this result any more
                pass

        return tell

    _WORKERS.run(work)
    return await done


class _Workers:
    """Daemon threads kept for sync tools: starting a thread for every call cost more than most
    tools do. A thread goes back to the idle list when its call returns, so one stuck in a tool
    that hangs (its call abandoned at a timeout) is simply never reused; at most ``keep`` wait."""

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self.idle: list["queue.SimpleQueue[Callable[[], Callable[[], None]]]"] = []
        self.lock = threading.Lock()

    def run(self, job: Callable[[], Callable[[], None]]) -> None:
        """Run ``job`` on a kept thread (or a new one); it returns what tells the caller it is done."""
        with self.lock:
            jobs = self.idle.pop() if self.idle else None
        if jobs is None:
            jobs = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(jobs,), name="loopspec-tool", daemon=True).start()
        jobs.put(job)

    def _serve(self, jobs: "queue.SimpleQueue[Callable[[], Callable[[], None]]]") -> None:
        while True:
            tell = jobs.get()()
            with self.lock:  # idle again before the caller hears: its next call can have this thread
                keep = len(self.idle) < self.keep
                if keep:
                    self.idle.append(jobs)
            tell()
            if not keep:
                return


_WORKERS = _Workers()


async def run_one(tool: Tool | None, call: ToolCall) -> ToolResult:
    """Run one call; never raises (except cancellation). An async tool runs in the caller's task, a
    sync one in a thread (:func:`in_thread`)."""
    if tool is None:
        return ToolResult(call, f"Error: unknown tool '{call.name}'", ok=False, schema_valid=False, ran=False)
    problem = arguments_problem(call.parsed, tool.parameters)
    args = call.parsed or {}
    try:
        value = tool.fn(**args) if _is_async(tool.fn) else await in_thread(tool.fn, args)
        if inspect.isawaitable(value):
            value = await value
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return ToolResult(call, f"Error: {type(exc).__name__}: {exc}", ok=False, schema_valid=problem is None)
    return ToolResult(call, result_text(value), ok=True, schema_valid=problem is None)
