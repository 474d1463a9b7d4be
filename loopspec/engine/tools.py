"""Tools: a registry of sync or async callables with JSON Schemas, and batch execution.

Every call in a batch is answered exactly once, whatever happens: a tool that raises becomes an
error result the model sees, a call that needs approval is answered "not run", a cancelled batch
answers the rest "cancelled". That is what keeps the message history valid at every halt.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from loopspec.wire.classify import canonical_arguments, parse_tool_arguments, validate_tool_arguments

ApprovalHook = Callable[["ToolCall"], "bool | Awaitable[bool]"]


@dataclass(frozen=True)
class Tool:
    name: str
    fn: Callable[..., Any]
    parameters: Mapping[str, Any]
    description: str = ""
    needs_approval: bool = False

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

    @property
    def canonical(self) -> str:
        return canonical_arguments(self.arguments)


@dataclass(frozen=True)
class ToolResult:
    call: ToolCall
    content: str
    ok: bool
    schema_valid: bool = True
    ran: bool = True


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
    ) -> Any:
        def add(f: Callable[..., Any]) -> Callable[..., Any]:
            tool_name = name or f.__name__
            params = parameters if parameters is not None else {"type": "object", "properties": {}}
            doc = description if description is not None else (inspect.getdoc(f) or "")
            self.tools[tool_name] = Tool(tool_name, f, params, doc, needs_approval)
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


async def run_one(tool: Tool | None, call: ToolCall) -> ToolResult:
    """Run one call; never raises (except cancellation)."""
    if tool is None:
        return ToolResult(call, f"Error: unknown tool '{call.name}'", ok=False, schema_valid=False, ran=False)
    problem = validate_tool_arguments(call.arguments, tool.parameters)
    args = parse_tool_arguments(call.arguments) or {}
    try:
        value = tool.fn(**args)
        if inspect.isawaitable(value):
            value = await value
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return ToolResult(call, f"Error: {type(exc).__name__}: {exc}", ok=False, schema_valid=problem is None)
    return ToolResult(call, result_text(value), ok=True, schema_valid=problem is None)


async def needs_approval(registry: ToolRegistry, calls: list[ToolCall], approve: ApprovalHook | None) -> ToolCall | None:
    """The first call that needs approval and did not get it."""
    for call in calls:
        tool = registry.tools.get(call.name)
        if tool is None or not tool.needs_approval:
            continue
        granted: Any = False
        if approve is not None:
            granted = approve(call)
            if inspect.isawaitable(granted):
                granted = await granted
        if not granted:
            return call
    return None


