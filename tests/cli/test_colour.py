"""Colour in the CLI: on for a terminal, with ``--color always`` or ``FORCE_COLOR``; off with ``NO_COLOR``,
with ``--color never``, through a pipe, and always off for ``--json``. Colour only adds escape codes:
with them stripped, the output is the plain output byte for byte (columns included)."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loopspec.cli import main
from loopspec.cli.colour import Painter, wants_colour
from loopspec.language.diagnostics import Diagnostic, Position

from _paths import DEFAULT_POLICY, FIXTURES, MACHINES, ROOT

from _size import SIZE  # "N states, M counters" of default.yaml, as validate prints it

POLICY = str(DEFAULT_POLICY)
FAILING = str(MACHINES / "hermes_pre_32012.yaml")
CASSETTE = str(FIXTURES / "incidents" / "ml-intern-length-with-tool-calls.cassette.yaml")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

RED_BOLD, GREEN, GREEN_BOLD, CYAN, BOLD, RESET = "\x1b[1;31m", "\x1b[32m", "\x1b[1;32m", "\x1b[36m", "\x1b[1m", "\x1b[0m"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def bad_policy(tmp_path: Path) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text("loopspec: 1\ninitial: call_model\nstaets: {}\n", encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------------------- the decision


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    "choice, env, tty, expected",
    [
        ("auto", {}, True, True),
        ("auto", {}, False, False),
        ("auto", {"NO_COLOR": "1"}, True, False),
        ("auto", {"NO_COLOR": "0"}, True, False),  # any non-empty value, even "0"
        ("auto", {"NO_COLOR": ""}, True, True),  # empty means unset (no-color.org)
        ("auto", {"FORCE_COLOR": "1"}, False, True),
        ("auto", {"FORCE_COLOR": ""}, False, False),
        ("auto", {"NO_COLOR": "1", "FORCE_COLOR": "1"}, True, False),  # the opt-out wins
        ("auto", {"TERM": "dumb"}, True, False),
        ("auto", {"TERM": "dumb", "FORCE_COLOR": "1"}, False, True),
        ("always", {"NO_COLOR": "1"}, False, True),  # the flag is the user's word for this run
        ("never", {"FORCE_COLOR": "1"}, True, False),
    ],
)
def test_when_a_stream_gets_colour(choice: str, env: dict[str, str], tty: bool, expected: bool) -> None:
    assert wants_colour(choice, _Stream(tty), env) is expected


# ---------------------------------------------------------------------------- what is painted


def test_diagnostics_paint_location_severity_and_hint() -> None:
    d = Diagnostic("LS101", "unknown key 'staets'", "p.yaml", "staets", Position(3, 1), "did you mean 'states'?")
    assert Painter(True).diagnostic(d) == (
        f"{BOLD}p.yaml:3:1{RESET}: {RED_BOLD}error:{RESET} unknown key 'staets' (at staets)\n"
        f"    {CYAN}hint:{RESET} did you mean 'states'?"
    )
    warning = Diagnostic("LS900", "never taken", "p.yaml", pos=Position(2, 5), severity="warning")
    assert Painter(True).diagnostic(warning) == f"{BOLD}p.yaml:2:5{RESET}: \x1b[1;33mwarning:{RESET} never taken"
    assert Painter(False).diagnostic(d) == d.format(), "off, a painter changes nothing"
    assert ANSI.sub("", Painter(True).diagnostic(d)) == d.format()


def test_verdicts_keep_their_columns() -> None:
    paint = Painter(True)
    assert paint.verdict("PASS", 8) == f"{GREEN}PASS{RESET}    "
    assert paint.verdict("DIVERGED", 8) == f"\x1b[1;33mDIVERGED{RESET}"
    assert paint.verdict("PROVEN") == f"{GREEN_BOLD}PROVEN{RESET}"
    assert Painter(False).verdict("FAIL", 8) == "FAIL    "


# ------------------------------------------------------------------------------- the commands


def test_color_always_paints_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--color", "always", "check", FAILING)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{FAILING}: {RED_BOLD}FAILED{RESET}  [hermes_pre_32012]"
    assert f"  {GREEN}PASS{RESET}  halts " in out
    assert f"  {RED_BOLD}FAIL{RESET}  stub_not_silent " in out
    _, plain, _ = run(capsys, "check", FAILING)
    assert ANSI.sub("", out).split("explored")[0] == plain.split("explored")[0]  # the timing differs


def test_color_always_paints_diagnostics_and_command_errors(
    capsys: pytest.CaptureFixture[str], bad_policy: str, tmp_path: Path
) -> None:
    code, _, err = run(capsys, "--color", "always", "validate", bad_policy)
    assert code == 1
    assert f"{BOLD}{bad_policy}:3:1{RESET}: {RED_BOLD}error:{RESET} unknown key 'staets'" in err
    assert f"    {CYAN}hint:{RESET} did you mean 'states'?" in err
    _, _, plain = run(capsys, "validate", bad_policy)
    assert ANSI.sub("", err) == plain
    code, _, err = run(capsys, "--color", "always", "diff", POLICY, POLICY, "--corpus", str(tmp_path))
    assert code == 2
    assert err == f"{RED_BOLD}loopspec diff:{RESET} no cassettes (*.cassette.yaml) under {tmp_path}\n"


def test_color_after_the_command_and_its_override(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "validate", POLICY, "--color", "always")
    assert out == f"{POLICY}: {GREEN}ok{RESET} ({SIZE})\n"
    _, out, _ = run(capsys, "--color", "always", "validate", POLICY, "--color", "never")
    assert out == f"{POLICY}: ok ({SIZE})\n"


def test_force_color_paints_replay(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    code, out, _ = run(capsys, "replay", CASSETTE, "--machine", POLICY)
    assert code == 0
    assert out.startswith(f"{GREEN}PASS{RESET}     ml-intern-length-with-tool-calls: ")
    monkeypatch.delenv("FORCE_COLOR")
    _, plain, _ = run(capsys, "replay", CASSETTE, "--machine", POLICY)
    assert ANSI.sub("", out) == plain


def test_no_color_wins_over_force_color(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, bad_policy: str) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    _, out, _ = run(capsys, "check", FAILING)
    _, _, err = run(capsys, "validate", bad_policy)
    assert "\x1b" not in out + err


def test_json_is_never_coloured(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, bad_policy: str, tmp_path: Path
) -> None:
    """Neither the JSON nor what a --json run still says on stderr (a one-line error, the
    diagnostics of a cassette a live command could not read)."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    bad_cassette = tmp_path / "bad.cassette.yaml"
    bad_cassette.write_text("loopspec_cassette: 1\nmessages: []\ninteractons: []\n", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    live = ["--machine", POLICY, "--model", "openai/x", "--api-base", "http://127.0.0.1:1", "--json"]
    for argv, stderr_said in (
        (["check", FAILING, "--json"], ""),
        (["validate", bad_policy, "--json"], ""),
        (["replay", CASSETTE, "--machine", POLICY, "--json"], ""),
        (["check", bad_policy, "--json"], ""),
        (["replay", str(tmp_path / "empty"), "--machine", POLICY, "--json"], "loopspec replay: no cassettes"),
        (["fork", str(bad_cassette), "--at", "0", *live], "error: unknown key 'interactons'"),
    ):
        _, out, err = run(capsys, "--color", "always", *argv)
        assert "\x1b" not in out + err, argv
        assert stderr_said in err
        if not stderr_said:
            json.loads(out)


def _cli(*argv: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return subprocess.run([sys.executable, "-m", "loopspec", *argv], env=env, cwd=ROOT, **kw)  # type: ignore[call-overload, no-any-return]


def test_piped_output_has_no_colour(bad_policy: str) -> None:
    """What the docs examples and CI logs see: through a pipe, not one escape code."""
    for argv in (["validate", POLICY, bad_policy], ["replay", CASSETTE, "--machine", POLICY]):
        piped = _cli(*argv, capture_output=True)
        assert b"\x1b" not in piped.stdout + piped.stderr, argv
        never = _cli("--color", "never", *argv, capture_output=True)
        assert (piped.stdout, piped.stderr) == (never.stdout, never.stderr)


def test_a_terminal_gets_colour_by_default() -> None:
    """stdout on a pseudo-terminal, no flag and no variable: coloured; stderr, a pipe: plain."""
    main_fd, child_fd = pty.openpty()
    try:
        done = _cli("validate", POLICY, stdout=child_fd, stderr=subprocess.PIPE)
        os.close(child_fd)
        shown = b""
        while True:
            try:
                chunk = os.read(main_fd, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main_fd)
    assert done.returncode == 0
    assert f"{POLICY}: {GREEN}ok{RESET} ({SIZE}".encode() in shown


def test_the_colour_choice_ends_with_the_call(capsys: pytest.CaptureFixture[str]) -> None:
    """``main`` runs many times in one process (here, in an embedding program): a ``--color always``
    run leaves the next error it did not print plain."""
    from loopspec.cli.common import fail

    run(capsys, "--color", "always", "validate", POLICY)
    assert fail("check", "after") == 2
    assert capsys.readouterr().err == "loopspec check: after\n"
