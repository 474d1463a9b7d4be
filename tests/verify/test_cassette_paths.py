"""Counterexample cassettes: where ``loopspec check --counterexample FILE`` writes a second one, and
the counterexamples no cassette can reproduce, refused with the reason rather than written wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopspec.replay.cassette import load_cassette
from loopspec.verify import check_policy
from loopspec.verify.counterexample import CexStep, Counterexample
from loopspec.verify.to_cassette import NotReplayable, cassette_from_counterexample, write_counterexamples

from test_check import CALL, HALTS, TOOLS, policy, stream

FIX = "  fix:\n    kind: escalate\n    apply: [compact]\n    on: {done: fail, failed: fix}\n"


def two_failures():  # type: ignore[no-untyped-def]
    """auth loops in fix forever (halts), and fix --done--> fail renders '{code}' empty (halt_message)."""
    halts = HALTS.replace('message: "failed: {message}"', 'message: "{code}"')
    return policy(CALL.replace("      auth: fail\n", "      auth: fix\n"), stream(), TOOLS, FIX, halts)


def test_a_second_cassette_is_written_beside_the_first(tmp_path: Path) -> None:
    p = two_failures()
    r = check_policy(p)
    assert r.failed == ["halts", "halt_message"]
    out = tmp_path / "cex.cassette.yaml"
    paths = write_counterexamples(p, r, str(out))
    assert paths == [str(out), str(tmp_path / "cex-halt_message.cassette.yaml")]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["cex-halt_message.cassette.yaml", "cex.cassette.yaml"]
    assert load_cassette(paths[0]).source["property"] == "halts"
    assert load_cassette(paths[1]).source["property"] == "halt_message"


def test_a_counterexample_without_steps_is_refused() -> None:
    with pytest.raises(NotReplayable, match="the counterexample has no steps"):
        cassette_from_counterexample(policy(CALL, stream(), TOOLS, HALTS), Counterexample([]), "halts")


def test_an_empty_message_a_halt_cannot_render_is_refused() -> None:
    """'fail' says "failed: {message}": text of its own, so no recording leaves it empty."""
    step = CexStep("ask", "auth", {"status": 401, "message": "no", "retry_after": 0.0, "code": ""}, "fail", "ask --auth[0]--> fail")
    with pytest.raises(NotReplayable, match="'fail' cannot render an empty message when entered on auth"):
        cassette_from_counterexample(policy(CALL, stream(), TOOLS, HALTS), Counterexample([step]), "halt_message")


OPENED = CexStep("ask", "opened", {}, "read", "ask --opened[0]--> read")


@pytest.mark.parametrize(
    "steps, message",
    [
        ([CexStep("read", "text", {}, "done", "read --text[0]--> done")], "step 1 starts in 'read' but the run is in 'ask' (an abstract path)"),
        ([OPENED, CexStep("read", "text", {}, "fail", "read --text[0]--> done")], "step 2 (read: text) leads to 'done', not 'fail' (an abstract path)"),
        ([OPENED, CexStep("read", "text", {}, "done", "read --text[3]--> done")], "step 2 (read: text) leads to 'done', not 'done' (an abstract path)"),
    ],
    ids=["wrong state", "wrong target", "wrong transition"],
)
def test_an_abstract_path_the_policy_does_not_take_is_refused(steps: list[CexStep], message: str) -> None:
    with pytest.raises(NotReplayable) as info:
        cassette_from_counterexample(policy(CALL, stream(), TOOLS, HALTS), Counterexample(steps), "halts")
    assert str(info.value) == message


@pytest.mark.parametrize("how", ["existing folder", "new folder named with a trailing slash"])
def test_into_a_folder_each_cassette_is_named_for_its_policy_and_property(tmp_path: Path, how: str) -> None:
    p = two_failures()
    r = check_policy(p)
    folder = tmp_path / "cex"
    if how == "existing folder":
        folder.mkdir()
        out = str(folder)
    else:
        out = str(folder) + os.sep
    paths = write_counterexamples(p, r, out)
    expected = [os.path.join(out, f"{p.name}-{prop}.cassette.yaml") for prop in ("halts", "halt_message")]
    assert paths == expected
    assert sorted(f.name for f in folder.iterdir()) == sorted(os.path.basename(x) for x in expected)
    assert [load_cassette(x).source["property"] for x in paths] == ["halts", "halt_message"]
