"""The short-string fast path of redaction (what keeps the journal's per-step cost down) never lets a
secret through: a string shorter than every pattern's shortest match, with none of the marks the
other patterns need, is the only one skipped, and a literal secret is still looked for in it."""

from __future__ import annotations

import pytest

from loopspec.wire.redaction import REDACTED, redact, redact_text


@pytest.mark.parametrize("text, expected", [
    ("Basic abcdef", f"Basic {REDACTED}"),  # 12 characters: the shortest the patterns catch without a mark
    ("key=abcdef", f"key={REDACTED}"),  # a parameter: short, but it has '='
    ("pw:abcdef12", "pw:abcdef12"),  # a ':' sends it through the patterns, which leave it
    ("api_key:x1", f"api_key:{REDACTED}"),
    ("h://u:p@x", f"h://{REDACTED}@x"),
])
def test_short_strings_with_a_secret_shape_are_still_redacted(text: str, expected: str) -> None:
    assert len(text) < 13
    assert redact_text(text) == expected


def test_a_literal_secret_is_found_in_a_short_string() -> None:
    assert redact_text("-abcdefgh-", ["abcdefgh"]) == f"-{REDACTED}-"
    assert redact({"role": "abcdefgh1"}, ["abcdefgh1"]) == {"role": REDACTED}


def test_ordinary_short_strings_come_back_as_they_were() -> None:
    words = ["read_stream", "tool_calls", "assistant", "model_calls", "Basic abcd"]
    assert [redact_text(w, ["sk-not-in-these"]) for w in words] == words
