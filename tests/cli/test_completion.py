"""Shell completion, driven the way a shell drives it: ``loopspec`` runs in a subprocess with
argcomplete's environment (``_ARGCOMPLETE=1``, ``COMP_LINE``, ``COMP_POINT``) and writes its
candidates to ``_ARGCOMPLETE_STDOUT_FILENAME`` (or, through the real bash hook, to fd 8). Also: the
hook ``loopspec completion SHELL`` prints, and that ordinary commands never import argcomplete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loopspec.cli import build_parser, main
from loopspec.cli.completion import PathCompleter

from _paths import DEFAULT_POLICY, ROOT
from _size import SIZE  # "N states, M counters" of default.yaml, as validate prints it

SUBCOMMANDS = {"validate", "graph", "schema", "check", "cover", "run", "resume", "replay", "diff", "rerun", "fork", "import", "record",
               "cassette-schema", "completion"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_ARGCOMPLETE", "COMP_"))}
    bindir = os.path.dirname(sys.executable)  # the venv's console script ``loopspec``
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def complete(line: str, cwd: Path, tmp_path: Path) -> list[str]:
    """The candidates ``loopspec`` offers with the cursor at the end of ``line``."""
    out = tmp_path / "completions.out"
    done = subprocess.run(
        [sys.executable, "-m", "loopspec"],
        env=_env(_ARGCOMPLETE="1", COMP_LINE=line, COMP_POINT=str(len(line)),
                 _ARGCOMPLETE_STDOUT_FILENAME=str(out)),
        cwd=cwd, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", "completions go to the named file, never stdout"
    text = out.read_text(encoding="utf-8")
    return [c.rstrip(" ") for c in text.split("\x0b")] if text else []


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with one file of each kind, a subfolder and a hidden policy."""
    work = tmp_path / "work"
    (work / "corpus").mkdir(parents=True)
    for name in ("a.yaml", "b.yml", "c.cassette.yaml", "notes.txt", "chat.jsonl", ".hidden.yaml"):
        (work / name).write_text("", encoding="utf-8")
    (work / "corpus" / "d.cassette.yaml").write_text("", encoding="utf-8")
    return work


def test_subcommand_names_complete(tmp_path: Path) -> None:
    assert set(complete("loopspec ", ROOT, tmp_path)) == SUBCOMMANDS, "options wait for a '-'"
    assert complete("loopspec ch", ROOT, tmp_path) == ["check"]
    assert sorted(complete("loopspec re", ROOT, tmp_path)) == ["record", "replay", "rerun", "resume"]
    assert sorted(complete("loopspec --color never c", ROOT, tmp_path)) == ["cassette-schema", "check", "completion", "cover"]


def test_options_and_choices_complete(tmp_path: Path) -> None:
    assert set(complete("loopspec check --", ROOT, tmp_path)) == {"--help", "--strict", "--json", "--counterexample", "--color"}
    assert set(complete("loopspec --", ROOT, tmp_path)) == {"--help", "--version", "--color"}
    assert complete("loopspec replay x --trans", ROOT, tmp_path) == ["--transport"]
    assert complete("loopspec graph x.yaml --format ", ROOT, tmp_path) == ["mermaid", "dot"]
    assert complete("loopspec check x.yaml --color a", ROOT, tmp_path) == ["auto", "always"]
    assert complete("loopspec completion ", ROOT, tmp_path) == ["bash", "zsh", "fish"]
    assert sorted(complete("loopspec run hi --model op", ROOT, tmp_path)) == ["openai/", "openrouter/"]


def test_file_arguments_complete_by_kind(workdir: Path, tmp_path: Path) -> None:
    policies = ["a.yaml", "b.yml", "corpus/"]
    assert complete("loopspec check ", workdir, tmp_path) == policies, "policies, not cassettes or other files"
    assert complete("loopspec validate a.yaml ", workdir, tmp_path) == policies
    assert complete("loopspec replay c.cassette.yaml --machine ", workdir, tmp_path) == policies
    assert complete("loopspec replay ", workdir, tmp_path) == ["c.cassette.yaml", "corpus/"]
    assert complete("loopspec replay corpus/", workdir, tmp_path) == ["corpus/d.cassette.yaml"]
    assert complete("loopspec diff a.yaml b.yml --corpus ", workdir, tmp_path) == ["corpus/"]
    assert complete("loopspec import ", workdir, tmp_path) == ["chat.jsonl", "corpus/"]
    assert complete("loopspec check .", workdir, tmp_path) == [".hidden.yaml"]
    assert complete("loopspec run ", workdir, tmp_path) == [], "a prompt is free text"


