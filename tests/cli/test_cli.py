"""The command line as a newcomer meets it: --version, help on every argument, exit codes that match
the README, credentials checked before litellm loads, and one-line errors for hostile input."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from loopspec.cli import EXIT_CODES, build_parser, main
from loopspec.providers.credentials import PROVIDER_ENV, UnknownProvider, check_credentials, provider_of

from _paths import DEFAULT_POLICY, FIXTURES, MACHINES, ROOT

INCIDENTS = FIXTURES / "incidents"
SELF_CONTAINED = INCIDENTS / "ml-intern-length-with-tool-calls.cassette.yaml"  # no sse_file references
POLICY = str(DEFAULT_POLICY)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------ --version, --help


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"loopspec {version('loopspec')}"


def _parsers(parser: argparse.ArgumentParser, name: str = "loopspec") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_argument_of_every_command_has_help() -> None:
    missing = []
    for name, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{name} {c.dest}" for c in action._choices_actions if not c.help]
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.metavar or action.dest}")
    assert not missing, f"arguments without help text: {missing}"


def _readme_exit_codes() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## Commands", 1)[1].split("\n\n", 2)[1]
    codes: dict[str, str] = {}
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        for command in re.findall(r"`(?:loopspec )?([a-z-]+)", cells[0]):
            codes[command] = cells[2].replace("\\|", "|")
    return codes


def test_exit_codes_in_help_match_the_readme_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert _readme_exit_codes() == EXIT_CODES
    parsers = dict(_parsers(build_parser()))
    for command, codes in EXIT_CODES.items():
        assert parsers[f"loopspec {command}"].epilog == f"Exit codes: {codes}.", command
    top = parsers["loopspec"].format_help()
    for command, codes in EXIT_CODES.items():
        assert re.search(rf"^\s+{re.escape(command)}\s+{re.escape(codes)}$", top, re.M), command


# ------------------------------------------------------------------- credentials without litellm


def test_provider_table_names_only_providers_litellm_knows() -> None:
    from loopspec.providers.litellm_provider import import_litellm

    litellm = import_litellm()
    assert set(PROVIDER_ENV) <= set(litellm.provider_list), set(PROVIDER_ENV) - set(litellm.provider_list)


@pytest.mark.parametrize(
    "model, provider",
    [
        ("openai/gpt-4o-mini", "openai"),
        ("gpt-4o", "openai"),
        ("o3-mini", "openai"),
        ("claude-3-5-haiku-latest", "anthropic"),
        ("anthropic/claude-3-5-haiku-latest", "anthropic"),
        ("groq/llama-3.1-8b-instant", "groq"),
        ("openrouter/anthropic/claude-3.5-sonnet", "openrouter"),
        ("deepseek/deepseek-chat", "deepseek"),
    ],
)
def test_provider_of(model: str, provider: str) -> None:
    assert provider_of(model) == provider


def test_missing_and_present_credentials() -> None:
    assert check_credentials("openai/gpt-4o", {}).missing == ("OPENAI_API_KEY",)
    assert check_credentials("openai/gpt-4o", {"OPENAI_API_KEY": "sk-x"}).missing == ()
    assert check_credentials("gpt-4o", {"OPENAI_API_KEY": ""}).missing == ("OPENAI_API_KEY",), "empty is missing"
    assert check_credentials("claude-3-5-haiku", {"ANTHROPIC_AUTH_TOKEN": "t"}).missing == ()
    assert check_credentials("groq/x", {}).missing == ("GROQ_API_KEY",)
    assert check_credentials("openrouter/a/b", {}).missing == ("OPENROUTER_API_KEY",)
    assert check_credentials("deepseek/deepseek-chat", {}).missing == ("DEEPSEEK_API_KEY",)
    assert set(check_credentials("azure/gpt", {"AZURE_API_KEY": "k"}).missing) == {"AZURE_API_BASE", "AZURE_API_VERSION"}
    assert check_credentials("ollama/llama3", {}).missing == (), "a local server needs no key"


def test_unknown_provider_names_the_closest_one() -> None:
    with pytest.raises(UnknownProvider, match=r"unknown provider 'opnai'.*did you mean 'openai/gpt-4o'\?"):
        provider_of("opnai/gpt-4o")
    with pytest.raises(UnknownProvider, match=r"write it as PROVIDER/MODEL \(e\.g\. 'gemini/gemini-pro'\)"):
        provider_of("gemini-pro")
    with pytest.raises(UnknownProvider, match=r"known providers: .*openai"):
        provider_of("zzz/model")
    with pytest.raises(UnknownProvider, match=r"the model name is empty"):
        provider_of(" ")
    with pytest.raises(UnknownProvider, match=r"model 'openai/' names no model after the '/'"):
        provider_of("openai/")


def _live_args(model: str, **kw: Any) -> argparse.Namespace:
    return argparse.Namespace(model=model, api_base=kw.get("api_base"), api_key=kw.get("api_key"))


def test_live_api_key_in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from loopspec.cli.run import live_api_key

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("LOOPSPEC_API_KEY", raising=False)
    assert live_api_key(_live_args("openai/gpt-4o"), "run") == (False, None)
    err = capsys.readouterr().err
    assert err.startswith("loopspec run: no credentials for model 'openai/gpt-4o': set OPENAI_API_KEY") and err.count("\n") == 1
    assert live_api_key(_live_args("openai/gpt-4o", api_key="sk-given"), "run") == (True, "sk-given")
    assert live_api_key(_live_args("openai/x", api_base="http://127.0.0.1:1"), "run") == (True, "sk-loopspec")
    assert live_api_key(_live_args("opnai/gpt-4o", api_base="http://127.0.0.1:1"), "fork") == (False, None)
    assert "loopspec fork: unknown provider 'opnai'" in capsys.readouterr().err
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert live_api_key(_live_args("gpt-4o"), "run") == (True, None), "litellm reads the variable itself"


def test_live_commands_fail_fast_without_importing_litellm(tmp_path: Path) -> None:
    """The failing paths of run, record, rerun and fork answer before litellm is imported (its import
    alone takes seconds; bench/ is where time is measured)."""
    cassette = str(SELF_CONTAINED)
    script = f"""
