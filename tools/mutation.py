"""Mutation testing of loopspec's core modules with mutmut, a module (or a group) at a time.

Why a script of its own: a full run takes hours on two cores, so it is never part of `.ci/run`.
It runs mutmut over the modules named (or `--all`), records each module's result in
`tools/mutation_results.json`, and rewrites `docs/quality.md` from those results and the verdicts
on surviving mutants kept in `tools/mutation_notes.toml`.

    python tools/mutation.py loopspec/replay/redact.py      # one module
    python tools/mutation.py --all                          # every module in MODULES
    python tools/mutation.py --report                       # only rewrite docs/quality.md
    python tools/mutation.py --together loopspec/verify/*.py  # one pass, one mapping run

Each module runs in a fresh `mutants/` copy of the tree, in a child process of its own (mutmut
keeps its state in module globals and pytest caches imports). mutmut first runs the selected tests
once to learn which tests call which function, then runs each mutant against only those tests,
with `-x`, at most two at a time, under the Hypothesis `ci` profile and at nice 10.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "tools" / "mutation_results.json"
NOTES = ROOT / "tools" / "mutation_notes.toml"
HAND = ROOT / "tools" / "hand_mutation.toml"
REPORT = ROOT / "docs" / "quality.md"

# The modules under mutation testing, each with the tests mutmut maps and runs against it. This
# list only grows: a module leaves it only when the module itself leaves the code base. The default
# is the suite without the slow tests; the transports are exercised mostly by the slow tests (real
# sockets), and the checker by its own tests, the CLI's and the language's (the soundness reference
# among them, some marked slow): the HTTP tests, timing-sensitive under a loaded machine, stay out
# of the checker's selection, so one flaky run cannot void a whole pass.
FAST = ("tests", "-m", "not slow")
CHECKER = ("tests/verify", "tests/cli", "tests/language")
EVERYTHING = ("tests",)
MODULES: dict[str, tuple[str, ...]] = {
    # the semantics
    "loopspec/language/model.py": FAST,
    "loopspec/language/guards.py": FAST,
    "loopspec/language/actions.py": FAST,
    "loopspec/language/step.py": FAST,
    "loopspec/language/properties.py": FAST,
    "loopspec/language/templates.py": FAST,
    # the checker
    **{f"loopspec/verify/{p.name}": CHECKER for p in sorted((ROOT / "loopspec" / "verify").glob("*.py"))},
    # the interpreter
    "loopspec/engine/turn.py": FAST,
    "loopspec/engine/machine.py": FAST,
    "loopspec/engine/resume.py": FAST,
    "loopspec/engine/journaling.py": FAST,
    "loopspec/engine/tracing.py": FAST,
    "loopspec/engine/history.py": FAST,
    "loopspec/engine/tools.py": FAST,
    "loopspec/engine/model_call.py": FAST,
    "loopspec/engine/tool_batch.py": FAST,
    "loopspec/engine/guardrails.py": FAST,
    "loopspec/engine/budgets.py": FAST,
    "loopspec/engine/clock.py": FAST,
    "loopspec/engine/observers.py": FAST,
    "loopspec/engine/consumers.py": FAST,
    "loopspec/engine/crash_hook.py": FAST,
    # the journal a resumable turn writes before each effect
    "loopspec/journal/store.py": FAST,
    "loopspec/wire/classify.py": FAST,
    "loopspec/wire/assemble.py": FAST,
    # redaction
    "loopspec/replay/redact.py": FAST,
    "loopspec/wire/redaction.py": FAST,
    # approvals
    "loopspec/language/approvals.py": FAST,
    "loopspec/engine/approvals.py": FAST,
    # the replay transports, and the chunk conversion both transports and the live path share
    "loopspec/providers/chunks.py": FAST,
    # the live provider: what goes on the wire to litellm and how its answer is read
    "loopspec/providers/litellm_provider.py": EVERYTHING,
    # the cache of read cassettes: a stale entry would replay a cassette that is no longer on disk
    "loopspec/replay/cassette_cache.py": FAST,
    # what both replay transports play: a cassette's interactions rendered as SSE, plans and bodies
    "loopspec/replay/interactions.py": EVERYTHING,
    "loopspec/replay/inproc.py": EVERYTHING,
    "loopspec/replay/http.py": EVERYTHING,
    "loopspec/replay/server.py": EVERYTHING,
    # replaying a cassette: what the turn is handed and how its result is reported
    "loopspec/replay/harness.py": EVERYTHING,
    # judging a replayed turn: its expectations, the first step its decisions part from the trace
    "loopspec/replay/judge.py": EVERYTHING,
    # the promotion gate of loopspec diff and the report a CI job posts
    "loopspec/replay/gate.py": FAST,
    # which cassette a journaled replay read, so a cut replay can be finished
    "loopspec/replay/journal_note.py": EVERYTHING,
    # the tools a replay runs, and the cancellation a cassette names
    "loopspec/replay/recorded_tools.py": EVERYTHING,
    "loopspec/replay/cancel.py": EVERYTHING,
    # the turn's own time over HTTP, which a cassette's expect.elapsed is judged on
    "loopspec/replay/turn_time.py": EVERYTHING,
}

MAX_JOBS = 2  # the machine has two cores, shared with other work
DETECTED = {"killed", "timeout", "caught by type check"}


def selection_args(modules: list[str]) -> list[str]:
    """pytest arguments for mutmut's mapping run: the selections of the modules, together."""
    selections = {MODULES[m] for m in modules}
    if len(selections) == 1:
        return list(selections.pop())
    if EVERYTHING in selections or any(s == FAST for s in selections):
        return list(EVERYTHING)  # two selections that differ: every test, to miss none
    return sorted({arg for s in selections for arg in s})


