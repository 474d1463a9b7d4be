"""``ast.parse`` that CPython 3.11's "AST constructor recursion depth mismatch" cannot hit.

CPython 3.11 keeps the depth counter that checks the tree it builds in one place per interpreter.
When a garbage collection in the middle of building a tree finalizes something whose finalizer
parses too, the counter is reset under the outer parse, which then fails with that SystemError.
In this suite the finalizer is an abandoned litellm coroutine: pytest's unraisable-exception hook
formats its traceback, and 3.11's ``traceback`` parses the failing line to place its carets. Which
test is parsing when that collection runs depends on test order, so it failed one CI run in many.
Holding the collector off for the parse leaves no Python code to run inside it.
"""

from __future__ import annotations

import ast
import gc


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source, filename)
    finally:
        if was_enabled:
            gc.enable()