import json, sys
from loopspec.cli import main
P = {POLICY!r}
cases = [
    ["run", "hi", "--machine", P, "--model", "openai/gpt-4o-mini"],
    ["run", "hi", "--machine", P, "--model", "opnai/gpt-4o-mini"],
    ["run", "hi", "--machine", P, "--model", "mystery-model"],
    ["record", "hi", "--machine", P, "--model", "claude-3-5-haiku-latest", "-o", {str(tmp_path / 'r.cassette.yaml')!r}],
    ["rerun", {cassette!r}, "--machine", P, "--model", "groq/llama-3.1-8b-instant"],
    ["fork", {cassette!r}, "--at", "1", "--machine", P, "--model", "deepseek/deepseek-chat"],
]
codes = [main(argv) for argv in cases]
print(json.dumps({{"codes": codes, "litellm": "litellm" in sys.modules}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_AUTH_TOKEN"))}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out == {"codes": [2] * 6, "litellm": False}, result.stderr
    err = result.stderr
    assert "Traceback" not in err
    assert "loopspec run: no credentials for model 'openai/gpt-4o-mini': set OPENAI_API_KEY" in err
    assert "loopspec run: unknown provider 'opnai' in model 'opnai/gpt-4o-mini'; did you mean 'openai/gpt-4o-mini'?" in err
    assert "loopspec run: cannot tell which provider serves model 'mystery-model'" in err
    assert "loopspec record: no credentials for model 'claude-3-5-haiku-latest': set ANTHROPIC_API_KEY" in err
    assert "loopspec rerun: no credentials for model 'groq/llama-3.1-8b-instant': set GROQ_API_KEY" in err
    assert "loopspec fork: no credentials for model 'deepseek/deepseek-chat': set DEEPSEEK_API_KEY" in err


# ------------------------------------------------------------------------------------- diff


def _corpus_with_a_bad_cassette(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SELF_CONTAINED, corpus / SELF_CONTAINED.name)
    (corpus / "bad.cassette.yaml").write_text(
        "loopspec_cassette: 1\nmessages:\n  - {role: user, content: hi}\ninteractons: []\n", encoding="utf-8"
    )
    return corpus


def test_diff_refuses_a_corpus_with_an_invalid_cassette(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = _corpus_with_a_bad_cassette(tmp_path)
    code, out, err = run(capsys, "diff", POLICY, POLICY, "--corpus", str(corpus))
    assert code == 2
    assert f"{corpus / 'bad.cassette.yaml'}:4:1: error: unknown key 'interactons'" in err
    assert err.rstrip().endswith(f"loopspec diff: 1 invalid cassette under {corpus}; fix it or move it out of the corpus")
    assert "Traceback" not in err and out == ""


def test_diff_json_lists_the_invalid_cassette(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = _corpus_with_a_bad_cassette(tmp_path)
    code, out, _ = run(capsys, "diff", POLICY, POLICY, "--corpus", str(corpus), "--json")
    assert code == 2
    (bad,) = json.loads(out)["invalid"]
    assert bad["cassette"].endswith("bad.cassette.yaml")
    assert (bad["diagnostics"][0]["line"], bad["diagnostics"][0]["col"]) == (4, 1)


def test_diff_of_an_empty_folder_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "diff", POLICY, POLICY, "--corpus", str(tmp_path))
    assert code == 2 and err == f"loopspec diff: no cassettes (*.cassette.yaml) under {tmp_path}\n"


# -------------------------------------------------------------------------------- hostile input


HOSTILE: list[tuple[str, list[str], int, str]] = [
    ("graph a folder", ["graph", str(MACHINES)], 2, "cannot read file: Is a directory"),
    ("graph -o a folder", ["graph", POLICY, "-o", "{tmp}"], 2, "loopspec graph: cannot write {tmp}: Is a directory"),
    ("graph -o no folder", ["graph", POLICY, "-o", "{tmp}/no/such.md"], 2, "loopspec graph: cannot write {tmp}/no/such.md: No such file"),
    ("check a folder", ["check", str(MACHINES)], 2, "cannot read file: Is a directory"),
    ("check counterexample no folder", ["check", str(MACHINES / "hermes_pre_32012.yaml"), "--counterexample", "{tmp}/no/cx.json"], 2,
     "loopspec check: cannot write {tmp}/no/cx.json: No such file or directory"),
    ("replay a policy as a cassette", ["replay", POLICY, "--machine", POLICY], 1,
     f"{POLICY}:14:1: error: this is a policy ('loopspec:'), not a cassette; a policy goes after --machine"),
    ("replay with a cassette as machine", ["replay", POLICY, "--machine", str(SELF_CONTAINED)], 2,
     f"{SELF_CONTAINED}:1:1: error: this is a cassette ('loopspec_cassette:'), not a policy"),
    ("validate a cassette", ["validate", str(SELF_CONTAINED)], 1, "this is a cassette ('loopspec_cassette:'), not a policy"),
    ("replay with a folder as machine", ["replay", str(INCIDENTS), "--machine", str(MACHINES)], 2, "cannot read file: Is a directory"),
    ("replay unknown transport", ["replay", str(INCIDENTS), "--machine", POLICY, "--transport", "grpc"], 2, "invalid choice: 'grpc'"),
    ("diff missing corpus", ["diff", POLICY, POLICY, "--corpus", "{tmp}/nope"], 2, "cannot read file: No such file or directory"),
    ("fork --at too big", ["fork", str(SELF_CONTAINED), "--at", "99", "--machine", POLICY, "--model", "openai/x",
                           "--api-base", "http://127.0.0.1:1"], 2, "loopspec fork: --at must be between 0 and"),
    ("fork --at negative", ["fork", str(SELF_CONTAINED), "--at", "-1", "--machine", POLICY, "--model", "openai/x",
                            "--api-base", "http://127.0.0.1:1"], 2, "not -1"),
    ("fork --at not a number", ["fork", str(SELF_CONTAINED), "--at", "two", "--machine", POLICY, "--model", "openai/x"], 2,
     "argument --at: invalid int value: 'two'"),
    ("fork a folder", ["fork", str(INCIDENTS), "--at", "1", "--machine", POLICY, "--model", "openai/x",
                       "--api-base", "http://127.0.0.1:1"], 2, "cannot read file: Is a directory"),
    ("rerun a missing cassette", ["rerun", "{tmp}/gone.cassette.yaml", "--machine", POLICY, "--model", "openai/x",
                                  "--api-base", "http://127.0.0.1:1"], 2, "cannot read file: No such file"),
    ("record --time-scale 0", ["record", "hi", "--machine", POLICY, "--model", "openai/x", "--time-scale", "0", "-o", "{tmp}/r.cassette.yaml"], 2,
     "argument --time-scale: must be a number above 0"),
    ("record --time-scale word", ["record", "hi", "--machine", POLICY, "--model", "openai/x", "--time-scale", "fast", "-o", "x"], 2,
     "argument --time-scale: expected a number, got 'fast'"),
    ("record into a folder", ["record", "hi", "--machine", POLICY, "--model", "openai/x", "--api-base", "http://127.0.0.1:1", "-o", "{tmp}"], 2,
     "loopspec record: cannot write {tmp}: it is a folder"),
    ("record into no folder", ["record", "hi", "--machine", POLICY, "--model", "openai/x", "--api-base", "http://127.0.0.1:1",
                               "-o", "{tmp}/no/r.cassette.yaml"], 2, "loopspec record: cannot write {tmp}/no/r.cassette.yaml: no such folder"),
    ("record into an empty path", ["record", "hi", "--machine", POLICY, "--model", "openai/x", "-o", ""], 2,
     "loopspec record: cannot write '': the path is empty"),
    ("import a folder", ["import", "{tmp}", "-o", "{tmp}/x.cassette.yaml"], 1, "cannot read the transcript: Is a directory"),
    ("run an unknown provider", ["run", "hi", "--machine", POLICY, "--model", "antropic/claude-3-5-haiku"], 2,
     "did you mean 'anthropic/claude-3-5-haiku'?"),
    ("run --journal into a folder", ["run", "hi", "--machine", POLICY, "--model", "openai/x", "--api-base", "http://127.0.0.1:1",
                                     "--journal", "{tmp}"], 2, "loopspec run: {tmp}: cannot open the journal"),
    ("run --journal on a policy file", ["run", "hi", "--machine", POLICY, "--model", "openai/x", "--api-base", "http://127.0.0.1:1",
                                        "--journal", POLICY], 2, "not a loopspec journal"),
]


@pytest.mark.parametrize("argv, code, expected", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_input_gets_one_clean_error(
    argv: list[str], code: int, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    rc, _out, err = run(capsys, *argv)
    assert rc == code, err
    assert expected.replace("{tmp}", str(tmp_path)) in err
    assert "Traceback" not in err
    assert len(err.splitlines()) <= 7, err  # argparse's usage of replay (6 lines) and the error


def test_store_trace_that_cannot_write_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import loopspec.replay.cassette as cassette_module

    def refuse(path: str, *_: object) -> None:
        raise PermissionError(1, "Operation not permitted", path)

    monkeypatch.setattr(cassette_module, "store_trace", refuse)
    code, _, err = run(capsys, "replay", str(SELF_CONTAINED), "--machine", POLICY, "--store-trace")
    assert code == 1
    assert err == f"loopspec replay: cannot store the trace in {SELF_CONTAINED}: Operation not permitted\n"


def test_an_unforeseen_os_error_is_still_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import loopspec.language.graph as graph_module

    def broken(policy: object) -> str:
        raise OSError(5, "Input/output error", "/dev/broken")

    monkeypatch.setattr(graph_module, "to_mermaid", broken)
    code, _, err = run(capsys, "graph", POLICY)
    assert code == 1 and err == "loopspec graph: /dev/broken: Input/output error\n"
