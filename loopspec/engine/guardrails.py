"""Tool-loop detectors: they turn a batch's results into the guardrail events a policy handles.

Calls are compared by tool name, canonical arguments (key order and whitespace do not matter) and
result, so a poll whose result changes is progress, not a loop. The history lives in this object,
not in the prompt, so it survives compaction.

A call is remembered by its tool's name and a digest of its arguments and result, not by their text:
a journal writes this memory into every checkpoint, and a tool's result can be large. Only as many
recent calls as the doom-loop detector can look back over are kept in order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from loopspec.language.alphabet import Event
from loopspec.language.model import Guardrail

from .tools import ToolResult

# When several detectors fire on one batch, the most specific wins.
PRECEDENCE = ("doom_loop", "repeated_exact_failure", "same_tool_failure", "no_progress")


Signature = tuple[str, str]
"""(tool name, digest of the canonical arguments and the result): a call, as the detectors compare it."""


def signature(tool: str, canonical_arguments: str, result: str) -> Signature:
    digest = hashlib.blake2b(f"{canonical_arguments}\x00{result}".encode("utf-8", "surrogatepass"), digest_size=12)
    return (tool, digest.hexdigest())


def _restored(item: Sequence[Any]) -> Signature:
    """A signature as a journal holds it; one written before digests (tool, arguments, result) is digested."""
    if len(item) == 3:
        return signature(str(item[0]), str(item[1]), str(item[2]))
    return (str(item[0]), str(item[1]))


@dataclass
class GuardrailState:
    config: Mapping[str, Guardrail]
    signatures: list[Signature] = field(default_factory=list)
    """The most recent calls, in order: as many as the doom-loop detector looks back over."""
    failures: dict[Signature, int] = field(default_factory=dict)
    tool_fail_streak: dict[str, int] = field(default_factory=dict)
    repeats: dict[Signature, int] = field(default_factory=dict)

    @property
    def window(self) -> int:
        """How many recent calls the doom-loop detector needs (0 when it is off)."""
        g = self.config.get("doom_loop")
        return 0 if g is None else g.max_period * g.threshold

    def copy(self) -> "GuardrailState":
        """An independent copy of the detectors' memory (the checker tries scripts from one state)."""
        return GuardrailState(self.config, list(self.signatures), dict(self.failures), dict(self.tool_fail_streak),
                              dict(self.repeats))

    def to_json(self) -> dict[str, Any]:
        """The detectors' memory, JSON-safe (a journal's checkpoint keeps it across a crash)."""
        return {
            "signatures": [list(sig) for sig in self.signatures],
            "failures": [[*k, v] for k, v in self.failures.items()],
            "tool_fail_streak": dict(self.tool_fail_streak),
            "repeats": [[*k, v] for k, v in self.repeats.items()],
        }

    def restore(self, memory: Mapping[str, Any]) -> None:
        """Take back the memory :meth:`to_json` wrote (or an older version of it, with texts)."""
        self.signatures = [_restored(s) for s in memory.get("signatures", [])]
        self._keep_window()
        self.failures = {_restored(k[:-1]): int(k[-1]) for k in memory.get("failures", [])}
        self.tool_fail_streak = {str(k): int(v) for k, v in memory.get("tool_fail_streak", {}).items()}
        self.repeats = {_restored(k[:-1]): int(k[-1]) for k in memory.get("repeats", [])}

    def _keep_window(self) -> None:
        """Drop the calls older than the doom-loop detector's window (all of them when it is off)."""
        excess = len(self.signatures) - self.window
        if excess > 0:
            del self.signatures[:excess]

    def observe(self, results: list[ToolResult]) -> Event | None:
        """Record a batch; return the guardrail event to emit, or None (verdict allow / nothing)."""
        fired: dict[str, Event] = {}
        for r in results:
            sig = signature(r.call.name, r.call.canonical, r.content)
            self.signatures.append(sig)
            self._keep_window()
            self.repeats[sig] = self.repeats.get(sig, 0) + 1
            if r.ok:
                self.tool_fail_streak[r.call.name] = 0
            else:
                self.failures[sig] = self.failures.get(sig, 0) + 1
                self.tool_fail_streak[r.call.name] = self.tool_fail_streak.get(r.call.name, 0) + 1
            self._check("repeated_exact_failure", self.failures.get(sig, 0), r.call.name, fired)
            self._check("same_tool_failure", self.tool_fail_streak[r.call.name], r.call.name, fired)
            self._check("no_progress", self.repeats[sig], r.call.name, fired)
        period = self._cycle_period()
        if period:  # the cycle's last call has come round `threshold` times
            self._check("doom_loop", self.config["doom_loop"].threshold, self.signatures[-1][0], fired, period=period)
        for code in PRECEDENCE:
            if code in fired:
                return fired[code]
        return None

    def _check(self, code: str, count: int, tool: str, fired: dict[str, Event], period: int = 0) -> None:
        g = self.config.get(code)
        if g is None or g.verdict == "allow" or count < g.threshold or code in fired:
            return
        attrs: dict[str, object] = {"tool": tool, "verdict": g.verdict}
        if code == "doom_loop":
            attrs["period"] = period
        fired[code] = Event(code, attrs)

    def _cycle_period(self) -> int:
        """The shortest period p (1..max_period) whose cycle repeats ``threshold`` times at the end."""
        g = self.config.get("doom_loop")
        if g is None:
            return 0
        sigs = self.signatures
        for p in range(1, g.max_period + 1):
            need = p * g.threshold
            if len(sigs) < need:
                break
            if need > p and sigs[-1] != sigs[-1 - p]:  # a cycle of period p repeats its last call p back
                continue
            tail = sigs[-need:]
            # (a cycle of one call repeated is found at p == 1 first, so a longer one always mixes calls)
            if all(tail[i] == tail[i % p] for i in range(need)):
                return p
        return 0
