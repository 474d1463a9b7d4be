"""Plant mutmut's mutants of one module, one at a time, and run a chosen set of tests on each.

Why beside ``tools/mutation.py``: mutmut first maps the whole selected suite to the functions it
calls, then runs every mutant against the tests that reach it, which costs hours for a module the
mapping pass finds hard. This driver asks mutmut only for its mutants (the same operators, the
same numbering), plants each one as the real function in a scratch copy of the tree, and runs the
tests you name with ``-x`` and a timeout per plant: about as many seconds per mutant as the tests
take. It is what the hand analyses in ``tools/hand_mutation.toml`` were made with. Survivors are
then worth a second pass against a wider selection (``--only`` with their numbers).

    python tools/plant_mutants.py loopspec/engine/clock.py --out /tmp/clock.json -- tests/engine -m "not slow"
    python tools/plant_mutants.py loopspec/engine/tool_batch.py --function run_batch --jobs 2 -- tests/engine
    python tools/plant_mutants.py loopspec/engine/clock.py --only 12,40 --show      # print the diffs only

``--by-coverage`` first runs the named tests once under coverage with per-test contexts, then
runs each plant against only the tests that ran a line of its function (as mutmut's mapping pass
does, in one measured run): minutes instead of hours for a module that only a few tests of a large
selection reach. A function no test reached in process gets the whole selection.

    python tools/plant_mutants.py loopspec/verify/choice.py --by-coverage --jobs 2 -- tests/verify -m "not slow"

Each plant is reported as ``killed`` (a test failed), ``timeout`` (the tests ran past
``--timeout``: counted as killed, as mutmut does) or ``survived``; ``--out`` writes them as JSON
with each mutant's diff.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("loopspec", "tests", "machines", "fixtures", "docs", "bench", "pyproject.toml", "README.md")
"""What a scratch tree holds: the package and everything its tests read."""


@dataclass
class Plant:
    name: str
    """mutmut's name: ``x_func__mutmut_3`` or ``xǁClassǁmethod__mutmut_3``."""
    function: str
    """``func`` or ``Class.method``."""
    source: str
    """The whole module with this mutant planted."""
    diff: str


@dataclass
class Outcome:
    name: str
    function: str
    result: str
    """killed, timeout or survived."""
    last_line: str
    seconds: float
    diff: str


def _function_of(mutant: str) -> tuple[str, int]:
    """(``func`` or ``Class.method``, number) of a mutmut mutant name."""
    head, number = mutant.rsplit("__mutmut_", 1)
    if head.startswith("xǁ"):
        cls, method = head[2:].split("ǁ", 1)
        return f"{cls}.{method}", int(number)
    return head[2:], int(number)


def _segment(tree: ast.Module, text: str, qualified: str) -> tuple[int, int, str]:
    """(first line, last line, indent) of ``func`` or ``Class.method`` in ``text`` (1-based,
    decorators included)."""
    scope: list[ast.stmt] = tree.body
    name = qualified
    if "." in qualified:
        cls, name = qualified.split(".", 1)
        scope = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
    node = next(n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name)
    first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
    line = text.splitlines()[first - 1]
    return first, node.end_lineno or node.lineno, line[: len(line) - len(line.lstrip())]


def _parse(source: str) -> ast.Module:
    """``ast.parse`` with the garbage collector held off. CPython 3.11 raises ``SystemError: AST
    constructor recursion depth mismatch`` when a collection runs a finalizer in the middle of
    building the tree (an abandoned litellm coroutine, in a test process that made live calls)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if was_enabled:
            gc.enable()


def plants(module: str, *, function: str | None = None, only: set[int] | None = None) -> list[Plant]:
    """Every mutant mutmut makes of ``module`` (of one function, or only the numbers given),
    each as the whole module with that mutant in place of the real function."""
    real = (ROOT / module).read_text()
    real_tree = _parse(real)
    real_lines = real.splitlines(keepends=True)
    # mutmut reads its configuration (and finds the code) from the working directory, as it is
    # imported and as it mutates; a test elsewhere in the same process may have moved it
    with contextlib.chdir(ROOT):
        from mutmut.__main__ import mutate_file_contents

        mutated = mutate_file_contents(module, real)
    mutated_tree = _parse(mutated.code)
    mutated_lines = mutated.code.splitlines(keepends=True)
    out: list[Plant] = []
    for name in mutated.mutant_names:
        qualified, number = _function_of(name)
        if function is not None and qualified != function:
            continue
        if only is not None and number not in only:
            continue
        m_first, m_last, m_indent = _segment(mutated_tree, mutated.code, name if "ǁ" not in name else _mangled(name))
        r_first, r_last, r_indent = _segment(real_tree, real, qualified)
        body = []
        for line in mutated_lines[m_first - 1 : m_last]:
            body.append(r_indent + line[len(m_indent):] if line.startswith(m_indent) else line)
        planted_def = "".join(body).replace(name, qualified.split(".")[-1], 1)
        source = "".join(real_lines[: r_first - 1]) + planted_def + "".join(real_lines[r_last:])
        diff = "".join(difflib.unified_diff(real.splitlines(keepends=True), source.splitlines(keepends=True), module, module, n=0))
        if diff:
            out.append(Plant(name, qualified, source, diff))
    return out


def _mangled(name: str) -> str:
    """mutmut defines a method's mutants in the class body as ``xǁClassǁmethod__mutmut_N``."""
    cls = name[2:].split("ǁ", 1)[0]
    return f"{cls}.{name}"


