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


def _survivor(name: str, change: str, status: str = "survived") -> dict[str, object]:
    return {"name": name, "status": status, "line": 1, "mutation": change}


def _last_run() -> dict[str, object]:
    return {
        "total": 7, "unchecked": 1, "unchecked_names": ["m.x_f__mutmut_9"], "detected": 5,
        "counts": {"killed": 5, "survived": 2, "not checked": 1},
        "survivors": [_survivor("m.x_f__mutmut_1", "`a` → `b`"), _survivor("m.x_f__mutmut_2", "`c` → `d`")],
    }


def test_a_rerun_in_a_fresh_copy_keeps_the_verdicts_it_did_not_rerun() -> None:
    """Rerunning the two survivors in a fresh copy: the one now killed moves to the killed count,
    the one that survives again stays listed, the unreached one stays not checked, and the five
    killed by the last run stay killed although the fresh copy never ran them."""
    fresh = {
        "source_sha": "s",
        "status_of": {"m.x_f__mutmut_1": "killed", "m.x_f__mutmut_2": "survived", "m.x_f__mutmut_3": "not checked"},
        "survivors": [_survivor("m.x_f__mutmut_2", "`c` → `d`")],
    }
    merged = _tool().merge_rerun(_last_run(), fresh, ["m.x_f__mutmut_1", "m.x_f__mutmut_2"])
    assert merged["counts"] == {"killed": 6, "survived": 1, "not checked": 1}
    assert (merged["detected"], merged["total"], merged["unchecked"]) == (6, 7, 1)
    assert [s["name"] for s in merged["survivors"]] == ["m.x_f__mutmut_2"]
    assert merged["unchecked_names"] == ["m.x_f__mutmut_9"]


def test_a_rerun_that_did_not_reach_a_mutant_keeps_its_old_verdict() -> None:
    """A rerun stopped before a named mutant ran leaves that mutant as it was (survived, listed);
    a resumed mutant that ran leaves the not-run list."""
    fresh = {"source_sha": "s", "status_of": {"m.x_f__mutmut_9": "killed"}, "survivors": []}
    merged = _tool().merge_rerun(_last_run(), fresh, ["m.x_f__mutmut_1", "m.x_f__mutmut_9"])
    assert merged["counts"] == {"killed": 6, "survived": 2}
    assert [s["name"] for s in merged["survivors"]] == ["m.x_f__mutmut_1", "m.x_f__mutmut_2"]
    assert merged["unchecked_names"] == [] and merged["unchecked"] == 0


def test_a_rerun_refuses_names_that_now_mean_another_change() -> None:
    """An edit renumbers a function's mutants: a survivor whose change reads differently, or a
    module whose recorded source differs, is refused rather than merged into the wrong verdict."""
    tool = _tool()
    renamed = {"source_sha": "s", "status_of": {"m.x_f__mutmut_2": "survived"},
               "survivors": [_survivor("m.x_f__mutmut_2", "`e` → `f`")]}
    with pytest.raises(tool.RenumberedMutant, match="mutmut_2 now changes"):
        tool.merge_rerun(_last_run(), renamed, ["m.x_f__mutmut_2"])
    edited = {"source_sha": "new", "status_of": {}, "survivors": []}
    with pytest.raises(tool.RenumberedMutant, match="changed since"):
        tool.merge_rerun(dict(_last_run(), source_sha="old"), edited, ["m.x_f__mutmut_2"])


def _analysis(modules: list[str], date: str, plants: int, caught: int, new: int, equivalent: int,
              whole: bool = True) -> dict[str, object]:
    return {"modules": modules, "date": date, "plants": plants, "caught": caught, "killed_by_new_tests": new,
            "equivalent": equivalent, "open": plants - caught - new - equivalent, "whole": whole}


def test_a_modules_standing_is_its_latest_whole_result_and_parts_only_when_nothing_is_whole() -> None:
    """A run stopped early and an analysis of part of a module never stand for the module; the
    latest whole result does (mutmut's, with the survivors its notes settle, or one by hand, alone
    or shared); a module with only parts adds them up; one with nothing says so."""
    tool = _tool()
    tool.MODULES = {"a.py": (), "b.py": (), "c.py": (), "d.py": (), "e.py": ()}
    results = {
        "a.py": {"total": 10, "unchecked": 0, "detected": 7, "date": "d1",
                 "survivors": [_survivor("a.f_1", "x"), _survivor("a.f_2", "y"), _survivor("a.f_3", "z")]},
        "b.py": {"total": 5, "unchecked": 3, "detected": 5, "date": "d9", "survivors": []},
        "e.py": {"total": 0, "unchecked": 0, "detected": 0, "date": "d1", "survivors": []},
    }
    notes = {"a.f_1": {"test": "tests/t.py"}, "a.f_2": {"equivalent": "same"},
             "a.f_3": {"equivalent": "written for another mutation", "mutation": "w"}}
    analyses = [
        _analysis(["a.py"], "d0", 4, 4, 0, 0),                       # older than a's mutmut run
        _analysis(["b.py", "c.py"], "d2", 20, 15, 3, 2),             # shared, whole
        _analysis(["b.py"], "d3", 8, 8, 0, 0, whole=False),         # later, but a part
        _analysis(["d.py"], "d1", 6, 4, 1, 1, whole=False),
        _analysis(["d.py"], "d4", 9, 7, 2, 0, whole=False),
    ]
    rows = {r["module"]: r for r in tool.standing(results, notes, analyses)}
    assert (rows["a.py"]["how"], rows["a.py"]["killed"], rows["a.py"]["equivalent"], rows["a.py"]["open"]) == ("mutmut", 8, 1, 1)
    assert (rows["b.py"]["how"], rows["b.py"]["date"], rows["b.py"]["with"], rows["b.py"]["plants"]) == ("by hand", "d2", ["c.py"], 20)
    assert (rows["c.py"]["killed"], rows["c.py"]["with"]) == (18, ["b.py"])
    assert (rows["d.py"]["how"], rows["d.py"]["date"]) == ("by hand, in parts (2)", "d1, d4")
    assert (rows["d.py"]["plants"], rows["d.py"]["killed"], rows["d.py"]["equivalent"]) == (15, 14, 1)
    assert rows["e.py"]["how"] == "no functions"
    rendered = "\n".join(tool.render_standing(list(rows.values())))
    assert "| `a.py` | mutmut, d1 | 10 | 8 | 1 | 1 | 80.0 % (below 90 %) | 88.9 % |" in rendered
    assert "| `b.py` | by hand, d2 (shared with `c.py`) | 20 | 18 | 2 | 0 | 90.0 % | 100.0 % |" in rendered


def test_a_later_whole_result_replaces_an_earlier_one_and_ties_go_to_the_module_alone() -> None:
    tool = _tool()
    tool.MODULES = {"a.py": ()}
    results = {"a.py": {"total": 10, "unchecked": 0, "detected": 10, "date": "d1", "survivors": []}}
    later = tool.standing(results, {}, [_analysis(["a.py"], "d2", 12, 11, 0, 1)])
    assert (later[0]["how"], later[0]["plants"]) == ("by hand", 12)
    tie = tool.standing({}, {}, [_analysis(["a.py"], "d2", 12, 11, 0, 1), _analysis(["a.py", "z.py"], "d2", 30, 30, 0, 0)])
    assert tie[0]["plants"] == 12, "on one date the module's own analysis beats a shared one"
