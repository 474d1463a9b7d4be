"""``ast.parse`` that survives CPython 3.11's "AST constructor recursion depth mismatch".

After a RecursionError elsewhere in the process (the hostile deep-YAML tests provoke some on
purpose), CPython 3.11.7 can fail every later ``ast.parse`` with that SystemError; which xdist
worker hits it depends on test order. The source is then parsed in a fresh interpreter.
"""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys

_FRESH = "import ast, pickle, sys; sys.stdout.buffer.write(pickle.dumps(ast.parse(sys.stdin.read())))"


def parse(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SystemError:
        done = subprocess.run([sys.executable, "-c", _FRESH], input=source.encode(), capture_output=True, check=True)
        tree = pickle.loads(done.stdout)
        assert isinstance(tree, ast.Module)
        return tree
