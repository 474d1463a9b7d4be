"""The fast path of redaction (what keeps the journal's per-step cost and the CLI's --json output
cheap) never lets a secret through: only a string with none of the triggers every pattern needs
(a key shape's prefix, an auth scheme, ``:``, ``=`` or ``@``) is skipped, and a literal secret is
still looked for in it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopspec.wire.redaction import _TRIGGER, REDACTED, redact, redact_text, secret_spans


@pytest.mark.parametrize("text, expected", [
    ("Basic abcdef", f"Basic {REDACTED}"),
    ("key=abcdef", f"key={REDACTED}"),  # a parameter: short, but it has '='
    ("pw:abcdef12", "pw:abcdef12"),  # a ':' sends it through the patterns, which leave it
    ("api_key:x1", f"api_key:{REDACTED}"),
    ("h://u:p@x", f"h://{REDACTED}@x"),
    ("see sk-proj-abcdefghijklmnop now", f"see {REDACTED} now"),
    ("AKIAABCDEFGHIJKLMNOP", REDACTED),
])
def test_strings_with_a_secret_shape_are_still_redacted(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_a_literal_secret_is_found_in_a_string_without_triggers() -> None:
    assert redact_text("-abcdefgh-", ["abcdefgh"]) == f"-{REDACTED}-"
    assert redact({"role": "abcdefgh1"}, ["abcdefgh1"]) == {"role": REDACTED}


def test_ordinary_strings_come_back_as_they_were() -> None:
    words = ["read_stream", "tool_calls", "assistant", "model_calls", "Basic abcd",
             "The capital of the United Kingdom is London, a city of nine million people."]
    assert [redact_text(w, ["sk-not-in-these"]) for w in words] == words


# text built from the pieces the patterns are made of, so that matches are common
_PIECES = st.sampled_from(["sk-", "sk-ant-", "gsk_", "xai-", "AIza", "hf_", "ghp_", "AKIA", "Bearer ", "Basic ",
                           "api_key", "token", "key", "sig", "password", "://", "@", ":", "=", " ", "\"", "'",
                           "abcdefghij", "ABCDEFGHIJKLMNOP", "0123456789", "_", "-", ".", "?", "&", "x"])


@given(st.lists(_PIECES, max_size=12).map("".join))
def test_every_string_a_pattern_redacts_has_a_trigger(text: str) -> None:
    """The fast path's soundness: a string without a trigger has no secret span at all."""
    if secret_spans(text):
        assert _TRIGGER.search(text), text


def _every_pattern_spans(text: str) -> list[tuple[int, int]]:
    """:func:`secret_spans` with no pattern skipped: every pattern run over the whole text."""
    from loopspec.wire import redaction

    spans: list[tuple[int, int]] = []
    for rx, _needs in redaction._SECRET_RES:
        spans += [(m.start(), m.end()) for m in rx.finditer(text)]
    for rx, _needs in redaction._GROUP_RES:
        spans += [(m.start(1), m.end(1)) for m in rx.finditer(text) if m.group(1)]
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


@given(st.lists(_PIECES, max_size=12).map("".join))
def test_a_pattern_is_skipped_only_where_it_cannot_match(text: str) -> None:
    """Each pattern runs only on text holding a literal all its matches need; whatever the text,
    the spans found are those of running every pattern."""
    assert secret_spans(text) == _every_pattern_spans(text)


@pytest.mark.parametrize("text", [
    "sk-proj-abcdefghijklmnop", "gsk_abcdefghijklmnopqrstu", "xai-abcdefghijklmnopqrstu", "AIza" + "b" * 31,
    "hf_abcdefghijklmnopqrstu", "ghs_abcdefghijklmnopqrstu", "ghr_abcdefghijklmnopqrstu", "AKIAABCDEFGHIJKLMNOP",
    "Bearer abcdefgh", "Basic abcdefgh", "password: hunter22", "x?sig=abcdef", "https://user:pw@host",
])
def test_each_secret_shape_is_still_found_with_its_pattern_guarded(text: str) -> None:
    assert secret_spans(text) == _every_pattern_spans(text) != []


def test_every_occurrence_of_a_literal_secret_is_found_overlapping_ones_too() -> None:
    assert secret_spans("x abcdefgh y abcdefgh z abcdefgh", ["abcdefgh"]) == [(2, 10), (13, 21), (24, 32)]
    assert secret_spans("a" * 9, ["a" * 8]) == [(0, 9)], "occurrences at 0 and 1 overlap into one span"


def test_spans_that_touch_are_merged_into_one() -> None:
    assert secret_spans("abcdefghijklmnop!", ["abcdefgh", "ijklmnop"]) == [(0, 16)]
    assert redact_text("abcdefghijklmnop!", ["abcdefgh", "ijklmnop"]) == f"{REDACTED}!"


def test_a_literal_secret_of_exactly_the_minimum_length_is_redacted_by_value() -> None:
    """mutmut ``literal_secrets_3``: the bound was exclusive, so an ``--api-key`` or a credential
    variable of exactly :data:`MIN_LITERAL` characters (no key shape the patterns know) was left in
    every output. One character shorter is not taken by value, as documented."""
    from loopspec.wire.redaction import MIN_LITERAL, env_secrets, literal_secrets

    exact, short = "q7" * (MIN_LITERAL // 2), "q7" * (MIN_LITERAL // 2 - 1) + "q"
    assert (len(exact), len(short)) == (MIN_LITERAL, MIN_LITERAL - 1)
    assert literal_secrets(exact, short, None, "") == (exact,)
    assert env_secrets({"SERVICE_TOKEN": exact, "OTHER_API_KEY": short, "HOME": "q7q7q7q7q7"}) == [exact]
    assert redact_text(f"sent {exact} and {short}", literal_secrets(exact, short)) == f"sent {REDACTED} and {short}"