def test_path_completer_in_process(workdir: Path) -> None:
    folder = str(workdir) + "/"
    assert PathCompleter((".yaml",), exclude=(".cassette.yaml",))(folder) == [folder + "a.yaml", folder + "corpus/"]
    assert PathCompleter(folders_only=True)(folder + "c") == [folder + "corpus/"]
    assert PathCompleter()(str(workdir / "no" / "such") + "/") == []


def test_the_bash_hook_completes_through_fd_8(tmp_path: Path) -> None:
    """The hook ``loopspec completion bash`` prints, sourced in bash and called as bash calls it."""
    script = ('eval "$(loopspec completion bash)"; COMP_LINE="loopspec rep"; COMP_POINT=${#COMP_LINE}; '
              '_python_argcomplete loopspec; printf "%s\\n" "${COMPREPLY[@]}"; complete -p loopspec')
    done = subprocess.run(["bash", "-c", script], env=_env(), cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["replay ", "complete -o bashdefault -o default -o nospace -F _python_argcomplete loopspec"]


@pytest.mark.parametrize("shell, marker", [
    ("bash", "complete -o nospace -o default -o bashdefault -F _python_argcomplete loopspec"),
    ("zsh", "compdef _python_argcomplete loopspec"),
    ("fish", "complete --command loopspec"),
])
def test_completion_prints_the_hook(shell: str, marker: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    out = capsys.readouterr().out
    assert marker in out


def test_the_bash_hook_parses(capsys: pytest.CaptureFixture[str]) -> None:
    main(["completion", "bash"])
    done = subprocess.run(["bash", "-n"], input=capsys.readouterr().out, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_completion_of_an_unknown_shell_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "tcsh"]) == 2
    assert "argument SHELL: invalid choice: 'tcsh'" in capsys.readouterr().err
    assert main(["completion"]) == 2


def test_ordinary_commands_never_import_argcomplete_or_litellm(tmp_path: Path) -> None:
    """Start-up stays what it was: argcomplete loads only when a shell asks for completions."""
    script = f"""
import json, sys
from loopspec.cli import main
codes = [main(["validate", {str(DEFAULT_POLICY)!r}]), main(["check", {str(DEFAULT_POLICY)!r}]),
         main(["--color", "always", "validate", {str(DEFAULT_POLICY)!r}])]
print(json.dumps({{"codes": codes, "loaded": sorted(m for m in ("argcomplete", "litellm") if m in sys.modules)}}))
"""
    done = subprocess.run([sys.executable, "-c", script], env=_env(), cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"codes": [0, 0, 0], "loaded": []}


def test_every_metavar_is_completed_or_known_free_text() -> None:
    """A new argument with a new metavar (a new kind of file?) must be added to COMPLETERS, or here."""
    from loopspec.cli.completion import COMPLETERS
    from test_cli import _parsers

    # numbers, the subcommand and shell (choices complete), shards, percentages, outcome lists
    free_text = {"K", "F", "COMMAND", "SHELL", "N", "PCT", "TURN_ID", "CALL_ID", "I/N", "PERCENT", "OUTCOME,..."}
    used = {a.metavar for _, p in _parsers(build_parser()) for a in p._actions if isinstance(a.metavar, str)}
    assert used - free_text - set(COMPLETERS) == set()


def test_main_called_with_arguments_never_completes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A program (or test) calling ``main([...])`` with _ARGCOMPLETE in its environment runs the
    command; only the console script answers completion requests (argcomplete exits the process)."""
    cli_main = sys.modules["loopspec.cli.main"]  # the package's ``main`` attribute is the function
    asked: list[object] = []
    monkeypatch.setattr(cli_main, "autocomplete", asked.append)
    monkeypatch.setenv("_ARGCOMPLETE", "1")
    assert main(["validate", str(DEFAULT_POLICY)]) == 0
    assert asked == [] and capsys.readouterr().out.endswith(f"ok ({SIZE})\n")
