"""The examples in README.md and docs/*.md run, and show what they really print.

A fenced block is an example when an HTML comment on the line before it (blank lines allowed)
says so; GitHub does not render the comment:

    <!-- doctest -->            console block: each ``$ command`` runs, and the lines up to the next
                                ``$`` must be what it printed (stdout and stderr together). A line
                                ``...`` stands for any number of lines (output shortened).
                                sh block: each line runs and must exit 0, or N if it ends with a
                                ``# exit N`` comment; setup steps (a venv, ``pip install``) are left
                                out of an ``&&`` chain.
                                python block: runs; the block after it, if marked ``output``, is
                                what it printed.
    <!-- doctest: output -->    what the python example before it prints
    <!-- doctest: file PATH --> the block's text is written to PATH before the next examples run
    <!-- doctest: merge PATH --> the block's top-level YAML keys replace those of the YAML file PATH
                                (an edit the reader is asked to make)
    <!-- doctest: shows PATH --> the block is the repository file PATH, verbatim
    <!-- doctest: skip REASON --> not run (say why)

Every console or sh block that runs ``loopspec`` must carry one of these, so a new example is
either checked or skipped on purpose.

Each page runs in a scratch directory in which ``machines/``, ``fixtures/`` and ``docs/`` are the
repository's (read them; write elsewhere). ``loopspec`` commands run in-process through
``loopspec.cli.main``; other commands run in bash. Output is compared after normalisation: seconds
(``0.110 s``), loopback ports and the scratch directory's path are masked.

When the output changes on purpose (the checker explores a different number of configurations, a
message is reworded), regenerate the blocks instead of editing them by hand:

    LOOPSPEC_UPDATE_DOCS=1 python -m pytest tests/docs/test_docs.py

and review the diff.
"""

from __future__ import annotations

import contextlib
import difflib
import glob
import io
import os
import re
import shlex
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from _paths import ROOT

UPDATE = os.environ.get("LOOPSPEC_UPDATE_DOCS", "") not in ("", "0")
UPDATE_HINT = (
    "If the new output is right, regenerate the docs' output blocks and review the diff:\n"
    "    LOOPSPEC_UPDATE_DOCS=1 python -m pytest tests/docs/test_docs.py"
)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Pages whose examples are not marked yet; their blocks are left alone.
UNMARKED_PAGES: set[str] = set()
LINKED = ("machines", "fixtures", "docs")

_MARK = re.compile(r"^<!--\s*doctest(?::\s*(?P<kind>\w+)(?:\s+(?P<arg>.*?))?)?\s*-->\s*$")
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")


@dataclass
class Block:
    lang: str
    start: int
    """Index of the first content line (after the opening fence)."""
    end: int
    """Index of the closing fence."""
    lines: list[str]
    mark: str | None = None
    arg: str = ""
    new_lines: list[str] | None = None


@dataclass
class Page:
    path: Path
    text_lines: list[str]
    blocks: list[Block] = field(default_factory=list)


def parse(path: Path) -> Page:
    lines = path.read_text().split("\n")
    page = Page(path, lines)
    i = 0
    pending: tuple[str, str] | None = None
    while i < len(lines):
        m = _MARK.match(lines[i].strip())
        if m:
            pending = (m.group("kind") or "run", (m.group("arg") or "").strip())
            i += 1
            continue
        f = _FENCE.match(lines[i])
        if f:
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            block = Block(f.group("lang"), i + 1, j, lines[i + 1 : j])
            if pending:
                block.mark, block.arg = pending
            page.blocks.append(block)
            pending = None
            i = j + 1
            continue
        if lines[i].strip():
            pending = None
        i += 1
    return page


# -- normalisation --------------------------------------------------------------------------------

_SECONDS = re.compile(r"\b\d+\.\d+(?= s\b)")
_PORT = re.compile(r"127\.0\.0\.1:\d+")


def normalise(text: str, sandbox: Path) -> list[str]:
    for root in {str(sandbox), os.path.realpath(sandbox)}:
        text = text.replace(root + os.sep, "").replace(root, ".")
    text = _SECONDS.sub("N.NNN", text)
    text = _PORT.sub("127.0.0.1:PORT", text)
    out = [ln.rstrip() for ln in text.split("\n")]
    while out and not out[-1]:
        out.pop()
    return out


def _is_ellipsis(line: str) -> bool:
    return line.strip() == "..."


def matches(expected: list[str], actual: list[str]) -> bool:
    if not any(_is_ellipsis(e) for e in expected):
        return expected == actual
    pattern = "".join("(?:.*\n)*?" if _is_ellipsis(e) else re.escape(e) + "\n" for e in expected)
    return re.fullmatch(pattern, "".join(a + "\n" for a in actual)) is not None