# ------------------------------------------------------------------------------------ the worker
def worker(modules: list[str], jobs: int, names: list[str]) -> None:
    """Run mutmut over some modules (or only the mutants named), in this process: a fresh child of
    `main`, since mutmut keeps its state in module globals and pytest caches imports."""
    from mutmut import configuration
    from mutmut.__main__ import _run

    # a job started in the background (`cmd &`) inherits SIGINT ignored, and --max-minutes stops
    # a run with SIGINT: take the default handler back, so the stop lands
    signal.signal(signal.SIGINT, signal.default_int_handler)

    cfg = configuration.config()
    configuration._config = dataclasses.replace(
        cfg,
        only_mutate=modules,
        pytest_add_cli_args_test_selection=selection_args(modules),
    )
    _run(names, jobs)


# ----------------------------------------------------------------------------- reading results
def function_start(source: str, func: str, cls: str | None) -> int:
    """First line (decorators included) of a function or method in the original source."""
    tree = ast.parse(source)
    scope: list[ast.stmt] = tree.body
    if cls is not None:
        scope = next(n.body for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    node = next(
        n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == func
    )
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    # mutmut's diff starts at the comments directly above the function (libcst keeps them with it)
    lines = source.splitlines()
    while start > 1 and (not lines[start - 2].strip() or lines[start - 2].lstrip().startswith("#")):
        start -= 1
    while not lines[start - 1].strip():
        start += 1
    return start


def describe(diff: str, start: int) -> tuple[int, str]:
    """The file line of a mutant's first change and the change itself (`old` → `new`)."""
    rel = 0
    removed: list[str] = []
    added: list[str] = []
    first = 0
    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            continue
        m = re.match(r"@@ -(\d+)", line)
        if m:
            rel = int(m.group(1))
            continue
        if line.startswith("-"):
            first = first or rel
            removed.append(line[1:].strip())
            rel += 1
        elif line.startswith("+"):
            first = first or rel
            added.append(line[1:].strip())
        else:
            rel += 1
    change = f"`{' '.join(removed)}` → `{' '.join(added)}`" if removed else f"adds `{' '.join(added)}`"
    return start + first - 1, change


def collect(module: str) -> dict[str, Any]:
    """Read mutmut's verdicts for one module from `mutants/` after its run."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key

    meta_path = ROOT / "mutants" / f"{module}.meta"
    # no meta file: the module has no function bodies, the only code mutmut 3 mutates
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {"exit_code_by_key": {}}
    statuses = {k: status_by_exit_code[v] for k, v in meta["exit_code_by_key"].items()}
    source = (ROOT / module).read_text()
    survivors = []
    os.chdir(ROOT)
    for name, status in sorted(statuses.items(), key=lambda kv: _mutant_order(kv[0])):
        if status in DETECTED or status == "not checked":
            continue
        func, cls = orig_function_and_class_names_from_key(name)
        diff = get_diff_for_mutant(name, path=module)
        line, change = describe(diff, function_start(source, func, cls))
        survivors.append({"name": name, "status": status, "line": line, "mutation": change})
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    return {
        "source_sha": hashlib.sha256(source.encode()).hexdigest(),
        "status_of": statuses,
        "total": len(statuses) - counts.get("not checked", 0),
        "unchecked": counts.get("not checked", 0),
        "unchecked_names": sorted((k for k, v in statuses.items() if v == "not checked"), key=_mutant_order),
        "detected": sum(n for s, n in counts.items() if s in DETECTED),
        "counts": counts,
        "survivors": survivors,
    }


class RenumberedMutant(Exception):
    """A rerun in a fresh copy whose mutant names no longer mean what the last run's did."""


def merge_rerun(last: dict[str, Any], fresh: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A module's record after rerunning some of its mutants in a fresh `mutants/` copy.

    A fresh copy knows only the verdicts of the mutants it ran; every other mutant keeps the verdict
    of the last run (its killed ones are counts, not names), and so does a named one the rerun did
    not reach. A rerun mutant's name must still mean the same change: mutmut numbers the mutants of
    a function in order, so an edit of the function renumbers them. A module whose source differs
    from the one the last run recorded, or a name whose change reads differently now, raises
    :class:`RenumberedMutant`."""
    if last.get("source_sha") and last["source_sha"] != fresh["source_sha"]:
        raise RenumberedMutant("the module changed since its last run")
    old_by_name = {s["name"]: s for s in last["survivors"]}
    old_status = {n: "not checked" for n in last.get("unchecked_names", [])}
    old_status.update({n: s["status"] for n, s in old_by_name.items()})
    new_by_name = {s["name"]: s for s in fresh["survivors"]}
    for name, record in new_by_name.items():
        if name in old_by_name and record["mutation"] != old_by_name[name]["mutation"]:
            raise RenumberedMutant(f"{name} now changes {record['mutation']}, not {old_by_name[name]['mutation']}")
    new_status = {}
    for name in names:
        status = fresh["status_of"].get(name, "not checked")
        new_status[name] = old_status[name] if status == "not checked" else status
    counts = dict(last["counts"])
    for name in names:
        counts[old_status[name]] -= 1
        counts[new_status[name]] = counts.get(new_status[name], 0) + 1
    counts = {k: v for k, v in counts.items() if v}
    survivors = [s for s in last["survivors"] if s["name"] not in names]
    for name in names:
        if new_status[name] in DETECTED or new_status[name] == "not checked":
            continue
        survivors.append(new_by_name.get(name) or old_by_name[name])
    return {
        "total": sum(counts.values()) - counts.get("not checked", 0),
        "unchecked": counts.get("not checked", 0),
        "unchecked_names": [n for n in last.get("unchecked_names", []) if new_status.get(n, "not checked") == "not checked"],
        "detected": sum(n for s, n in counts.items() if s in DETECTED),
        "counts": counts,
        "survivors": sorted(survivors, key=lambda s: _mutant_order(s["name"])),
        "source_sha": fresh["source_sha"],
    }


def _mutant_order(name: str) -> tuple[str, int]:
    stem, _, number = name.rpartition("__mutmut_")
    return stem, int(number)


# ---------------------------------------------------------------------------------- the report
def load_results() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def load_notes() -> dict[str, dict[str, str]]:
    """Verdicts on survivors, keyed by mutant name; each says `test` (fixed by) or `equivalent`."""
    return tomllib.loads(NOTES.read_text()) if NOTES.exists() else {}


def load_hand() -> list[dict[str, Any]]:
    """The mutation analyses done by hand (``[[analysis]]`` tables), for modules mutmut has not
    reached or does not reach well (see HAND_INTRO)."""
    if not HAND.exists():
        return []
    analyses: list[dict[str, Any]] = tomllib.loads(HAND.read_text()).get("analysis", [])
    for a in analyses:
        accounted = a["caught"] + a["killed_by_new_tests"] + a["equivalent"] + a["open"]
        if accounted != a["plants"]:
            raise SystemExit(f"{HAND.name}: {', '.join(a['modules'])}: {accounted} plants accounted for, not {a['plants']}")
    return analyses


def render_hand(analyses: list[dict[str, Any]]) -> list[str]:
    if not analyses:
        return []
    out = ["## Mutation analyses by hand", "", HAND_INTRO, ""]
    out.append("| modules | date | plants | caught by the suite | killed by new tests | equivalent | open | tests written |")
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for a in analyses:
        out.append(
            f"| {_code_list(a['modules'])} | {a['date']} | {a['plants']} | {a['caught']} | {a['killed_by_new_tests']} "
            f"| {a['equivalent']} | {a['open']} | {_code_list(a['tests'])} |"
        )
    out.append("")
    for a in analyses:
        if a.get("note"):
            out.append(f"- {_code_list(a['modules'])}: {a['note']}")
    out.append("")
    return out


def standing(results: dict[str, Any], notes: dict[str, dict[str, str]],
             analyses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each listed module's latest result that reached all of its mutants: a mutmut run that was not
    stopped early, or an analysis by hand that planted every one (alone, or with other modules, whose
    counts it then shares); failing both, the analyses of parts of it, added up. A survivor of a
    mutmut run counts as killed when a note for its mutation names the test written for it, as
    equivalent when such a note explains it, and as open otherwise (as :func:`verdict` says)."""
    rows: list[dict[str, Any]] = []
    for module in MODULES:
        found: list[dict[str, Any]] = []
        r = results.get(module)
        if r is not None and not r["total"] and not r.get("unchecked"):
            rows.append({"module": module, "how": "no functions"})  # mutmut 3 mutates function bodies only
            continue
        if r is not None and r["total"] and not r.get("unchecked"):
            verdicts = [_note_for(s, notes) for s in r["survivors"]]
            fixed = sum(1 for v in verdicts if "test" in v)
            equivalent = sum(1 for v in verdicts if "equivalent" in v and "test" not in v)
            found.append({"how": "mutmut", "date": r["date"], "with": [], "plants": r["total"],
                          "killed": r["detected"] + fixed, "equivalent": equivalent,
                          "open": r["total"] - r["detected"] - fixed - equivalent})
        for a in analyses:
            if module in a["modules"] and a.get("whole", True):
                found.append({"how": "by hand", "date": a["date"], "with": [m for m in a["modules"] if m != module],
                              **_hand_counts([a])})
        if not found:
            # no whole result: the analyses of parts of this module alone, added up (the halves of
            # a module planted in two sessions make it whole between them)
            parts = [a for a in analyses if a["modules"] == [module]]
            if parts:
                dates = ", ".join(sorted({a["date"] for a in parts}))
                rows.append({"module": module, "how": f"by hand, in parts ({len(parts)})", "date": dates, "with": [],
                             **_hand_counts(parts)})
            else:
                rows.append({"module": module, "how": None})
            continue
        # the latest date wins; on one date an analysis of the module alone beats a shared one, and
        # a later entry (the files keep their order of writing) an earlier one
        best = max(enumerate(found), key=lambda ix: (ix[1]["date"], not ix[1]["with"], ix[0]))[1]
        rows.append({"module": module, **best})
    return rows


def _note_for(survivor: dict[str, Any], notes: dict[str, dict[str, str]]) -> dict[str, str]:
    """The note on a survivor, or none when it was written for another mutation (the function
    changed since, and mutmut renumbered its mutants)."""
    note = notes.get(survivor["name"], {})
    return {} if note.get("mutation") and note["mutation"] != survivor["mutation"] else note


def _hand_counts(analyses: list[dict[str, Any]]) -> dict[str, int]:
    return {"plants": sum(a["plants"] for a in analyses),
            "killed": sum(a["caught"] + a["killed_by_new_tests"] for a in analyses),
            "equivalent": sum(a["equivalent"] for a in analyses), "open": sum(a["open"] for a in analyses)}


def render_standing(rows: list[dict[str, Any]]) -> list[str]:
    out = ["## Where each module stands", "", STANDING_INTRO, ""]
    out.append("| module | latest whole result | mutants | killed | equivalent | open | killed / all | killed / all but equivalent |")
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        if row["how"] is None:
            out.append(f"| `{row['module']}` | none yet | | | | | | |")
            continue
        if row["how"] == "no functions":
            out.append(f"| `{row['module']}` | no mutants (no functions) | 0 | | | | | |")
            continue
        shared = f" (shared with {_code_list(row['with'])})" if row["with"] else ""
        score = 100.0 * row["killed"] / row["plants"]
        real = row["plants"] - row["equivalent"]
        net = f"{100.0 * row['killed'] / real:.1f} %" if real else "—"
        mark = "" if score >= 90 else " (below 90 %)"
        out.append(f"| `{row['module']}` | {row['how']}, {row['date']}{shared} | {row['plants']} | {row['killed']} "
                   f"| {row['equivalent']} | {row['open']} | {score:.1f} %{mark} | {net} |")
    out.append("")
    return out


STANDING_INTRO = """One row per module of the list: its latest result that reached every one of its mutants, from
the mutmut runs (next section) or the analyses by hand (after them), whichever is later; where
none did, the analyses of parts of the module (some of its functions, or bugs chosen by hand),
added up. *killed* counts the mutants a test fails on, the suite's at the time and the tests
written for the survivors; *equivalent* the survivors that change nothing a caller can observe, each explained
where its result is listed. A result shared with other modules counts them together. The target
is at least 90 % killed; an equivalent mutant cannot be killed, so the last column leaves them
out."""


def _code_list(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


HAND_INTRO = """Where mutmut has not reached a module yet (its run takes hours), or reaches it poorly, bugs
were planted the way a mutation tool does, by hand or with `tools/plant_mutants.py`, which plants
mutmut's own mutants of a module in a scratch copy of the tree and runs the tests named against each:
one small change at a time (a flipped comparison, an off-by-one, a dropped statement or condition,
a changed constant), the covering tests run against each, the file restored after each. A plant the suite let live was then
killed by a new test (replanted to confirm), explained as equivalent, or is counted open. These counts are not
mutmut scores and are not in the table above; a later mutmut run of the module replaces them.

<!-- doctest: skip runs for minutes; a check of its own -->
```sh
python tools/plant_mutants.py loopspec/engine/budgets.py --by-coverage --jobs 2 -- tests/engine -m "not slow"
```

`--by-coverage` maps each function to the tests that reach it in one run under coverage first,
and runs each plant against only those (a module that a few tests of a large selection reach
costs minutes, not hours); `--function` and `--only` pick plants, `--show` prints their diffs."""


def verdict(survivor: dict[str, Any], notes: dict[str, dict[str, str]]) -> str:
    note = notes.get(survivor["name"])
    if note is None:
        return "**open**"
    if note.get("mutation") and note["mutation"] != survivor["mutation"]:
        return "**open** (the note is for another mutation; the function changed)"
    if "test" in note:
        return f"fixed by `{note['test']}` (survived this run: rerun the module)"
    return f"equivalent: {note['equivalent']}"


def render(results: dict[str, Any], notes: dict[str, dict[str, str]]) -> str:
    out = [HEADER]
    out += render_standing(standing(results, notes, load_hand()))
    out.append("## Scores")
    out.append("")
    out.append("| module | killed / total | score | time | run on | tests | earlier runs |")
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    for module in MODULES:
        r = results.get(module)
        if r is None:
            out.append(f"| `{module}` | not yet run | | | | | |")
            continue
        if r["total"]:
            score = f"{100.0 * r['detected'] / r['total']:.1f} %"
        elif r.get("unchecked"):
            score = "none reached yet"  # a stopped run ran out of time before this module's mutants
        else:
            score = "no mutants (no functions)"
        minutes = f"{r['seconds'] / 60:.0f} min"
        tests = f"`{shlex.join(r['selection'])}`" if r["selection"] else "—"
        earlier = ", ".join(_earlier_scores(r.get("earlier", [])))
        of = f" (stopped early: {r['unchecked']} more not run)" if r.get("unchecked") else ""
        out.append(
            f"| `{module}` | {r['detected']} / {r['total']}{of} | {score} | {minutes} | {r['date']} "
            f"| {tests} | {earlier} |"
        )
    out.append("")
    out.append(SCORES_NOTE)
    out.append("")
    out += render_hand(load_hand())
    out.append("## Surviving mutants")
    out.append("")
    out.append(SURVIVORS_INTRO)
    for module in MODULES:
        r = results.get(module)
        if r is None:
            continue
        out.append(f"### `{module}`")
        out.append("")
        if not r["total"]:
            out.append("No mutants: mutmut 3 mutates function bodies, and this module has none.")
            out.append("")
            continue
        if not r["survivors"]:
            out.append("None: every mutant was killed.")
            out.append("")
            continue
        out.append("| where | mutation | mutmut | verdict |")
        out.append("| --- | --- | --- | --- |")
        for s in r["survivors"]:
            mutation = s["mutation"].replace("|", "\\|")
            out.append(f"| {module}:{s['line']} | {mutation} | {s['status']} | {verdict(s, notes)} |")
        out.append("")
    fixed = fixed_since(results, notes)
    if fixed:
        out.append(FIXED_INTRO)
        out.append("| module | mutant | mutation | killed by |")
        out.append("| --- | --- | --- | --- |")
        for module, name, note in fixed:
            mutation = note.get("mutation", "").replace("|", "\\|")
            out.append(f"| `{module}` | `{name.rpartition('.')[2]}` | {mutation} | `{note['test']}` |")
        out.append("")
    return "\n".join(out)


def fixed_since(results: dict[str, Any], notes: dict[str, dict[str, str]]) -> list[tuple[str, str, dict[str, str]]]:
    """Notes naming a test whose mutant no longer survives: the record of what each new test kills."""
    rows = []
    for name, note in notes.items():
        if "test" not in note:
            continue
        module = note["module"]
        r = results.get(module)
        if r is None or any(s["name"] == name for s in r["survivors"]):
            continue
        rows.append((module, name, note))
    return sorted(rows, key=lambda row: (row[0], _mutant_order(row[1])))


HEADER = """# Quality: mutation testing

A mutation test plants one small bug (a *mutant*: `<` for `<=`, `None` for a value, a dropped
argument) in a copy of the code and runs the tests that call the mutated function. A mutant the
tests still pass on *survived*: either no test holds that behaviour, or the mutant is *equivalent*
(it changes nothing observable). The score of a module is killed / total; the target is at least
90 % in each module below, and the list of modules only grows.

This file is written by `tools/mutation.py`; do not edit it by hand. Verdicts on survivors live
in `tools/mutation_notes.toml` and the raw results in `tools/mutation_results.json`.

## How to run

<!-- doctest: skip runs for minutes to hours; it is a check of its own, never part of the suite -->
```sh
pip install -e '.[mutation]'
python tools/mutation.py loopspec/replay/redact.py   # one module (minutes to an hour)
python tools/mutation.py --all                       # every module (many hours on 2 cores)
python tools/mutation.py --report                    # rewrite this file from the stored results
python tools/mutation.py --max-minutes 60 loopspec/language/model.py  # stop early, keep what ran
python tools/mutation.py --survivors loopspec/engine/history.py       # after new tests: rerun survivors
python tools/mutation.py --resume loopspec/language/model.py          # go on where --max-minutes stopped
```

To work on a module: run it, read its survivors below, write a test in a `tests/*/test_mutants_*.py`
file that fails on each one (or explain it as equivalent) in `tools/mutation_notes.toml`, then
rerun with `--survivors` (or in full) to confirm. `--survivors` and `--resume` go on in the
`mutants/` copy the last run left; where it is gone (a new checkout), they run the named mutants in
a fresh copy and merge the verdicts into the last run's record, keeping its killed count. A module
edited since its run is refused there (mutmut numbers a function's mutants in order, so the names
would mean other changes): run it in full.

The tool is [mutmut](https://mutmut.readthedocs.io/) 3.8.1, configured under `[tool.mutmut]` in
`pyproject.toml`. Each module runs in a fresh `mutants/` copy of the tree. mutmut first runs the
selected tests once to learn which tests call each function, then runs every mutant against only
those tests with `-x`, two mutants at a time, at nice 10, with `HYPOTHESIS_PROFILE=ci`. It is not
part of `.ci/run`. The selection is `tests -m "not slow"`; the whole suite for the replay
transports and the live provider, which the slow tests exercise (real sockets); and `tests/verify tests/cli
tests/language` for the checker, whose modules run in one pass (`--together`) sharing one mapping
run. A mutant is *killed* when a test
fails or times out; *no tests* means no selected test calls the function, and counts as surviving.
A run stopped by `--max-minutes` scores the mutants it reached and says how many it did not run;
mutmut runs the mutants with the fastest tests first, so the rest are the ones whose tests take
longest.

Known limits: mutmut 3 mutates function bodies only, so module-level constants (the key patterns
of `redact.py`, the tables of `alphabet.py`) get no mutants and need tests of their own (e.g.
`test_every_provider_key_shape_is_redacted`). Code that the suite runs only in a child process
(`loopspec` started as a command, the replay server run as a subprocess) imports the installed,
unmutated package, so mutants there survive unless an in-process test also covers them.
"""


def _earlier_scores(earlier: list[dict[str, Any]]) -> list[str]:
    """The earlier scores worth showing: a pass that reached none of the module's mutants says
    nothing, and a score repeated by the next pass (a resumed run recorded before this fix) once."""
    shown: list[str] = []
    for e in earlier:
        if not e.get("total"):
            continue
        text = f"{e['detected']} / {e['total']}{f' (+{n} not run)' if (n := e.get('unchecked')) else ''} ({e['date']})"
        if not shown or shown[-1] != text:
            shown.append(text)
    return shown


SCORES_NOTE = """*time* is the latest run's, reruns of its survivors included; *earlier runs* are the scores
before the tests written for their survivors. An empty *earlier runs* means the module's
`test_mutants_*.py` tests were written from reading the code, before its first run."""

SURVIVORS_INTRO = """Every mutant that survived the latest run of its module, at its line in today's source. The
verdict is *fixed by* the test added to kill it (confirmed by a rerun, listed under "Killed by new
tests" once it is killed), *equivalent* with the reason no test can tell it apart, or **open**.
"""

FIXED_INTRO = """## Killed by new tests

Mutants that survived an earlier run and that a test written for them now kills.
"""


# -------------------------------------------------------------------------------------- driver
def has_functions(module: str) -> bool:
    """mutmut 3 mutates function bodies only; a module of plain dataclasses has no mutants."""
    tree = ast.parse((ROOT / module).read_text())
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(tree))


def run_modules(
    modules: list[str], jobs: int, max_minutes: float | None = None, survivors: bool = False, resume: bool = False
) -> dict[str, dict[str, Any]]:
    """Run some modules in one mutmut pass in a child process, then read each module's verdicts.

    One pass maps the selected tests once for all of them: for the checker's modules, whose mapping
    run is the whole suite with the slow tests, that run is most of a small module's time. With
    ``survivors``, only the mutants that survived the last run and are not explained as equivalent
    are run again (after new tests were written for them); with ``resume``, the mutants a stopped
    run never reached. Both work in the `mutants/` copy that run left, where mutmut finds new tests
    and maps them first, when it holds the same modules; otherwise in a fresh copy, whose verdicts
    :func:`merge_rerun` folds into the last run's record. That check of the names is exact for runs
    recorded with the module's source hash; for older records it compares the survivors' changes
    only, since a killed mutant's change is not recorded.
    """
    empty: dict[str, Any] = {"total": 0, "detected": 0, "counts": {}, "survivors": [], "seconds": 0,
             "date": dt.date.today().isoformat(), "selection": [], "mutmut": _mutmut_version()}
    results = {m: dict(empty) for m in modules if not has_functions(m)}
    modules = [m for m in modules if has_functions(m)]
    if not modules:
        return results
    names_of: dict[str, list[str]] = {}
    marker = ROOT / "mutants" / "loopspec-module.txt"
    # a rerun goes on in the copy the last run left; without it, in a fresh copy whose verdicts
    # are merged into the last run's (merge_rerun)
    fresh = not (survivors or resume) or not marker.exists() or marker.read_text().split("\n") != modules
    if survivors or resume:
        notes = load_notes()
        equivalent = {n for n, note in notes.items() if "equivalent" in note}  # no test can kill these
        for module in modules:
            last = load_results().get(module)
            if last is None:
                raise SystemExit(f"{module} has no recorded run: run it in full first")
            names_of[module] = (
                [s["name"] for s in last["survivors"] if s["name"] not in equivalent] if survivors else []
            ) + (last.get("unchecked_names", []) if resume else [])
        if not any(names_of.values()):
            raise SystemExit(f"nothing to rerun in {' '.join(modules)}")
    if fresh:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        marker.parent.mkdir()
        marker.write_text("\n".join(modules))
    names = [n for module in modules for n in names_of.get(module, [])]
    env = dict(os.environ, HYPOTHESIS_PROFILE="ci", LITELLM_LOCAL_MODEL_COST_MAP="True")
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--worker", ",".join(modules), "--jobs", str(jobs), *names],
        cwd=ROOT,
        env=env,
    )
    try:
        proc.wait(timeout=None if max_minutes is None else max_minutes * 60)
    except subprocess.TimeoutExpired:
        # mutmut stops its workers on Ctrl-C and keeps every verdict reached so far
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=300)
        except subprocess.TimeoutExpired:  # a mutant stuck in a loop: the verdicts are on disk already
            proc.terminate()
            proc.wait()
    seconds = time.monotonic() - started
    verdicts = {m: collect(m) for m in modules}
    if fresh and names:
        reached = any(v["status_of"].get(n, "not checked") != "not checked" for v in verdicts.values() for n in names)
        if not reached:
            raise SystemExit(f"mutmut reached no verdict on {' '.join(modules)} (exit {proc.returncode}); see its output above")
        last_results = load_results()
        for m in list(modules):
            try:
                verdicts[m] = merge_rerun(last_results[m], verdicts[m], names_of[m])
            except RenumberedMutant as exc:  # its last record stands; the others are merged
                print(f"{m}: not recorded, {exc}: run it in full")
                modules.remove(m)
                del verdicts[m]
    for v in verdicts.values():
        v.pop("status_of", None)  # every mutant's verdict: only what the record needs is kept
    if all(v["total"] == 0 for v in verdicts.values()):
        # no mutant was run: the mapping run failed (a test failed on the unmutated code) or was
        # stopped; recording it would overwrite the last real run with 0 / 0
        raise SystemExit(f"mutmut reached no verdict on {' '.join(modules)} (exit {proc.returncode}); see its output above")
    for module in modules:
        result = verdicts[module]
        # a pass over several modules has one time: each module is charged its share by mutants
        result.update(
            seconds=round(seconds),
            date=dt.date.today().isoformat(),
            selection=selection_args(modules),
            mutmut=_mutmut_version(),
            pass_modules=len(modules),
        )
        results[module] = result
    if len(modules) > 1:
        total = sum(results[m]["total"] + results[m].get("unchecked", 0) for m in modules) or 1
        for m in modules:
            share = (results[m]["total"] + results[m].get("unchecked", 0)) / total
            results[m]["seconds"] = round(seconds * share)
    return results


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="source files, e.g. loopspec/language/model.py")
    parser.add_argument("--all", action="store_true", help="every module in MODULES, smallest first")
    parser.add_argument("--report", action="store_true", help="only rewrite docs/quality.md")
    parser.add_argument("--jobs", type=int, default=MAX_JOBS, help=f"mutants at a time (at most {MAX_JOBS})")
    parser.add_argument("--max-minutes", type=float, help="stop a module after this long and keep what it reached")
    parser.add_argument(
        "--together", action="store_true", help="one mutmut pass over all the modules named (one mapping run)"
    )
    parser.add_argument("--survivors", action="store_true", help="rerun only the last run's survivors")
    parser.add_argument("--resume", action="store_true", help="run the mutants a stopped run did not reach")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    jobs = max(1, min(args.jobs, MAX_JOBS))
    os.chdir(ROOT)
    if args.worker:
        worker(args.worker.split(","), jobs, args.modules)  # after --worker, the positionals are mutant names
        return
    os.nice(10)  # other work shares the two cores; mutmut's workers inherit this
    modules = list(args.modules)
    if args.all:
        modules = sorted(MODULES, key=lambda m: (ROOT / m).stat().st_size)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        parser.error(f"not in MODULES: {', '.join(unknown)} (add it there first)")
    passes = [modules] if args.together else [[m] for m in modules]
    for group in passes:
        group_results = run_modules(group, jobs, args.max_minutes, args.survivors, args.resume)
        results = load_results()
        for module, result in group_results.items():
            earlier = results.get(module, {})
            if args.survivors or args.resume:  # the time of a run includes its reruns
                result["seconds"] += earlier["seconds"]
            # a resumed run goes on with the same run: its partial score is not an earlier one
            result["earlier"] = earlier.get("earlier", []) + (
                [{k: earlier.get(k, 0) for k in ("date", "detected", "total", "unchecked")}]
                if earlier and not args.resume else []
            )
            results[module] = result
            print(f"{module}: {result['detected']} / {result['total']} in {result['seconds']} s")
        RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
        REPORT.write_text(render(results, load_notes()))
    if not modules:
        REPORT.write_text(render(load_results(), load_notes()))


if __name__ == "__main__":
    main()
