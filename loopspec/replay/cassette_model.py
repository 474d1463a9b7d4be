"""Cassettes: everything the outside world said during one turn, as a versioned YAML file.

A cassette holds the initial messages and tool schemas, each model response (recorded SSE, chunk
JSON, or a built reply) with optional stall and disconnect, provider errors, tool results, and
optional expectations. A bad cassette gets ``file:line:col`` diagnostics like a bad policy.

This module holds the model (the dataclasses and the format's key lists). Reading and checking a
file is :mod:`.cassette_reader`, writing one is :mod:`.cassette_writer`; :mod:`.cassette` gathers
all three for callers.
"""

from __future__ import annotations

from loopspec.language.errors import DiagnosticError

from dataclasses import dataclass, field
from typing import Any

from loopspec.language.properties import RUN_PROPERTIES

from .interactions import Interaction

CASSETTE_VERSION = 1
TOP_KEYS = ("loopspec_cassette", "name", "doc", "source", "model", "messages", "tools", "interactions", "tool_results", "expect", "trace")
INTERACTION_FORMS = ("sse", "sse_file", "chunks", "reply", "error", "completion")
FAULT_KEYS = ("stall_after", "stall_seconds", "disconnect_after")
EXPECT_KEYS = (
    "outcome",
    "model_calls",
    "tool_batches",
    "final_response_contains",
    "message_contains",
    "all_played",
    "requests",
    "properties",
    "max_fires",
)
PROPERTIES = RUN_PROPERTIES
"""The properties a cassette may expect: the built-in properties of one turn, with check's names."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    parameters: dict[str, Any]
    description: str = ""
    needs_approval: bool = False


@dataclass(frozen=True)
class ToolOutcome:
    """One recorded tool result: its text, or the error the tool raised."""

    tool: str
    result: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class RequestExpectation:
    index: int
    tools: str | None = None
    """'present' or 'absent'."""
    prompt_contains: str | None = None


@dataclass(frozen=True)
class Expectations:
    outcome: str | None = None
    model_calls: int | None = None
    tool_batches: int | None = None
    final_response_contains: tuple[str, ...] = ()
    message_contains: tuple[str, ...] = ()
    all_played: bool = False
    requests: tuple[RequestExpectation, ...] = ()
    properties: tuple[str, ...] = ()
    max_fires: tuple[tuple[str, int], ...] = ()
    """(transition label, N): that transition fires at most N times in the turn."""

    @property
    def empty(self) -> bool:
        return self == Expectations()


@dataclass(frozen=True)
class RecordedStep:
    """One decision of the recorded run, stored so a replay under an edited policy can say where
    the decisions first parted and which guard made the difference."""

    state: str
    event: str
    target: str
    transition: str | None = None


@dataclass(frozen=True)
class Cassette:
    name: str
    file: str
    messages: tuple[dict[str, Any], ...]
    interactions: tuple[Interaction, ...]
    tools: tuple[ToolSpec, ...] = ()
    tool_results: tuple[ToolOutcome, ...] = ()
    expect: Expectations = field(default_factory=Expectations)
    trace: tuple[RecordedStep, ...] = ()
    model: str = "openai/replay"
    doc: str = ""
    source: dict[str, Any] = field(default_factory=dict)


class CassetteError(DiagnosticError):
    """A cassette that does not read; ``diagnostics`` say where and why."""
