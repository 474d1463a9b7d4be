"""The package layers: a module imports only from its own layer or the layers below it, no two
modules import each other in a cycle, and no module takes another module's underscore names.

    language(0) < wire(1) < providers(2) < journal(3) < engine(4) < replay(5) < verify(6) < cli(7) < top level

Top-level modules (loopspec/__init__.py, __main__.py, pytest_plugin.py, strategies.py) sit on top.
Every ``import`` in every module counts, including those inside functions (a lazy import is still a
dependency). See docs/architecture.md for what each layer does.
"""

from __future__ import annotations

import ast
from pathlib import Path

from _paths import ROOT
from _syntax import parse

PACKAGE = ROOT / "loopspec"
LAYERS = ["language", "wire", "providers", "journal", "engine", "replay", "verify", "cli"]
TOP = len(LAYERS)

# Known imports from a higher layer into a lower one, as (importer, imported) module names. This list
# may only shrink: fix the import, then delete its line.
ALLOWED_UPWARD: set[tuple[str, str]] = set()

# Known imports of another loopspec module's underscore (private) names, as (importer, owner, name).
# May only shrink: make the name public in its owner (or move it where it is used), then delete it.
ALLOWED_PRIVATE: set[tuple[str, str, str]] = set()

# Known module-level import cycles, each as a sorted tuple of module names. May only shrink.
ALLOWED_CYCLES: set[tuple[str, ...]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return TOP


def _resolve(target: str) -> str:
    """The module an imported name lives in: ``loopspec.a.b.name`` -> ``loopspec.a.b`` if ``name`` is
    not itself a module."""
    while target not in MODULES and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def _imports(module: str, path: Path) -> set[str]:
    return _imports_in(module, path.read_text(), is_package=path.name == "__init__.py")


def _from_target(module: str, node: ast.ImportFrom, *, is_package: bool) -> str | None:
    """The loopspec module or package a ``from ... import`` names, relative imports resolved; None if
    it is outside loopspec."""
    if node.level:
        base = module.split(".")
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))
    if node.module and node.module.split(".")[0] == "loopspec":
        return node.module
    return None


def _imports_in(module: str, source: str, *, is_package: bool = False) -> set[str]:
    """Every loopspec module ``module`` imports, at any depth in its body (functions, TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "loopspec")
        elif isinstance(node, ast.ImportFrom):
            prefix = _from_target(module, node, is_package=is_package)
            if prefix is None:
                continue
            found.add(prefix)
            found.update(f"{prefix}.{a.name}" for a in node.names if a.name != "*")
    # `from pkg import name` adds both pkg and pkg.name; keep pkg.name only when it is a module.
    return {_resolve(t) for t in found if _resolve(t) != module}


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def test_every_module_is_seen() -> None:
    assert {"loopspec", "loopspec.language.model", "loopspec.cli.main"} <= set(MODULES)
    assert GRAPH["loopspec.engine.interpreter"], "the interpreter imports something from loopspec"


def test_no_import_reaches_up_a_layer() -> None:
    upward = {
        (m, t) for m, targets in GRAPH.items() for t in targets if _layer(t) > _layer(m)
    }
    assert upward - ALLOWED_UPWARD == set(), "imports from a higher layer into a lower one"
    assert ALLOWED_UPWARD - upward == set(), "fixed: delete these from ALLOWED_UPWARD"


def _cycles() -> set[tuple[str, ...]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: set[tuple[str, ...]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in MODULES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(tuple(sorted(comp)))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_modules() -> None:
    cycles = _cycles()
    assert cycles - ALLOWED_CYCLES == set(), "modules that import each other, directly or not"
    assert ALLOWED_CYCLES - cycles == set(), "fixed: delete these from ALLOWED_CYCLES"


def test_the_checker_catches_an_upward_import() -> None:
    """Not vacuous: a relative import inside a function, out of language/ into engine/, is seen."""
    src = "def f():\n    from ..engine import interpreter\n"
    found = _imports_in("loopspec.language.model", src)
    assert "loopspec.engine.interpreter" in found
    assert _layer("loopspec.engine.interpreter") > _layer("loopspec.language.model")
    assert _imports_in("loopspec.cli", "from .main import main\n", is_package=True) == {"loopspec.cli.main"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_uses_in(module: str, source: str, *, is_package: bool = False) -> set[tuple[str, str, str]]:
    """(module, owner, name) for every underscore name ``module`` takes from another loopspec module:
    ``from owner import _name``, or ``owner_alias._name`` on an imported loopspec module."""
    found: set[tuple[str, str, str]] = set()
    tree = parse(source)
    aliases: dict[str, str] = {}  # local name -> the loopspec module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "loopspec" and a.asname:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            owner = _from_target(module, node, is_package=is_package)
            if owner is None:
                continue
            for a in node.names:
                if f"{owner}.{a.name}" in MODULES:
                    aliases[a.asname or a.name] = f"{owner}.{a.name}"
                elif _private(a.name) and owner != module:
                    found.add((module, owner, a.name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _private(node.attr):
            owner = aliases.get(node.value.id)
            if owner is not None and owner != module:
                found.add((module, owner, node.attr))
    return found


PRIVATE_USES = {
    use for m, p in MODULES.items() for use in _private_uses_in(m, p.read_text(), is_package=p.name == "__init__.py")
}


def test_no_module_takes_another_modules_private_names() -> None:
    """A name one module uses from another is that module's interface: public, with a docstring."""
    assert PRIVATE_USES - ALLOWED_PRIVATE == set(), "make these names public in their owner, or move them"
    assert ALLOWED_PRIVATE - PRIVATE_USES == set(), "fixed: delete these from ALLOWED_PRIVATE"


def test_the_checker_catches_a_private_import() -> None:
    """Not vacuous: relative, absolute and aliased uses of another module's underscore name are seen;
    a dunder, a public name and a module's own names are not."""
    src = (
        "from .tools import _result_text, ToolCall, __doc__\n"
        "from loopspec.engine import history\n"
        "import loopspec.engine.clock as clock\n"
        "def f():\n"
        "    from ..wire.classify import _tool_names\n"
        "    return history._keep(), clock._now, clock.RealClock\n"
    )
    assert _private_uses_in("loopspec.engine.turn", src) == {
        ("loopspec.engine.turn", "loopspec.engine.tools", "_result_text"),
        ("loopspec.engine.turn", "loopspec.wire.classify", "_tool_names"),
        ("loopspec.engine.turn", "loopspec.engine.history", "_keep"),
        ("loopspec.engine.turn", "loopspec.engine.clock", "_now"),
    }
    assert _private_uses_in("loopspec.engine.turn", "from .turn import _helper\n") == set()
