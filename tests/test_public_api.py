"""The public surface of ``import loopspec``, pinned (as httpx does): adding or removing a name is a
deliberate change to this list, every listed name resolves, and importing the package stays light."""

from __future__ import annotations

import subprocess
import sys

import loopspec

EXPORTED = [
    "ApprovalSession",
    "AwaitingApproval",
    "BadMessages",
    "Config",
    "Consumers",
    "Diagnostic",
    "DiagnosticError",
    "Event",
    "InProcessProvider",
    "JournalStore",
    "LiteLLMProvider",
    "LoopspecError",
    "ModelRequest",
    "OpenTelemetryTracing",
    "Policy",
    "RealClock",
    "ResumeError",
    "SpecError",
    "SqliteJournal",
    "Step",
    "ToolRegistry",
    "TraceStep",
    "Turn",
    "TurnCallbacks",
    "TurnObserver",
    "TurnResult",
    "VirtualClock",
    "__version__",
    "abandon",
    "load_policy",
    "load_policy_text",
    "run_turn",
    "run_turn_sync",
    "validate_file",
    "validate_text",
]


def test_all_is_pinned() -> None:
    assert sorted(loopspec.__all__) == EXPORTED
    assert len(set(loopspec.__all__)) == len(loopspec.__all__), "a name listed twice"


def test_every_exported_name_resolves() -> None:
    for name in loopspec.__all__:
        assert getattr(loopspec, name) is not None, name


def test_import_loopspec_does_not_import_litellm() -> None:
    code = "import sys, loopspec; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