def regenerate(expected: list[str], actual: list[str]) -> list[str]:
    """New shown output: the actual output, keeping the ``...`` elisions of a shortened block.

    Each shown line is replaced by the most similar actual line after the previous one, so a line
    whose numbers changed is updated in place and the elided lines stay elided.
    """
    if not any(_is_ellipsis(e) for e in expected):
        return actual
    out: list[str] = []
    pos = 0
    for e in expected:
        if _is_ellipsis(e):
            out.append(e)
            continue
        best, best_ratio = None, 0.0
        for k in range(pos, len(actual)):
            r = difflib.SequenceMatcher(None, e, actual[k]).ratio()
            if r > best_ratio:
                best, best_ratio = k, r
        if best is None or best_ratio < 0.5:
            continue  # the line is gone
        out.append(actual[best])
        pos = best + 1
    return out


# -- running --------------------------------------------------------------------------------------


class Sandbox:
    def __init__(self, root: Path) -> None:
        self.root = root
        for name in LINKED:
            (root / name).symlink_to(ROOT / name)
        self.rc = 0
        bindir = os.path.dirname(sys.executable)
        self.env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}

    def loopspec(self, argv: list[str]) -> tuple[int, str, str]:
        """Run the CLI in-process; returns (exit code, stdout, stdout and stderr interleaved)."""
        from loopspec.cli import main

        both = io.StringIO()

        class Tee(io.StringIO):
            def write(self, s: str) -> int:
                both.write(s)
                return super().write(s)

        out = Tee()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(both):
            rc = main(argv)
        return rc, out.getvalue(), both.getvalue()

    def bash(self, command: str, stdin: str | None = None) -> tuple[int, str]:
        r = subprocess.run(
            ["bash", "-c", f"(exit {self.rc}); {command}"],
            cwd=self.root,
            env=self.env,
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
        )
        return r.returncode, r.stdout

    def run(self, command: str) -> tuple[int, str]:
        """Run one shell line; ``loopspec`` parts of an ``&&`` chain run in-process."""
        output = ""
        rc = 0
        for part in _split_and(command):
            rc, out = self._run_one(part)
            output += out
            self.rc = rc
            if rc != 0:
                break
        return rc, output

    def _run_one(self, command: str) -> tuple[int, str]:
        m = re.fullmatch(r"loopspec\s+(?P<args>[^|>&;`$]*?)\s*(?:(?P<op>\||>)\s*(?P<rest>[^#]*?))?\s*(?:#.*)?", command.strip())
        if not m:
            return self.bash(command)
        argv: list[str] = []
        for word in shlex.split(m.group("args")):
            expanded = sorted(glob.glob(word, root_dir=self.root)) if any(c in word for c in "*?[") else []
            argv.extend(expanded or [word])
        old = os.getcwd()
        os.chdir(self.root)
        try:
            rc, out, both = self.loopspec(argv)
        finally:
            os.chdir(old)
        op, rest = m.group("op"), m.group("rest")
        if op == ">":
            (self.root / rest.strip()).write_text(out)
            return rc, both[len(out):] if both.startswith(out) else both.replace(out, "", 1)
        if op == "|":
            errors = both.replace(out, "", 1)
            prc, piped = self.bash(rest, stdin=out)
            return prc, errors + piped
        return rc, both


def _split_and(command: str) -> list[str]:
    parts = [p.strip() for p in command.split(" && ")]
    # setup steps of an install one-liner are not part of the example
    while len(parts) > 1 and (parts[0].startswith(("python3 -m venv", ". .venv/", "source ")) or " install " in f" {parts[0]} "):
        parts.pop(0)
    return parts


@dataclass
class Failure:
    where: str
    expected: list[str]
    actual: list[str]

    def describe(self) -> str:
        diff = "\n".join(difflib.unified_diff(self.expected, self.actual, "shown", "printed", lineterm="", n=2))
        return f"{self.where}:\n{diff}"


def _console(page: Page, block: Block, box: Sandbox, failures: list[Failure]) -> None:
    items: list[tuple[str, list[str]]] = []
    for line in block.lines:
        if line.startswith("$ "):
            items.append((line[2:], []))
        elif items:
            items[-1][1].append(line)
        elif line.strip():
            raise AssertionError(f"{page.path.name}:{block.start}: a console example starts with '$ command'")
    new: list[str] = []
    changed = False
    for command, shown in items:
        _rc, printed = box.run(command)
        actual = normalise(printed, box.root)
        expected = normalise("\n".join(shown), box.root)
        new.append(f"$ {command}")
        if matches(expected, actual):
            new.extend(shown)
            continue
        changed = True
        failures.append(Failure(f"{_rel(page.path)}:{block.start}: $ {command}", expected, actual))
        raw = [ln.rstrip() for ln in printed.replace(str(box.root) + os.sep, "").rstrip("\n").split("\n")] if printed else []
        new.extend(regenerate(expected, raw))
    if changed:
        block.new_lines = new


