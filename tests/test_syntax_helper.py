"""The suite's ``parse`` (``tests/_syntax.py``) holds when a collection mid-parse runs a finalizer
that parses too, as pytest's unraisable hook does on CPython 3.11 for an abandoned coroutine.

That finalizer failed a CI run with "AST constructor recursion depth mismatch" in
``test_markers.py``; this reproduces it on purpose, many times over, in one process."""

from __future__ import annotations

import ast
import gc
import sys
from collections.abc import Callable, Iterator

import pytest

from _syntax import parse

SOURCE = "\n".join(f"def f{i}(x):\n    return [y * {i} for y in x if y]" for i in range(200))


class _ParsesWhenCollected:
    """A cycle (so only the collector frees it) whose finalizer parses, like 3.11's traceback."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        ast.parse("a + b * c")


@pytest.fixture
def eager_collector() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(50)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _parse_among_finalizers(parser: Callable[[str], object]) -> int:
    failures = 0
    for _ in range(100):
        _ParsesWhenCollected()
        try:
            parser(SOURCE)
        except SystemError:
            failures += 1
    return failures


def test_parse_survives_a_finalizer_that_parses_during_a_collection(eager_collector: None) -> None:
    assert _parse_among_finalizers(parse) == 0
    assert gc.isenabled(), "parse left the collector off"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the shared depth counter is a 3.11 fault")
def test_plain_ast_parse_fails_the_same_way_on_this_interpreter(eager_collector: None) -> None:
    """Without this, the test above could pass only because the hazard never arose."""
    assert _parse_among_finalizers(ast.parse) > 0
