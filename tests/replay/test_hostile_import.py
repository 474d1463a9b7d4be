"""``loopspec import`` on hostile transcripts (loopspec issue #14): nesting too deep for Python or
for a cassette is a diagnostic, not a RecursionError; what import writes, replay reads (or nothing is
written, and a file already at the output path is left as it was); credential-named environment
values are redacted like ``loopspec record`` redacts them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopspec.cli import main
from loopspec.replay.cassette import read_cassette
from loopspec.replay.importer import TranscriptError, import_transcript


def session(*assistant: str) -> list[dict[str, object]]:
    return [{"role": "user", "content": "hi"}] + [{"role": "assistant", "content": a} for a in assistant]


def test_json_nested_past_pythons_parser_is_a_diagnostic(tmp_path: Path) -> None:
    src = tmp_path / "deep.json"
    src.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(TranscriptError) as caught:
        import_transcript(str(src))
    assert "nests too deeply" in caught.value.diagnostics[0].message


def test_a_jsonl_line_nested_past_pythons_parser_names_its_line(tmp_path: Path) -> None:
    src = tmp_path / "deep.jsonl"
    src.write_text(json.dumps({"role": "user", "content": "hi"}) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(TranscriptError) as caught:
        import_transcript(str(src))
    d = caught.value.diagnostics[0]
    assert "nests too deeply" in d.message and d.pos is not None and d.pos.line == 2


def test_nesting_a_cassette_cannot_hold_is_refused_with_its_path(tmp_path: Path) -> None:
    deep: object = "x"
    for _ in range(200):
        deep = [deep]
    src = tmp_path / "deep.json"
    src.write_text(json.dumps([{"role": "user", "content": "hi", "extra": deep}, {"role": "assistant", "content": "ok"}]))
    with pytest.raises(TranscriptError) as caught:
        import_transcript(str(src))
    d = caught.value.diagnostics[0]
    assert "nesting deeper than" in d.message and d.path.startswith("$[0].extra[0]")


def test_cli_prints_no_traceback_for_deep_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "deep.json"
    src.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["import", str(src), "-o", str(tmp_path / "out.cassette.yaml")]) == 1
    err = capsys.readouterr().err
    assert "nests too deeply" in err and "Traceback" not in err


def test_a_session_too_large_to_replay_is_not_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """10 000 replies make a cassette of more than 50 000 YAML nodes, which replay refuses: import
    says so and writes nothing (it used to write the file and then report it invalid), and a file
    already at the output path is left as it was."""
    src = tmp_path / "big.json"
    src.write_text(json.dumps(session(*[f"ok {i}" for i in range(10_000)])))
    out, kept = tmp_path / "big.cassette.yaml", tmp_path / "kept.cassette.yaml"
    kept.write_text("an earlier cassette\n")
    for target in (out, kept):
        assert main(["import", str(src), "-o", str(target)]) == 1
        err = capsys.readouterr().err
        assert "not written" in err and "more than 50000 YAML nodes" in err and "shorter part" in err
    assert not out.exists()
    assert kept.read_text() == "an earlier cassette\n"


def test_a_session_that_fits_is_written_and_replay_reads_it(tmp_path: Path) -> None:
    src = tmp_path / "ok.json"
    src.write_text(json.dumps(session(*[f"ok {i}" for i in range(100)])))
    out = tmp_path / "ok.cassette.yaml"
    assert main(["import", str(src), "-o", str(out)]) == 0
    cassette, diags = read_cassette(str(out))
    assert diags == [] and cassette is not None and len(cassette.interactions) == 100


def test_opening_content_that_is_a_mapping_is_refused_at_its_message(tmp_path: Path) -> None:
    src = tmp_path / "m.json"
    src.write_text(json.dumps([{"role": "system", "content": {"a": 1}}, {"role": "user", "content": "hi"},
                               {"role": "assistant", "content": "x"}]))
    with pytest.raises(TranscriptError) as caught:
        import_transcript(str(src))
    d = caught.value.diagnostics[0]
    assert d.path == "$[0].content" and "text, a list of parts or null" in d.message


def test_import_redacts_credential_environment_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    literal = "plainword-credential-4711"  # matches no key pattern: only the environment names it
    monkeypatch.setenv("ACME_API_KEY", literal)
    monkeypatch.setenv("SERVICE_TOKEN", "second-credential-0815")
    src = tmp_path / "s.json"
    src.write_text(json.dumps(session(f"the key is {literal}", "and second-credential-0815 too")))
    out = tmp_path / "s.cassette.yaml"
    assert main(["import", str(src), "-o", str(out)]) == 0
    text = out.read_text()
    assert literal not in text and "second-credential-0815" not in text and text.count("<redacted>") == 2
    assert literal not in json.dumps(import_transcript(str(src)).to_data())