def _sh(page: Page, block: Block, box: Sandbox, failures: list[Failure]) -> None:
    for line in block.lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        want = 0
        m = re.search(r"#\s*exit (\d+)", line)
        if m:
            want = int(m.group(1))
        rc, printed = box.run(line)
        if rc != want:
            failures.append(Failure(f"{_rel(page.path)}:{block.start}: {line.strip()} exited {rc}, expected {want}", [], printed.splitlines()))


def _python(page: Page, block: Block, box: Sandbox) -> str:
    out = io.StringIO()
    old = os.getcwd()
    os.chdir(box.root)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile("\n".join(block.lines), f"{page.path.name}:{block.start}", "exec"), {"__name__": "__doctest__"})
    finally:
        os.chdir(old)
    return out.getvalue()


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def run_page(page: Page, sandbox: Path) -> list[Failure]:
    box = Sandbox(sandbox)
    failures: list[Failure] = []
    last_python: str | None = None
    for block in page.blocks:
        if block.mark in (None, "skip"):
            continue
        if block.mark == "file":
            target = box.root / block.arg
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("\n".join(block.lines) + "\n")
        elif block.mark == "merge":
            import yaml

            target = box.root / block.arg
            data = yaml.safe_load(target.read_text())
            data.update(yaml.safe_load("\n".join(block.lines)))
            target.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        elif block.mark == "shows":
            actual = (ROOT / block.arg).read_text().rstrip("\n").split("\n")
            if block.lines != actual:
                failures.append(Failure(f"{_rel(page.path)}:{block.start}: the block is not {block.arg}", block.lines, actual))
                block.new_lines = actual
        elif block.mark == "output":
            assert last_python is not None, f"{_rel(page.path)}:{block.start}: an output block follows a python example"
            actual = normalise(last_python, box.root)
            if not matches(normalise("\n".join(block.lines), box.root), actual):
                failures.append(Failure(f"{_rel(page.path)}:{block.start}: python output", block.lines, actual))
                block.new_lines = regenerate(block.lines, last_python.rstrip("\n").split("\n"))
            last_python = None
        elif block.mark == "run":
            if block.lang == "console":
                _console(page, block, box, failures)
            elif block.lang in ("sh", "bash"):
                _sh(page, block, box, failures)
            elif block.lang == "python":
                last_python = _python(page, block, box)
            else:
                raise AssertionError(f"{_rel(page.path)}:{block.start}: cannot run a {block.lang or 'plain'} block")
        else:
            raise AssertionError(f"{_rel(page.path)}:{block.start}: unknown doctest mark {block.mark!r}")
    return failures


def rewrite(page: Page) -> None:
    lines = list(page.text_lines)
    for block in sorted(page.blocks, key=lambda b: b.start, reverse=True):
        if block.new_lines is not None:
            lines[block.start : block.end] = block.new_lines
    page.path.write_text("\n".join(lines))


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_examples_show_what_they_print(path: Path, tmp_path: Path) -> None:
    page = parse(path)
    failures = run_page(page, tmp_path)
    if not failures:
        return
    if UPDATE:
        rewrite(page)
        warnings.warn(f"rewrote {len(failures)} example(s) in {_rel(path)}; review the diff")
        return
    report = "\n\n".join(f.describe() for f in failures)
    pytest.fail(f"{len(failures)} example(s) in {_rel(path)} do not show what they print.\n\n{report}\n\n{UPDATE_HINT}", pytrace=False)


@pytest.mark.parametrize("path", [p for p in PAGES if p.name not in UNMARKED_PAGES], ids=lambda p: p.name)
def test_every_command_example_is_checked_or_skipped_on_purpose(path: Path) -> None:
    unmarked = [
        f"{_rel(path)}:{b.start}"
        for b in parse(path).blocks
        if b.lang in ("console", "sh", "bash") and b.mark is None and any("loopspec" in ln for ln in b.lines)
    ]
    assert not unmarked, (
        "these examples run loopspec but are neither checked nor skipped: put <!-- doctest --> "
        f"(or <!-- doctest: skip REASON -->) on the line before each: {unmarked}"
    )


def test_normalisation_masks_what_varies(tmp_path: Path) -> None:
    text = f"explored 3 configurations in 0.110 s\nhttp://127.0.0.1:44291/v1\n{tmp_path}/x.yaml: ok\n"
    assert normalise(text, tmp_path) == ["explored 3 configurations in N.NNN s", "http://127.0.0.1:PORT/v1", "x.yaml: ok"]


