"""Shell completion through argcomplete, and ``loopspec completion {bash,zsh,fish}``.

argcomplete works by running the program itself: the shell hook calls ``loopspec`` with
``_ARGCOMPLETE`` and ``COMP_LINE``/``COMP_POINT`` in the environment, the program builds its parser
and hands it to argcomplete, which writes the candidates to file descriptor 8 (or
``_ARGCOMPLETE_STDOUT_FILENAME``) and exits. :func:`autocomplete` does that only when
``_ARGCOMPLETE`` is set, and imports argcomplete only then, so an ordinary ``validate`` or ``check``
never pays for it.

Which arguments complete to what is decided here, by metavar, in one table: policies to ``*.yaml``
and ``*.yml`` files (not cassettes), cassettes to ``*.cassette.yaml`` files, transcripts to JSON,
folders to folders, ``--model`` to the providers loopspec knows (``openai/``, ...). Free text (the
prompt, ``--name``) completes to nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Iterable

from .common import EXIT_OK, exit_epilog, fail

SHELLS = ("bash", "zsh", "fish")

POLICY_SUFFIXES = (".yaml", ".yml")
CASSETTE_SUFFIXES = (".cassette.yaml", ".cassette.yml")


class PathCompleter:
    """Completes a path argument: folders (ending in ``/`` so the shell keeps going) and the files
    whose names end in one of ``suffixes`` (any file when ``suffixes`` is None; none with
    ``folders_only``), minus those ending in one of ``exclude``. Hidden entries are offered only
    once the prefix starts with a dot."""

    def __init__(self, suffixes: tuple[str, ...] | None = None, *, exclude: tuple[str, ...] = (),
                 folders_only: bool = False) -> None:
        self.suffixes = suffixes
        self.exclude = exclude
        self.folders_only = folders_only

    def __call__(self, prefix: str, **_: Any) -> list[str]:
        head, tail = os.path.split(prefix)
        try:
            entries = list(os.scandir(os.path.expanduser(head) or "."))
        except OSError:
            return []
        found = []
        for entry in entries:
            name = entry.name
            if not name.startswith(tail) or (name.startswith(".") and not tail.startswith(".")):
                continue
            shown = os.path.join(head, name)
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if is_dir:
                found.append(shown + "/")
            elif not self.folders_only and self._wanted(name):
                found.append(shown)
        return sorted(found)

    def _wanted(self, name: str) -> bool:
        if name.endswith(self.exclude) and self.exclude:
            return False
        return self.suffixes is None or name.endswith(self.suffixes)


def complete_model(prefix: str, **_: Any) -> list[str]:
    """``--model``: ``PROVIDER/`` for every provider loopspec knows the credentials of."""
    from loopspec.providers.credentials import PROVIDER_ENV

    return sorted(f"{p}/" for p in PROVIDER_ENV if f"{p}/".startswith(prefix))


def complete_tool_choice(prefix: str, **_: Any) -> list[str]:
    """``--tool-choice``: the three named choices (a tool's name is free text)."""
    return [c for c in ("auto", "required", "none") if c.startswith(prefix)]


# metavar (or option) -> completer; everything else completes to nothing.
COMPLETERS: dict[str, Any] = {
    "FILE": PathCompleter(POLICY_SUFFIXES, exclude=CASSETTE_SUFFIXES),
    "OLD": PathCompleter(POLICY_SUFFIXES, exclude=CASSETTE_SUFFIXES),
    "NEW": PathCompleter(POLICY_SUFFIXES, exclude=CASSETTE_SUFFIXES),
    "PATH": PathCompleter(CASSETTE_SUFFIXES),
    "CASSETTE": PathCompleter(CASSETTE_SUFFIXES),
    "DIR": PathCompleter(folders_only=True),
    "TRANSCRIPT": PathCompleter((".json", ".jsonl")),
    "OUT": PathCompleter(),
    "--model": complete_model,
    "CHOICE": complete_tool_choice,
}


def _parsers(parser: argparse.ArgumentParser) -> Iterable[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def attach_completers(parser: argparse.ArgumentParser) -> None:
    """Give every argument of every subcommand its completer from :data:`COMPLETERS`."""
    for p in _parsers(parser):
        for action in p._actions:
            key = next((o for o in action.option_strings if o in COMPLETERS), action.metavar)
            completer = COMPLETERS.get(key) if isinstance(key, str) else None
            if completer is not None:
                action.completer = completer  # type: ignore[attr-defined]  # argcomplete's protocol


def autocomplete(parser: argparse.ArgumentParser) -> None:
    """When the shell asks for completions (``_ARGCOMPLETE`` set), answer and exit; otherwise return
    at once without importing anything."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete

    attach_completers(parser)
    # Options are offered once a "-" is typed, so `loopspec <TAB>` lists the subcommands alone.
    # Free text (a prompt, a name, a number) has no completer of its own: no candidates, not files.
    argcomplete.autocomplete(parser, always_complete_options=False, default_completer=argcomplete.SuppressCompleter())


def cmd_completion(args: argparse.Namespace) -> int:
    try:
        import argcomplete
    except ImportError:  # a dependency, but an install can still lack it
        return fail("completion", "argcomplete is not installed (pip install argcomplete)")
    sys.stdout.write(argcomplete.shellcode(["loopspec"], shell=args.shell))
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "completion",
        help="print the shell hook that completes loopspec's commands, options and files",
        epilog=exit_epilog("completion"),
        description=(
            "Print the code that makes SHELL complete loopspec's subcommands, options and file "
            "arguments (policies to *.yaml, cassettes to *.cassette.yaml). Load it from your shell's "
            "start-up file: bash: eval \"$(loopspec completion bash)\" in ~/.bashrc; zsh: the same in "
            "~/.zshrc, after compinit; fish: loopspec completion fish > "
            "~/.config/fish/completions/loopspec.fish"
        ),
    )
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help=f"the shell to print the hook for: {', '.join(SHELLS)}")
    p.set_defaults(handler=cmd_completion)