def _scratch() -> Path:
    """A copy of the tree a plant can overwrite (the repository is never touched)."""
    where = Path(tempfile.mkdtemp(prefix="loopspec-plant-"))
    for item in COPIED:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, where / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.exists():
            shutil.copy2(src, where / item)
    return where


def _test_env(tree: Path, **extra: str) -> dict[str, str]:
    """The environment a test run in the scratch ``tree`` gets: its package first on the path."""
    return dict(os.environ, PYTHONPATH=str(tree), HYPOTHESIS_PROFILE=os.environ.get("HYPOTHESIS_PROFILE", "ci"),
                PYTHONDONTWRITEBYTECODE="1", **extra)


def covering_tests(module: str, functions: set[str], tests: list[str], keep: Path | None = None) -> dict[str, list[str]]:
    """For each function (``func`` or ``Class.method``) of ``module``, the node ids of the tests in
    ``tests`` that ran one of its lines, from one run under coverage with per-test contexts. With
    ``keep``, that run's data is kept there and read again by later calls (one run maps many modules
    of the same selection; delete the file when the code or the tests change)."""
    from coverage import CoverageData

    data_file = keep if keep is not None else Path(tempfile.mkdtemp(prefix="loopspec-map-")) / ".coverage-map"
    measured_in = data_file.with_name(data_file.name + ".root")  # the data names files by the measured tree's paths
    if not data_file.exists():
        tree = _scratch()
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                        "--cov=loopspec", "--cov-context=test", "--cov-report=", *to_map(tests)],
                       cwd=tree, env=_test_env(tree, COVERAGE_FILE=str(data_file)), capture_output=True, text=True, check=False)
        shutil.rmtree(tree, ignore_errors=True)
        measured_in.write_text(str(tree))
    data = CoverageData(basename=str(data_file))
    data.read()
    by_line = data.contexts_by_lineno(str(Path(measured_in.read_text()) / module))
    if keep is None:
        shutil.rmtree(data_file.parent, ignore_errors=True)
    text = (ROOT / module).read_text()
    syntax = _parse(text)
    # the tests named for the module first (test_mutants_assemble.py for assemble.py): under -x
    # the plant stops at the first failure, and those are the likeliest to fail
    stem = Path(module).stem
    out: dict[str, list[str]] = {}
    for qualified in sorted(functions):
        first, last, _ = _segment(syntax, text, qualified)
        ids = {c.split("|", 1)[0] for line in range(first, last + 1) for c in by_line.get(line, []) if c}
        out[qualified] = sorted(ids, key=lambda i: (stem not in i.split("::", 1)[0], i))
    return out


def to_map(tests: list[str]) -> list[str]:
    """The selection the mapping run measures: all of it, whatever fails. Under the plants' own
    ``-x`` one test failing under coverage (a timing) would leave every test after it unmapped,
    and their plants counted survivors."""
    out: list[str] = []
    for i, arg in enumerate(tests):
        if arg in ("-x", "--exitfirst", "--maxfail") or arg.startswith("--maxfail=") or (i > 0 and tests[i - 1] == "--maxfail"):
            continue
        out.append(arg)
    return out


def collected(tests: list[str]) -> set[str]:
    """The node ids pytest collects from ``tests`` in the tree as it is now: kept coverage data
    may name tests since renamed or removed, and naming one fails the whole run."""
    # a -q among the plant's own options would make it -qq, which lists files, not node ids
    tests = [t for t in tests if t not in ("-q", "--quiet")]
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=ROOT, env=_test_env(ROOT), capture_output=True, text=True)
    return {line.strip() for line in done.stdout.splitlines() if "::" in line}


def narrowed(tests: list[str], node_ids: list[str]) -> list[str]:
    """``tests`` with its paths replaced by ``node_ids`` (its options kept); all of it when no
    test reached the function in process."""
    if not node_ids:
        return tests
    options: list[str] = []
    for i, arg in enumerate(tests):
        value_of_an_option = i > 0 and tests[i - 1] in _TAKES_A_VALUE
        if value_of_an_option or not (ROOT / arg.split("::", 1)[0]).exists():
            options.append(arg)
    return [*options, *node_ids]


_TAKES_A_VALUE = frozenset({"-m", "-k", "-p", "-o", "--deselect", "--ignore", "--ignore-glob", "--rootdir", "-c"})
"""pytest options whose value is the next argument (a path after ``--deselect`` is not a test to run)."""