def test_ellipsis_matches_and_survives_regeneration() -> None:
    shown = ["a: PROVEN", "  ...", "explored 10 configurations"]
    assert matches(shown, ["a: PROVEN", "x", "y", "explored 10 configurations"])
    assert matches(shown, ["a: PROVEN", "explored 10 configurations"])
    assert not matches(shown, ["a: PROVEN", "x", "explored 11 configurations"])
    assert regenerate(shown, ["a: PROVEN", "x", "explored 12 configurations"]) == ["a: PROVEN", "  ...", "explored 12 configurations"]


# -- the reference tables of docs/language.md are generated from the alphabet ---------------------


def _kinds_table() -> list[str]:
    from loopspec.language.alphabet import KINDS

    rows = ["| kind | what entering it does | event | meaning | attributes |", "| --- | --- | --- | --- | --- |"]
    for kind in KINDS.values():
        if not kind.events:
            rows.append(f"| `{kind.name}` | {kind.doc} | — | (final: no events) | — |")
        for i, e in enumerate(kind.events):
            sep = " \\| "
            attrs = "<br>".join(f"`{a.name}`: {a.type}" + (f" ({sep.join(a.values)})" if a.values else "") for a in e.attrs) or "—"
            lead = f"`{kind.name}` | {kind.doc}" if i == 0 else " | "
            rows.append(f"| {lead} | `{e.name}` | {e.doc} | {attrs} |")
    return rows


def _two_column(header: str, table: dict[str, str]) -> list[str]:
    return [header, "| --- | --- |", *(f"| `{k}` | {v} |" for k, v in table.items())]


def _tables() -> dict[str, list[str]]:
    from loopspec.language.alphabet import OUTCOMES, TEMPLATE_GLOBALS

    return {
        "| kind | what entering it does |": _kinds_table(),
        "| outcome | meaning |": _two_column("| outcome | meaning |", OUTCOMES),
        "| variable | value |": _two_column("| variable | value |", TEMPLATE_GLOBALS),
    }


def test_language_tables_match_the_alphabet() -> None:
    path = ROOT / "docs" / "language.md"
    lines = path.read_text().split("\n")
    stale = []
    for header, rows in _tables().items():
        starts = [i for i, ln in enumerate(lines) if ln.startswith(header)]
        assert len(starts) == 1, f"docs/language.md has no single table starting {header!r}"
        start = starts[0]
        end = start
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        if lines[start:end] != rows:
            stale.append(header)
            lines[start:end] = rows
    if stale and UPDATE:
        path.write_text("\n".join(lines))
        warnings.warn(f"rewrote the tables {stale} in docs/language.md; review the diff")
        return
    assert not stale, f"docs/language.md's tables {stale} differ from loopspec/language/alphabet.py.\n{UPDATE_HINT}"


# -- docs/examples -------------------------------------------------------------------------------

EXAMPLES = ROOT / "docs" / "examples"


def test_every_example_input_is_used_by_the_docs() -> None:
    text = "\n".join(p.read_text() for p in PAGES)
    unused = [p.name for p in sorted(EXAMPLES.iterdir()) if f"docs/examples/{p.name}" not in text and f"examples/{p.name}" not in text]
    assert not unused, f"docs/examples holds files no page uses: {unused}"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.cassette.yaml")), ids=lambda p: p.name)
def test_example_cassettes_read_cleanly(path: Path) -> None:
    from loopspec.replay.cassette import read_cassette

    cassette, diags = read_cassette(str(path))
    if path.name == "broken.cassette.yaml":  # broken on purpose: cassettes.md shows its diagnostics
        assert cassette is None and len(diags) == 4
    else:
        assert cassette is not None and not diags, [d.format() for d in diags]


def test_loop_cassette_is_the_loop_the_record_example_describes() -> None:
    """cassettes.md records a turn from a server serving loop.cassette.yaml under the old hermes
    policy (5 calls, guardrail) and replays it under default.yaml (3 calls)."""
    import asyncio

    from loopspec import load_policy
    from loopspec.replay.cassette import load_cassette
    from loopspec.replay.harness import replay

    c = load_cassette(str(EXAMPLES / "loop.cassette.yaml"))
    old = asyncio.run(replay(c, load_policy(str(ROOT / "machines" / "hermes_pre_30813.yaml")))).result
    new = asyncio.run(replay(c, load_policy(str(ROOT / "machines" / "default.yaml")))).result
    assert (old.outcome, old.usage.model_calls, old.usage.tool_batches) == ("guardrail", 5, 5)
    assert (new.outcome, new.usage.model_calls, new.usage.tool_batches) == ("guardrail", 3, 3)
