"""Messages read as English: the article before a name chosen at run time fits the name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopspec import validate_text
from loopspec.replay.importer import TranscriptError, import_transcript
from loopspec.language.diagnostics import article


@pytest.mark.parametrize(
    "word, expected",
    [
        ("escalate", "an escalate"),
        ("halt", "a halt"),
        ("call", "a call"),
        ("tool_exec", "a tool_exec"),
        ("assistant", "an assistant"),
        ("user", "a user"),
        ("unknown", "an unknown"),
        ("int", "an int"),
        ("'increment'", "an 'increment'"),
        ("'reset'", "a 'reset'"),
        ("hour", "an hour"),
        ("", "a "),
    ],
)
def test_article(word: str, expected: str) -> None:
    assert article(word) == expected


POLICY = """\
loopspec: 1
initial: ask
backstops:
  model_calls: {max: 5, exhausted: fix}
  tool_batches: {max: 3, exhausted: done}
states:
  ask:
    kind: call
    on: {opened: done}
  fix:
    kind: escalate
    apply: [compact]
    bogus: 1
    on: {done: ask, failed: done, opened: done}
  done:
    kind: halt
    outcome: completed
    message: "{response}"
"""


def test_validator_messages_use_the_right_article() -> None:
    _policy, diags = validate_text(POLICY, "p.yaml")
    text = "\n".join(d.format() for d in diags)
    assert "is an escalate state" in text, text
    assert "in an escalate state" in text, text
    assert "an escalate state never receives event 'opened'" in text, text
    assert "a escalate" not in text


def test_importer_message_uses_the_right_article(tmp_path: Path) -> None:
    src = tmp_path / "t.json"
    src.write_text(json.dumps([{"role": "assistant", "content": "hi"}, {"role": "user", "content": "yo"}]))
    with pytest.raises(TranscriptError) as info:
        import_transcript(str(src))
    text = "\n".join(d.format() for d in info.value.diagnostics)
    assert "an assistant message before the first user message" in text, text
