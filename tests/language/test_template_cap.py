"""Rendered messages are capped (loopspec issue #14): a halt message of 400 x ``{response}`` with a
100 KB reply used to render 40 MB. A rendering holds at most ``settings.max_message_bytes`` (default
64 KiB) plus one copy of ``{response}``, and a cut message ends with a visible marker."""

from __future__ import annotations

import asyncio

import pytest

from loopspec.engine.turn import Turn
from loopspec.language import codes, load_policy_text
from loopspec.language.templates import DEFAULT_MAX_MESSAGE_BYTES, render_template, truncation_marker
from loopspec.language.validate import validate_text
from loopspec.replay.inproc import InProcessProvider
from loopspec.replay.interactions import ErrorResponse

from _paths import DEFAULT_POLICY

REPLY = "x" * 100_000


def test_a_repeated_reply_is_cut_at_the_cap_with_a_marker() -> None:
    out = render_template("{response}" * 400, {"response": REPLY})
    assert len(out.encode()) <= DEFAULT_MAX_MESSAGE_BYTES + len(REPLY)
    kept = out.split("\n[...")[0]
    assert out == kept + truncation_marker(400 * len(REPLY) - len(kept))


def test_the_marker_says_how_much_is_missing() -> None:
    out = render_template("{message}", {"message": "y" * 200}, limit=100)
    kept = out.split("\n[...")[0]
    assert len(out.encode()) <= 100
    assert out == kept + truncation_marker(200 - len(kept))


def test_one_copy_of_the_reply_is_never_cut() -> None:
    """A halt message that continues the streamed reply must keep it byte for byte, however long."""
    assert render_template("{response}", {"response": REPLY}) == REPLY
    assert render_template("{response}\n\n(cut off)", {"response": REPLY}) == REPLY + "\n\n(cut off)"


def test_any_other_long_value_is_cut() -> None:
    out = render_template("{message}" * 400, {"message": REPLY})
    assert len(out.encode()) == DEFAULT_MAX_MESSAGE_BYTES and "[... message truncated:" in out


@pytest.mark.parametrize("limit", [101, 102])  # one of them lands inside a two-byte character
def test_a_cut_never_splits_a_character(limit: int) -> None:
    out = render_template("{message}", {"message": "é" * 1000}, limit=limit)
    assert len(out.encode()) <= limit
    assert out.startswith("é" * 10) and "\ufffd" not in out


def test_short_messages_render_as_before() -> None:
    assert render_template("a {x} b {w}", {"x": [1, 2], "w": 3600.0}) == "a 1, 2 b 3600"


POLICY = DEFAULT_POLICY.read_text().replace(
    'message: "The model provider rejected the credentials (HTTP {status}). Check your API key."',
    'message: "' + "{message}" * 50 + '"',
)


def test_the_policy_setting_caps_a_halt_message_in_a_turn() -> None:
    policy = load_policy_text(POLICY.replace("  stall_timeout: 60", "  max_message_bytes: 2000\n  stall_timeout: 60"))
    assert policy.settings.max_message_bytes == 2000
    provider = InProcessProvider([ErrorResponse(401, {"error": {"message": "denied " * 500}})])
    result = asyncio.run(Turn(policy, provider, model="openai/replay").run([{"role": "user", "content": "hi"}]))
    assert result.outcome == "auth_failed"
    assert len(result.message.encode()) <= 2000 and "[... message truncated:" in result.message


def test_the_default_caps_a_halt_message_in_a_turn() -> None:
    policy = load_policy_text(POLICY)
    provider = InProcessProvider([ErrorResponse(401, {"error": {"message": "denied " * 500}})])
    result = asyncio.run(Turn(policy, provider, model="openai/replay").run([{"role": "user", "content": "hi"}]))
    assert len(result.message.encode()) == DEFAULT_MAX_MESSAGE_BYTES


@pytest.mark.parametrize(("value", "code"), [("0", codes.OUT_OF_RANGE), ("big", codes.WRONG_TYPE), ("1.5", codes.WRONG_TYPE)])
def test_the_setting_must_be_a_positive_whole_number(value: str, code: str) -> None:
    text = DEFAULT_POLICY.read_text().replace("  stall_timeout: 60", f"  max_message_bytes: {value}\n  stall_timeout: 60")
    policy, diags = validate_text(text, "p.yaml")
    assert policy is None and [d.code for d in diags if d.severity == "error"] == [code]


def test_a_continuation_prompt_is_capped_by_the_setting_too() -> None:
    policy = load_policy_text(DEFAULT_POLICY.read_text().replace("  stall_timeout: 60", "  max_message_bytes: 500\n  stall_timeout: 60"))
    prompt = policy.render("continue_chunking", {"dropped_tools": ["write_file"] * 1000})
    assert len(prompt.encode()) <= 500 and "[... message truncated:" in prompt
