"""Progress on long corpus runs: one updating line on a terminal, nothing at all otherwise."""

from __future__ import annotations

import io
import sys

import pytest

from loopspec.cli import main
from loopspec.cli.progress import Progress, is_terminal

from _paths import DEFAULT_POLICY, FIXTURES

INCIDENTS = FIXTURES / "incidents"
N_INCIDENTS = len(list(INCIDENTS.glob("*.cassette.yaml")))


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_is_terminal() -> None:
    assert is_terminal(FakeTTY())
    assert not is_terminal(io.StringIO())
    assert not is_terminal(object())

    class ClosedTTY(FakeTTY):
        def isatty(self) -> bool:
            raise ValueError("I/O operation on closed file")

    assert not is_terminal(ClosedTTY())


def test_quiet_when_not_a_terminal() -> None:
    out = io.StringIO()
    with Progress(3, stream=out) as p:
        for _ in range(3):
            p.advance(failed=True)
    assert out.getvalue() == ""


def test_quiet_when_disabled_even_on_a_terminal() -> None:
    out = FakeTTY()
    with Progress(3, stream=out, enabled=False) as p:
        p.advance()
    assert out.getvalue() == ""


def test_one_updating_line_on_a_terminal() -> None:
    out = FakeTTY()
    p = Progress(3, stream=out, min_interval=0)
    p.advance()
    p.advance(failed=True)
    p.advance()
    frames = out.getvalue().split("\r")[1:]
    assert frames == ["replayed 1/3 cassettes, 0 failed", "replayed 2/3 cassettes, 1 failed", "replayed 3/3 cassettes, 1 failed"]
    assert "\n" not in out.getvalue()
    p.close()
    assert out.getvalue().endswith("\r" + " " * len(frames[-1]) + "\r"), "the line is wiped at the end"


def test_a_shorter_line_covers_the_longer_one_before_it() -> None:
    out = FakeTTY()
    p = Progress(None, verb="read", show_failed=False, stream=out, min_interval=0)
    p.label = "a long label: "
    p.advance()
    p.label = ""
    p.advance()
    last = out.getvalue().split("\r")[-1]
    assert last.startswith("read 2 cassettes") and len(last) == len("a long label: read 1 cassettes")


def test_redraws_are_throttled_but_the_last_is_always_drawn() -> None:
    out = FakeTTY()
    p = Progress(1000, stream=out, min_interval=3600)
    for _ in range(1000):
        p.advance()
    frames = out.getvalue().split("\r")[1:]
    assert frames == ["replayed 1/1000 cassettes, 0 failed", "replayed 1000/1000 cassettes, 0 failed"]


def test_replay_draws_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main(["replay", str(INCIDENTS), "--machine", str(DEFAULT_POLICY)]) == 0
    err = tty.getvalue()
    # Reading happens in the workers, with the replay: one count, not a read pass and a replay pass.
    assert "\rread " not in err
    assert f"\rreplayed {N_INCIDENTS}/{N_INCIDENTS} cassettes, 0 failed" in err
    assert err.endswith("\r"), "wiped before the summary"
    assert "\r" not in capsys.readouterr().out


@pytest.mark.parametrize("extra", [[], ["--json"]], ids=["not-a-tty", "json"])
def test_replay_is_quiet_off_a_terminal_and_under_json(
    extra: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = FakeTTY() if extra else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    assert main(["replay", str(INCIDENTS), "--machine", str(DEFAULT_POLICY), *extra]) == 0
    assert stream.getvalue() == ""
    assert "\r" not in capsys.readouterr().out


def test_diff_draws_its_pass_on_a_terminal_and_nothing_under_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    policy = str(DEFAULT_POLICY)
    assert main(["diff", policy, policy, "--corpus", str(INCIDENTS)]) == 0
    err = tty.getvalue()
    # Each cassette is replayed under both policies by the same worker: one count, without failures
    # (a diff judges changes, not expectations).
    assert err.endswith(f"\rcompared {N_INCIDENTS}/{N_INCIDENTS} cassettes\r" + " " * len(f"compared {N_INCIDENTS}/{N_INCIDENTS} cassettes") + "\r")
    capsys.readouterr()
    tty.seek(0)
    tty.truncate()
    assert main(["diff", policy, policy, "--corpus", str(INCIDENTS), "--json"]) == 0
    assert tty.getvalue() == ""


def test_after_cursor_draws_without_moving_the_cursor_and_shortens_to_fit() -> None:
    out = FakeTTY()
    room = [80]
    p = Progress(10, label=" loopspec: ", stream=out, min_interval=0, after_cursor=True, room=lambda: room[0])
    p.advance()
    assert out.getvalue() == "\x1b7 loopspec: replayed 1/10 cassettes, 0 failed\x1b[K\x1b8"
    for width, expected in [(25, " replayed 2/10, 0 failed"), (15, " 3/10, 0 failed"), (6, " 4/10"), (3, "")]:
        room[0] = width
        out.seek(0)
        out.truncate()
        p.advance()
        assert out.getvalue() == f"\x1b7{expected}\x1b[K\x1b8"
    room[0] = 80
    p.advance()
    p.close()
    assert out.getvalue().endswith("\x1b8\x1b[K"), "what was drawn after the cursor is cleared"
