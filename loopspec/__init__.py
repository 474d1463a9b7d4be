"""loopspec: an LLM agent's turn lifecycle as a YAML state machine.

The policy language (load, validate, compile) is imported eagerly; it is small and never imports
litellm. Everything that talks to a model is imported on first use, so ``loopspec validate`` and
``loopspec check`` start fast.
"""

from __future__ import annotations

from .language.errors import DiagnosticError, LoopspecError
from .language import (
    Config,
    Diagnostic,
    Event,
    Policy,
    SpecError,
    Step,
    load_policy,
    load_policy_text,
    validate_file,
    validate_text,
)

__version__ = "0.1.0"

# Imported on first use (PEP 562) so that `loopspec validate` / `check` stay fast to start.
_LAZY = {
    "Turn": "loopspec.engine.turn",
    "TurnResult": "loopspec.engine.results",
    "AwaitingApproval": "loopspec.engine.results",
    "ApprovalSession": "loopspec.engine.approvals",
    "abandon": "loopspec.engine.resume",
    "ResumeError": "loopspec.engine.resume",
    "BadMessages": "loopspec.engine.history",
    "TraceStep": "loopspec.engine.results",
    "TurnCallbacks": "loopspec.engine.machine",
    "run_turn": "loopspec.engine.turn",
    "run_turn_sync": "loopspec.engine.turn",
    "ToolRegistry": "loopspec.engine.tools",
    "Consumers": "loopspec.engine.consumers",
    "RealClock": "loopspec.engine.clock",
    "VirtualClock": "loopspec.engine.clock",
    "ModelRequest": "loopspec.providers.base",
    "LiteLLMProvider": "loopspec.providers.litellm_provider",
    "InProcessProvider": "loopspec.replay.inproc",
    "TurnObserver": "loopspec.engine.observers",
    "OpenTelemetryTracing": "loopspec.engine.tracing",
    "SqliteJournal": "loopspec.journal",
    "JournalStore": "loopspec.journal",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loopspec' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__all__ = [
    *_LAZY,
    "Config",
    "Diagnostic",
    "DiagnosticError",
    "LoopspecError",
    "Event",
    "Policy",
    "SpecError",
    "Step",
    "__version__",
    "load_policy",
    "load_policy_text",
    "validate_file",
    "validate_text",
]
