"""The ``slow`` and ``heavy`` lists in conftest.py name tests that exist.

A renamed test silently leaves its entry behind and runs unmarked: in the quick local run, and in
CI's coverage job, where a heavy test left in costs minutes of the 15-minute budget."""

from __future__ import annotations

import ast
import functools
import os

import pytest

from _syntax import parse
from conftest import MARKERS

HERE = os.path.dirname(os.path.abspath(__file__))


@functools.cache
def _top_level_names(path: str) -> frozenset[str]:
    """Functions, classes and assigned names at the top of a module: what a test id can name."""
    with open(path, encoding="utf-8") as f:
        tree = parse(f.read(), path)
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return frozenset(names)


@pytest.mark.parametrize("marker", sorted(MARKERS))
def test_every_listed_test_exists(marker: str) -> None:
    stale = []
    for entry in sorted(MARKERS[marker]):
        module, _, name = entry.partition("::")
        path = os.path.join(HERE, module)
        if not os.path.isfile(path) or (name and name not in _top_level_names(path)):
            stale.append(entry)
    assert stale == [], f"conftest.py marks {marker} on tests that no longer exist: {stale}"


def test_no_test_is_listed_as_both_slow_and_heavy() -> None:
    """A slow test is already out of every quick run: a heavy entry for it says nothing, and would
    stay behind unnoticed if the test were later taken off the slow list."""
    slow = MARKERS["slow"]
    both = [e for e in sorted(MARKERS["heavy"]) if e in slow or e.partition("::")[0] in slow]
    assert both == []
