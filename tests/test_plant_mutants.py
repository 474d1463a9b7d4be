"""The mutant-planting driver (``tools/plant_mutants.py``) plants exactly mutmut's mutant: the
planted module compiles, keeps the real function's name, and differs from the real module only
where the mutant does. Needs mutmut (the ``mutation`` extra); skipped without it."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from _paths import ROOT
from _syntax import parse

pytest.importorskip("mutmut")
if "mutmut" in (ROOT / "loopspec" / "engine" / "budgets.py").read_text():
    # run by mutmut itself (tools/mutation.py): the tree is its mutated copy, which carries its
    # trampolines and cannot be mutated again; the driver plants into the real source
    pytest.skip("inside mutmut's mutated copy of the tree", allow_module_level=True)


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plant_mutants_tool", ROOT / "tools" / "plant_mutants.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while they are built
    spec.loader.exec_module(module)
    return module


def test_every_planted_mutant_compiles_keeps_its_names_and_changes_only_its_function() -> None:
    tool = _tool()
    module = "loopspec/engine/budgets.py"
    real = (ROOT / module).read_text()
    real_defs = sorted(n.name for n in ast.walk(parse(real)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    planted = tool.plants(module)
    assert len(planted) > 20
    for p in planted:
        tree = parse(p.source)
        assert sorted(n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))) == real_defs, p.name
        assert "mutmut" not in p.source and p.source != real
        changed = [line for line in p.diff.splitlines() if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))]
        assert changed, p.name


def test_a_function_and_numbers_select_the_plants() -> None:
    tool = _tool()
    chosen = tool.plants("loopspec/engine/clock.py", function="bounded", only={1, 2})
    assert [p.name for p in chosen] == ["x_bounded__mutmut_1", "x_bounded__mutmut_2"]
    assert all(p.function == "bounded" for p in chosen)


def test_the_driver_plants_from_any_working_directory(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """mutmut reads its configuration from the working directory, once per process: a test that
    moved it before the first plant must not make planting fail."""
    from mutmut import configuration

    monkeypatch.setattr(configuration, "_config", None)
    monkeypatch.chdir(str(tmp_path))
    chosen = _tool().plants("loopspec/engine/clock.py", function="bounded", only={1})
    assert [p.name for p in chosen] == ["x_bounded__mutmut_1"]


def test_a_plant_by_coverage_runs_the_covering_tests_with_the_selections_options() -> None:
    """``--by-coverage`` replaces the selection's paths by the node ids that reached the function,
    keeping its options (a marker, a deselect); a function nothing reached keeps the whole selection."""
    tool = _tool()
    selection = ["tests/engine", "-m", "not slow", "--deselect", "tests/engine/test_approval_pause.py::test_x"]
    ids = ["tests/engine/test_waits.py::test_a", "tests/engine/test_waits.py::test_b[1]"]
    assert tool.narrowed(selection, ids) == ["-m", "not slow", "--deselect", "tests/engine/test_approval_pause.py::test_x", *ids]
    assert tool.narrowed(selection, []) == selection


def test_the_mapping_run_measures_the_whole_selection_even_when_a_test_fails() -> None:
    tool = _tool()
    selection = ["tests/verify", "-m", "not slow", "-x", "-q", "--exitfirst", "--maxfail=2", "-p", "no:randomly"]
    assert tool.to_map(selection) == ["tests/verify", "-m", "not slow", "-q", "-p", "no:randomly"]
    assert tool.to_map(["tests/verify", "--maxfail", "3", "-q"]) == ["tests/verify", "-q"]  # its value too


def test_a_plant_with_no_test_to_run_is_not_counted_killed(tmp_path: Any) -> None:
    """pytest's own errors say nothing of the plant: a selection that names a test no longer there
    (kept coverage data, a test renamed since) or collects none is "error", and only a failing test
    kills. The stale ids once counted dozens of plants killed."""
    tool = _tool()
    (tmp_path / "test_m.py").write_text("import m\n\ndef test_one():\n    assert m.x == 1\n")
    (tmp_path / "test_empty.py").write_text("")
    plant = tool.Plant("x_f__mutmut_1", "f", "x = 2\n", "")
    (tmp_path / "m.py").write_text("x = 1\n")

    def result(*tests: str) -> str:
        return str(tool.run_plant(plant, "m.py", tmp_path, list(tests), 60).result)

    assert result("test_m.py::test_gone") == "error"
    assert result("test_empty.py") == "error"
    assert result("test_m.py") == "killed"
    assert (tmp_path / "m.py").read_text() == "x = 1\n", "the module is restored"


def test_kept_coverage_data_drops_the_tests_that_are_gone() -> None:
    """The tests a selection collects today, by node id: a renamed test is not among them."""
    found = _tool().collected(["tests/test_plant_mutants.py"])
    here = Path(__file__)
    names = [n.name for n in parse(here.read_text()).body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    assert found == {f"tests/test_plant_mutants.py::{name}" for name in names}
