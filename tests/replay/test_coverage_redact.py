"""The net under redaction: ``safe_dump`` reads its own output back and refuses to return text that
still carries a secret, whether whole in a string or split across the chunks of a stream. With the
redaction itself switched off, the net alone must catch every leak."""

from __future__ import annotations

from typing import Any

import pytest

from loopspec.replay import redact as redact_mod
from loopspec.replay.redact import REDACTED, RedactionError, safe_dump

SECRET = "hunter2-correct-horse"


def streamed(*pieces: str) -> dict[str, Any]:
    return {"chunks": [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces] + [{"choices": "not a list"}, {"choices": [{"delta": None}]}]}


def cassette(*interactions: dict[str, Any], message: str = "hi") -> dict[str, Any]:
    return {"loopspec_cassette": 1, "messages": [{"role": "user", "content": message}], "interactions": list(interactions)}


def test_redacted_text_has_no_secret_left() -> None:
    text = safe_dump(cassette(streamed("my pass is hunter2-", "correct-horse ok"), message=f"use {SECRET}"), [SECRET, ""])
    assert SECRET not in text and "hunter2-" not in text
    assert REDACTED in text


@pytest.mark.parametrize(
    "data",
    [
        cassette(message=f"use {SECRET}"),  # whole, in a string
        cassette(streamed("my pass is hunter2-", "correct-horse ok")),  # split across two chunks
    ],
    ids=["whole", "split across chunks"],
)
def test_the_net_refuses_a_leak_the_redaction_missed(data: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact_mod, "redact", lambda obj, secrets=(): obj)
    monkeypatch.setattr(redact_mod, "redact_chunks", lambda chunks, secrets=(): chunks)
    monkeypatch.setattr(redact_mod, "redact_text", lambda s, secrets=(): s)
    with pytest.raises(RedactionError, match=r"\d+ strings still carry a secret after redaction"):
        safe_dump(data, [SECRET])
