"""The mutation report (``tools/mutation.py``) shows each module's earlier scores honestly: a pass
that reached none of its mutants is not a score, and a resumed run is not an earlier run."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from _paths import ROOT


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_tool", ROOT / "tools" / "mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_earlier_scores_skip_passes_that_reached_nothing_and_repeat_none() -> None:
    """Passes with no mutant reached are dropped; a score equal to the one shown just before it is
    shown once; different scores keep their order."""
    earlier = [
        {"date": "d1", "detected": 0, "total": 0, "unchecked": 26},
        {"date": "d1", "detected": 4, "total": 8, "unchecked": 30},
        {"date": "d1", "detected": 4, "total": 8, "unchecked": 30},
        {"date": "d1", "detected": 0, "total": 0, "unchecked": 26},
        {"date": "d2", "detected": 7, "total": 8, "unchecked": 0},
        {"date": "d2", "detected": 4, "total": 8, "unchecked": 30},
    ]
    assert _tool()._earlier_scores(earlier) == [
        "4 / 8 (+30 not run) (d1)",
        "7 / 8 (d2)",
        "4 / 8 (+30 not run) (d2)",
    ]


def test_hand_analyses_must_account_for_every_plant(tmp_path: Path) -> None:
    """The committed hand analyses add up (caught + killed + equivalent + open = plants) and are
    rendered; one that does not add up stops the report instead of printing a wrong count."""
    tool = _tool()
    rendered = "\n".join(tool.render_hand(tool.load_hand()))
    assert "## Mutation analyses by hand" in rendered and "test_mutants_turn.py" in rendered
    bad = tmp_path / "hand.toml"
    bad.write_text(
        '[[analysis]]\nmodules = ["m.py"]\ndate = "d"\nplants = 10\ncaught = 5\n'
        'killed_by_new_tests = 3\nequivalent = 1\nopen = 0\ntests = []\n'
    )
    tool.HAND = bad
    with pytest.raises(SystemExit, match="9 plants accounted for, not 10"):
        tool.load_hand()
