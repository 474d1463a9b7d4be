"""loopspec: an LLM agent's turn lifecycle as a YAML state machine.

The policy language (load, validate, compile) is imported eagerly; it is small and never imports
litellm. Everything that talks to a model is imported on first use, so ``loopspec validate`` and
``loopspec check`` start fast.
"""

from __future__ import annotations

from .spec import (
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

__all__ = [
    "Config",
    "Diagnostic",
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
