"""Redaction, held to what mutation testing found unguarded (docs/quality.md, `redact.py`).

Each test pins one promise of `loopspec.replay.redact` that a surviving mutant broke without any
test noticing: every text channel of a stream is joined on its own (choices, reasoning, refusals
and each tool call apart), a delta without an index is index 0, literal secrets count everywhere,
the leak check `_leaks` finds what it is there to find, and `env_secrets` reads credential names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopspec.replay.cassette_reader import load_cassette
import loopspec.replay.redact as redact_module
from loopspec.replay.redact import (
    REDACTED,
    RedactionError,
    _leaks,
    env_secrets,
    redact,
    redact_chunks,
    redact_text,
    safe_dump,
    write_redacted,
)

from _paths import FIXTURES

# Neither half is a key on its own ("sk-live-" needs 12 more key characters); joined they are one.
HEAD, TAIL = "see sk-live-", "0123456789abcdef end"
JOINED_REDACTED = f"see {REDACTED} end"
KEY = "sk-live-PLANTED0123456789abcdef"


def _content(choice: dict[str, Any], text: str, **extra: Any) -> dict[str, Any]:
    return {"choices": [dict(choice, delta={"content": text}, **extra)]}


def _texts(chunks: list[dict[str, Any]], key: str = "content") -> list[str]:
    return [ch["delta"][key] for c in chunks for ch in c["choices"] if isinstance(ch, dict)
            and isinstance(ch.get("delta"), dict) and key in ch["delta"]]


def _args(chunks: list[dict[str, Any]]) -> list[str]:
    return [tc["function"]["arguments"] for c in chunks for ch in c["choices"]
            if isinstance(ch, dict) and isinstance(ch.get("delta"), dict)
            for tc in ch["delta"].get("tool_calls") or [] if isinstance(tc, dict) and "function" in tc]


# -------------------------------------------------------------------------- channels kept apart


def test_two_choices_are_two_channels() -> None:
    chunks = [{"choices": [{"index": 0, "delta": {"content": HEAD}}, {"index": 1, "delta": {"content": TAIL}}]}]
    assert redact_chunks(chunks) == chunks


def test_content_and_reasoning_are_two_channels() -> None:
    chunks = [{"choices": [{"index": 0, "delta": {"content": HEAD, "reasoning_content": TAIL}}]}]
    assert redact_chunks(chunks) == chunks


def test_two_tool_calls_are_two_channels() -> None:
    calls = [{"index": 0, "function": {"arguments": HEAD}}, {"index": 1, "function": {"arguments": TAIL}}]
    chunks = [{"choices": [{"index": 0, "delta": {"tool_calls": calls}}]}]
    assert redact_chunks(chunks) == chunks


# ------------------------------------------------------------------ a missing index is index 0


def test_a_choice_without_index_continues_choice_0() -> None:
    chunks = [{"choices": [{"delta": {"content": HEAD}}]}, _content({"index": 0}, TAIL)]
    assert "".join(_texts(redact_chunks(chunks))) == JOINED_REDACTED


def test_a_tool_call_without_index_continues_call_0() -> None:
    chunks = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"function": {"arguments": HEAD}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": TAIL}}]}}]},
    ]
    assert "".join(_args(redact_chunks(chunks))) == JOINED_REDACTED


# --------------------------------------------------------------- every text channel is redacted


@pytest.mark.parametrize("key", ["content", "reasoning_content", "reasoning", "refusal"])
def test_a_secret_split_in_any_text_channel_is_redacted(key: str) -> None:
    chunks = [{"choices": [{"index": 0, "delta": {key: HEAD}}]}, {"choices": [{"index": 0, "delta": {key: TAIL}}]}]
    assert "".join(_texts(redact_chunks(chunks), key)) == JOINED_REDACTED


def test_odd_entries_are_skipped_not_fatal_and_later_ones_still_redacted() -> None:
    # a non-dict choice, a choice without a delta dict, a non-dict tool call and one without a
    # function come first; the real channel after them still gets its split secret redacted
    junk: list[Any] = ["junk", {"index": 0, "delta": None}]
    calls: list[Any] = ["junk", {"index": 5}, {"index": 0, "function": {"arguments": HEAD}}]
    chunks = [
        {"choices": junk + [{"index": 0, "delta": {"content": HEAD, "tool_calls": calls}}]},
        {"choices": junk + [{"index": 0, "delta": {"content": TAIL,
                                                    "tool_calls": [{"index": 0, "function": {"arguments": TAIL}}]}}]},
    ]
    out = redact_chunks(chunks)
    assert "".join(_texts(out)) == JOINED_REDACTED
    assert "".join(_args(out)) == JOINED_REDACTED
    assert out[0]["choices"][:2] == junk


def test_a_clean_channel_before_a_dirty_one_does_not_stop_the_pass() -> None:
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": "nothing here",
                                             "tool_calls": [{"index": 0, "function": {"arguments": HEAD}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": TAIL}}]}}]},
    ]
    out = redact_chunks(chunks)
    assert _texts(out) == ["nothing here"]
    assert "".join(_args(out)) == JOINED_REDACTED


# ------------------------------------------------------------- key shapes (module constants)
# mutmut 3 mutates function bodies only, so the patterns in `_KEY_PATTERNS` get no mutants: each
# provider's key shape is pinned here instead.
KEY_SHAPES = {
    "openai": "sk-" + "A1b2" * 6,
    "openai project": "sk-proj-" + "A1b2" * 6,
    "anthropic": "sk-ant-api03-" + "A1b2" * 6,
    "openrouter": "sk-or-v1-" + "a1b2" * 8,
    "groq": "gsk_" + "A1b2" * 6,
    "xai": "xai-" + "A1b2" * 6,
    "google": "AIza" + "A1b2_-" * 6,
    "hugging face": "hf_" + "A1b2" * 6,
    "github": "ghp_" + "A1b2" * 6,
    "github oauth": "gho_" + "A1b2" * 6,
    "aws": "AKIA" + "ABCDEFGH12345678",
}


@pytest.mark.parametrize("provider", KEY_SHAPES)
def test_every_provider_key_shape_is_redacted(provider: str) -> None:
    key = KEY_SHAPES[provider]
    assert redact_text(f"key {key} here") == f"key {REDACTED} here"
    assert redact({"note": key}) == {"note": REDACTED}


def test_keys_inside_words_are_not_keys() -> None:
    text = "task-" + "A1b2" * 6 + " and xAKIAABCDEFGH12345678"
    assert redact_text(text) == text


# ---------------------------------------------------------------------------- literal secrets


def test_a_literal_secret_split_across_chunks_is_redacted() -> None:
    chunks = [_content({"index": 0}, "pw hunter2"), _content({"index": 0}, "hunter2 ok")]
    assert "".join(_texts(redact_chunks(chunks, ["hunter2hunter2"]))) == f"pw {REDACTED} ok"


def test_a_literal_secret_outside_the_text_channels_is_redacted() -> None:
    chunks = [{"id": "hunter2hunter2", "choices": [{"index": 0, "delta": {"content": "hi"}}]}]
    assert redact_chunks(chunks, ["hunter2hunter2"])[0]["id"] == REDACTED


def test_write_redacted_removes_a_literal_secret(tmp_path: Path) -> None:
    cassette = load_cassette(str(FIXTURES / "incidents" / "hermes-30770-guardrail-silent-halt.cassette.yaml"))
    out = tmp_path / "c.yaml"
    text = write_redacted(cassette, str(out), ["capital of the UK"])
    assert "capital of the UK" not in text
    assert out.read_text(encoding="utf-8") == text
    assert REDACTED in text


def test_literal_secrets_reach_every_string_of_a_structure() -> None:
    pw = "hunter2hunter2"
    assert redact(f"pw {pw}", [pw]) == f"pw {REDACTED}"
    assert redact({"a": f"pw {pw}", "l": [f"x {pw}"], pw: 1}, [pw]) == {
        "a": f"pw {REDACTED}", "l": [f"x {REDACTED}"], REDACTED: 1}


def test_keys_are_redacted_and_non_string_keys_kept() -> None:
    assert redact({KEY: 1, 2: "two"}) == {REDACTED: 1, 2: "two"}


def test_an_empty_credential_value_stays_empty() -> None:
    assert redact({"api_key": "", "password": "x"}) == {"api_key": "", "password": REDACTED}


def test_every_occurrence_of_a_secret_is_redacted() -> None:
    text = f"a {KEY} b {KEY} c"
    assert redact_text(text) == f"a {REDACTED} b {REDACTED} c"
    pw = "pw1pw1pw1"
    assert redact_text(f"{pw} x {pw} y {pw}", [pw]) == f"{REDACTED} x {REDACTED} y {REDACTED}"


def test_overlapping_and_touching_secrets_become_one_redaction() -> None:
    assert redact_text("x" * 9, ["x" * 8]) == REDACTED  # occurrences at 0 and 1 overlap
    assert redact_text("AAAAAAAABBBBBBBB!", ["AAAAAAAA", "BBBBBBBB"]) == f"{REDACTED}!"


# ------------------------------------------------------------------------------------ safe_dump


def test_safe_dump_redacts_a_literal_secret_split_across_chunks() -> None:
    chunks = [_content({"index": 0}, "pw hunter2"), _content({"index": 0}, "hunter2 ok")]
    text = safe_dump({"interactions": [{"chunks": chunks}]}, ["hunter2hunter2"])
    assert "hunter2" not in text and REDACTED in text


def test_safe_dump_redacts_a_literal_secret_the_yaml_text_would_escape() -> None:
    pw = "hunter\t2hunter2"
    text = safe_dump({"a": f"pw {pw}"}, [pw])
    assert "hunter" not in text and REDACTED in text


def test_safe_dump_redacts_a_literal_secret_only_the_text_shows() -> None:
    # no single string holds it: only the dumped text does, and the text net takes it out
    text = safe_dump({"a": {"user": "hunter22"}}, ["user: hunter22"])
    assert "hunter22" not in text


def test_safe_dump_refuses_when_the_structured_pass_misses_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact_module, "redact_chunks", lambda chunks, secrets=(): list(chunks))
    chunks = [_content({"index": 0}, HEAD), _content({"index": 0}, TAIL)]
    with pytest.raises(RedactionError, match=r"^1 strings still carry a secret after redaction$"):
        safe_dump({"interactions": [{"chunks": chunks}]})


def test_safe_dump_refuses_when_the_text_net_breaks_the_yaml() -> None:
    with pytest.raises(RedactionError, match="redacting the written text broke its YAML"):
        safe_dump({"a": "b: c"}, ["'"])


def test_safe_dump_keeps_key_order_unicode_and_block_strings() -> None:
    text = safe_dump({"z": "héllo ✓", "a": "line one\nline two"})
    assert text == "z: héllo ✓\na: |-\n  line one\n  line two\n"


def test_safe_dump_does_not_fold_a_line_under_100_columns() -> None:
    words = " ".join(["word"] * 18)  # 89 characters
    assert safe_dump({"k": words}) == f"k: {words}\n"


# ---------------------------------------------------------------------- the leak check itself


def test_leaks_finds_a_key_in_a_value_a_list_and_a_dict_key() -> None:
    assert _leaks({"a": f"x {KEY}"}, "", ()) == [f"x {KEY}"]
    assert _leaks({"a": [1, f"y {KEY}"]}, "", ()) == [f"y {KEY}"]
    assert _leaks({KEY: 1}, "", ()) == [KEY]
    assert _leaks([f"z {KEY}"], "", ()) == [f"z {KEY}"]  # data need not be a mapping


def test_leaks_finds_a_literal_secret_in_the_data_and_in_the_text() -> None:
    assert _leaks({"a": "pw hunter2hunter2"}, "", ["hunter2hunter2"]) == ["pw hunter2hunter2"]
    assert _leaks({"a": "clean"}, "text with hunter2hunter2", ["hunter2hunter2"]) == ["hunter2hunter2"]


def test_leaks_finds_a_key_split_across_stream_chunks() -> None:
    chunks = [_content({"index": 0}, HEAD), _content({"index": 0}, TAIL)]
    assert _leaks({"interactions": [{"chunks": chunks}]}, "", ()) == [HEAD + TAIL]


def test_leaks_finds_a_literal_secret_split_across_stream_chunks() -> None:
    chunks = [_content({"index": 0}, "pw hunter2"), _content({"index": 0}, "hunter2 ok")]
    assert _leaks({"interactions": [{"chunks": chunks}]}, "", ["hunter2hunter2"]) == ["pw hunter2hunter2 ok"]


def test_leaks_passes_clean_data() -> None:
    chunks = [_content({"index": 0}, "all"), _content({"index": 0}, " clean")]
    assert _leaks({"interactions": [{"chunks": chunks}], "k": ["v"]}, "text", ["hunter2hunter2"]) == []


# ------------------------------------------------------------------------------- env_secrets


def test_env_secrets_reads_the_mapping_it_is_given() -> None:
    assert env_secrets({"MY_API_KEY": "abcdefgh12"}) == ["abcdefgh12"]


def test_env_secrets_takes_credential_names_only() -> None:
    env = {"HOME": "/home/somebody/far/away", "PATH": "/usr/bin:/bin", "GROQ_TOKEN": "", "openai_api_key": "k" * 9}
    assert env_secrets(env) == ["k" * 9]


def test_env_secrets_takes_values_of_eight_characters_and_more() -> None:
    assert env_secrets({"A_SECRET": "12345678", "B_PASSWORD": "1234567"}) == ["12345678"]
