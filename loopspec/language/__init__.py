"""The policy language: load, validate and compile a YAML policy into one immutable model."""

from .alphabet import KINDS, OUTCOMES, Event
from .diagnostics import Diagnostic, Position, SpecError
from .model import Config, Policy, State, Step, Transition
from .validate import validate_file, validate_text


def load_policy(path: str) -> Policy:
    """Load and compile a policy file; raise :class:`SpecError` with every diagnostic if it is invalid."""
    policy, diagnostics = validate_file(path)
    if policy is None:
        raise SpecError([d for d in diagnostics if d.severity == "error"])
    return policy


def load_policy_text(text: str, name: str = "<string>") -> Policy:
    """Like :func:`load_policy`, from YAML text (handy in tests and notebooks)."""
    policy, diagnostics = validate_text(text, name)
    if policy is None:
        raise SpecError([d for d in diagnostics if d.severity == "error"])
    return policy


__all__ = [
    "KINDS",
    "OUTCOMES",
    "Config",
    "Diagnostic",
    "Event",
    "Policy",
    "Position",
    "SpecError",
    "State",
    "Step",
    "Transition",
    "load_policy",
    "load_policy_text",
    "validate_file",
    "validate_text",
]