_PYTEST_DYING_WITH_PARENT = (
    "import ctypes, signal, sys\n"
    "if sys.platform.startswith('linux'):\n"
    "    ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG\n"
    "import pytest\n"
    "raise SystemExit(pytest.main(sys.argv[1:]))\n"
)
"""A plant's test run: pytest, killed (on Linux) when the driver dies. A driver stopped with kill
left a plant's pytest running, and a mutant that loops while it grows a list ran on for an hour
and took 20 GB. Set in the child itself: a preexec_fn is not safe beside the driver's threads."""


def run_plant(plant: Plant, module: str, tree: Path, tests: list[str], timeout: float) -> Outcome:
    target = tree / module
    original = target.read_text()
    target.write_text(plant.source)
    env = _test_env(tree)
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", _PYTEST_DYING_WITH_PARENT, "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                               *tests], cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
        # pytest's 4 (a test named that does not exist) and 5 (no test collected) say nothing of the
        # plant: a stale or empty selection, not a failing test
        result = "survived" if done.returncode == 0 else "error" if done.returncode in (4, 5) else "killed"
        last = (done.stdout.strip().splitlines() or [done.stderr.strip()[-200:]])[-1]
    except subprocess.TimeoutExpired:
        result, last = "timeout", f"ran past {timeout:g} s"
    finally:
        target.write_text(original)
    return Outcome(plant.name, plant.function, result, last[:160], round(time.monotonic() - started, 1), plant.diff)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", help="a module path, e.g. loopspec/engine/clock.py")
    parser.add_argument("--function", help="only this function (func or Class.method)")
    parser.add_argument("--only", help="only these mutant numbers, comma-separated")
    parser.add_argument("--jobs", type=int, default=1, help="plants run at once, each in its own scratch tree")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per plant before it counts as a timeout")
    parser.add_argument("--out", help="write every outcome, with its diff, as JSON")
    parser.add_argument("--show", action="store_true", help="print the mutants' diffs and run nothing")
    parser.add_argument("--by-coverage", action="store_true",
                        help="run each plant against only the tests that reach its function (one measured run first)")
    parser.add_argument("--coverage-data", type=Path,
                        help="with --by-coverage: keep the measured run's data here, or reuse it if it is there")
    parser.epilog = "After --, the pytest arguments each plant runs (default: tests -m 'not slow')."
    argv = list(sys.argv[1:] if argv is None else argv)
    tests = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    only = {int(n) for n in args.only.split(",")} if args.only else None
    chosen = plants(args.module, function=args.function, only=only)
    if args.show:
        for p in chosen:
            print(f"# {p.name}\n{p.diff}")
        return 0
    tests = tests or ["tests", "-m", "not slow"]
    selection = {p.function: tests for p in chosen}
    if args.by_coverage:
        print(f"mapping the tests in {' '.join(tests)} to the functions of {args.module} ...", flush=True)
        reached = covering_tests(args.module, set(selection), tests, keep=args.coverage_data)
        exist = collected(tests)
        gone = {i for ids in reached.values() for i in ids} - exist
        if gone:
            print(f"  {len(gone)} tests the coverage data names are gone (renamed or removed): left out", flush=True)
        reached = {f: [i for i in ids if i in exist] for f, ids in reached.items()}
        selection = {f: narrowed(tests, ids) for f, ids in reached.items()}
        for f, ids in reached.items():
            print(f"  {f}: {len(ids) or 'no test in process: all'} tests", flush=True)
    trees = [_scratch() for _ in range(max(1, args.jobs))]
    free = list(trees)
    outcomes: list[Outcome] = []
    print(f"{len(chosen)} mutants of {args.module}; each against: pytest {' '.join(tests)}", flush=True)

    def one(p: Plant) -> Outcome:
        tree = free.pop()
        try:
            return run_plant(p, args.module, tree, selection[p.function], args.timeout)
        finally:
            free.append(tree)

    try:
        with ThreadPoolExecutor(max_workers=len(trees)) as pool:
            for i, o in enumerate(pool.map(one, chosen), 1):
                outcomes.append(o)
                print(f"[{i}/{len(chosen)}] {o.result:8s} {o.name}  {o.last_line}", flush=True)
    finally:
        for t in trees:
            shutil.rmtree(t, ignore_errors=True)
    counts = {k: sum(o.result == k for o in outcomes) for k in ("killed", "timeout", "survived", "error")}
    print(f"{args.module}: {counts['killed']} killed, {counts['timeout']} timed out, {counts['survived']} survived, "
          f"{counts['error']} not run (no test to run) of {len(outcomes)}")
    for o in outcomes:
        if o.result in ("survived", "error"):
            print(f"\n# {o.result}: {o.name}\n{o.diff}")
    if args.out:
        Path(args.out).write_text(json.dumps({"module": args.module, "function": args.function, "tests": tests,
                                              "counts": counts, "outcomes": [asdict(o) for o in outcomes]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
