"""Every exception loopspec raises on purpose has one root, and file errors share one base."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import loopspec
from loopspec import DiagnosticError, LoopspecError, load_policy_text

from _syntax import parse

PACKAGE = Path(loopspec.__file__).parent


def _exception_classes() -> list[tuple[str, str, list[str]]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                if node.name.endswith(("Error", "Exception", "Timeout", "Broken", "Exhausted", "Replayable", "Provider", "Skip", "Dropped")) and bases:
                    out.append((str(path.relative_to(PACKAGE)), node.name, bases))
    return out


def test_every_exception_class_derives_from_the_root() -> None:
    """No exception class in the package derives from a builtin exception alone."""
    builtin = {"Exception", "ValueError", "RuntimeError", "LookupError", "KeyError", "TypeError", "OSError"}
    found = _exception_classes()
    assert len(found) >= 12, found
    strays = [(f, n, b) for f, n, b in found if set(b) <= builtin and n != "LoopspecError"]
    assert not strays, strays


def test_a_bad_policy_is_a_diagnostic_error_with_positions() -> None:
    with pytest.raises(DiagnosticError) as info:
        load_policy_text("loopspec: 1\ninitial: nowhere\nstates: {}\n", "bad.yaml")
    assert isinstance(info.value, LoopspecError)
    assert info.value.diagnostics and all(d.file == "bad.yaml" for d in info.value.diagnostics)


def test_unreadable_yaml_is_a_diagnostic_error_too() -> None:
    from loopspec.language.yamlsource import LoadError, load_yaml_text

    with pytest.raises(DiagnosticError) as info:
        load_yaml_text("a: [b\n", "broken.yaml")
    assert isinstance(info.value, LoadError) and info.value.diagnostic is info.value.diagnostics[0]
