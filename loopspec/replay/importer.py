"""Turn a saved agent session (an OpenAI-format message transcript) into a cassette.

Accepted inputs, as agents save sessions:

* a JSON array of messages;
* a JSON object with a ``messages`` key (and optionally ``tools``, OpenAI ``tools`` entries);
* JSONL, one message per line (a line that is an object with ``tools`` and no ``role`` supplies
  the tool schemas).

The messages up to and including the first user message open the turn. Each later assistant
message becomes one recorded model response (chunks built by :func:`~loopspec.replay.synth.reply_chunks`:
reasoning, text, tool calls with their raw ``arguments`` string; finish ``tool_calls``/``stop`` or
the message's own ``finish_reason``); each ``tool`` message becomes a ``tool_results`` entry, its
tool named by the assistant tool call it answers. Later user and system messages are not model
output: they are left out (a policy writes its own continuation prompts) and reported.

Bad input never raises a traceback: :class:`TranscriptError` carries diagnostics naming the file
and the JSONL line or the JSON path.
"""

from __future__ import annotations

import loopspec.language.codes as codes

from loopspec.language.errors import DiagnosticError

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from loopspec.language.diagnostics import Diagnostic, Position, article
from loopspec.language.yamlsource import MAX_DEPTH

from .cassette import Cassette, Expectations, ToolOutcome, ToolSpec
from .cassette_writer import cassette_to_data
from .interactions import Interaction, StreamResponse
from .redact import env_secrets, redact
from .synth import reply_chunks

__all__ = ["TranscriptError", "Transcript", "ImportResult", "read_transcript", "transcript_to_cassette", "import_transcript"]

_ROLES = ("system", "developer", "user", "assistant", "tool")


class TranscriptError(DiagnosticError):
    """The transcript cannot be imported; ``diagnostics`` say where and why."""


@dataclass
class Transcript:
    """Messages as read, each with where it came from (JSON path, JSONL line)."""

    file: str
    format: str
    messages: list[dict[str, Any]]
    paths: list[str]
    lines: list[int | None]
    tools: list[Any] | None = None
    tools_path: str = "tools"


@dataclass
class ImportResult:
    cassette: Cassette
    notes: list[str] = field(default_factory=list)
    """Things the import left out or guessed, for the user to know."""
    replies: list[dict[str, Any]] = field(default_factory=list)
    """Each response in the cassette's ``reply:`` form (the same chunks, as the reader builds them)."""
    secrets: tuple[str, ...] = ()
    """The literal secrets redacted, for the writer's second pass over the text."""

    def to_data(self) -> dict[str, Any]:
        """The cassette as YAML-ready data, each response written in the short ``reply:`` form.

        ``reply: {text, reasoning, tool_calls, finish}`` is read back through the same
        ``reply_chunks`` call that built the chunks, so the file replays identically and stays
        readable and editable.
        """
        data = cassette_to_data(self.cassette)
        data["interactions"] = [{"reply": r} for r in self.replies]
        return data


def _diag(file: str, message: str, path: str = "", line: int | None = None, col: int = 1, hint: str = "") -> TranscriptError:
    pos = Position(line, col) if line is not None else None
    return TranscriptError([Diagnostic(codes.BAD_TRANSCRIPT, message, file, path, pos, hint)])


def read_transcript(path: str) -> Transcript:
    """Read a transcript file in any of the accepted forms; raises :class:`TranscriptError`."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise _diag(path, f"cannot read the transcript: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise _diag(path, f"the transcript is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise _diag(path, "the transcript is empty", hint="expected a JSON array of messages, {\"messages\": [...]}, or JSONL")
    try:
        doc = _loads(path, text)
    except json.JSONDecodeError as whole:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) <= 1:
            raise _diag(path, f"not JSON: {whole.msg}", line=whole.lineno, col=whole.colno) from None
        return _read_jsonl(path, text)
    _check_depth(path, doc, "$")
    if isinstance(doc, list):
        return _from_list(path, "json", doc, "$")
    if isinstance(doc, dict):
        if "messages" in doc:
            msgs = doc["messages"]
            if not isinstance(msgs, list):
                raise _diag(path, f"'messages' must be a list of messages, not {_kind(msgs)}", "$.messages")
            t = _from_list(path, "json", msgs, "$.messages")
            t.tools, t.tools_path = doc.get("tools"), "$.tools"
            return t
        if "role" in doc:  # a one-line JSONL file
            return _read_jsonl(path, text)
        raise _diag(path, "a transcript object needs a 'messages' key", "$",
                    hint=f"found keys: {', '.join(sorted(map(str, doc))) or '(none)'}")
    raise _diag(path, f"a transcript is a list of messages or an object with 'messages', not {_kind(doc)}", "$")


def _read_jsonl(path: str, text: str) -> Transcript:
    msgs: list[dict[str, Any]] = []
    paths: list[str] = []
    lines: list[int | None] = []
    tools: list[Any] | None = None
    tools_path = "tools"
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = _loads(path, raw, n)
        except json.JSONDecodeError as exc:
            raise _diag(path, f"line {n} is not JSON: {exc.msg}", line=n, col=exc.colno,
                        hint="JSONL holds one JSON message object per line") from None
        _check_depth(path, obj, f"line {n}", n)
        if isinstance(obj, dict) and "role" not in obj and "tools" in obj:
            tools, tools_path = obj["tools"], f"line {n}: tools"
            continue
        if not isinstance(obj, dict):
            raise _diag(path, f"line {n} is {_kind(obj)}, not a message object", line=n)
        msgs.append(obj)
        paths.append("")
        lines.append(n)
    return Transcript(path, "jsonl", msgs, paths, lines, tools, tools_path)


_TOO_DEEP_HINT = f"a cassette nests at most {MAX_DEPTH} levels; a chat message is a few levels deep, so this is not a session"


def _loads(path: str, text: str, line: int | None = None) -> Any:
    """``json.loads``, with nesting too deep for Python's parser as a diagnostic, not a RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise _diag(path, "the JSON nests too deeply to read", line=line, hint=_TOO_DEEP_HINT) from None


def _check_depth(path: str, doc: Any, where: str, line: int | None = None) -> None:
    """Refuse nesting the cassette could not hold (the YAML reader's limit), before anything
    recursive (redaction, the YAML writer) walks it. Iterative, so no depth can overflow it."""
    stack: list[tuple[Any, str, int]] = [(doc, where, 0)]
    while stack:
        value, at, depth = stack.pop()
        if depth > MAX_DEPTH - 8:  # the cassette wraps a message in a few levels of its own
            raise _diag(path, f"nesting deeper than {MAX_DEPTH - 8} levels at {at}", at, line, hint=_TOO_DEEP_HINT)
        if isinstance(value, dict):
            stack += [(v, f"{at}.{k}", depth + 1) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, f"{at}[{i}]", depth + 1) for i, v in enumerate(value)]


def _from_list(path: str, fmt: str, items: list[Any], base: str) -> Transcript:
    for i, m in enumerate(items):
        if not isinstance(m, dict):
            raise _diag(path, f"a message must be an object, not {_kind(m)}", f"{base}[{i}]")
    return Transcript(path, fmt, list(items), [f"{base}[{i}]" for i in range(len(items))], [None] * len(items))


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number" if isinstance(v, (int, float)) else type(v).__name__
    )


class _Where:
    def __init__(self, t: Transcript) -> None:
        self.t = t

    def fail(self, i: int, message: str, sub: str = "", hint: str = "") -> TranscriptError:
        path = self.t.paths[i] + sub if self.t.paths[i] else sub.lstrip(".")
        return _diag(self.t.file, message, path, self.t.lines[i], 1, hint)


def _text_of(content: Any) -> str | None:
    """Plain text of a message's content: a string, or the text parts of a parts list."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, dict) and isinstance(p.get("text"), str):
                parts.append(p["text"])
        return "".join(parts)
    return None


def _tool_specs(t: Transcript, used: list[str]) -> tuple[list[ToolSpec], list[str]]:
    notes: list[str] = []
    if t.tools is None:
        if used:
            notes.append(f"no tool schemas in the transcript: inferred {{type: object}} for {', '.join(used)}")
        return [ToolSpec(n, {"type": "object"}) for n in used], notes
    if not isinstance(t.tools, list):
        raise _diag(t.file, f"'tools' must be a list, not {_kind(t.tools)}", t.tools_path)
    specs: list[ToolSpec] = []
    for j, entry in enumerate(t.tools):
        where = f"{t.tools_path}[{j}]"
        fn = entry.get("function") if isinstance(entry, dict) and isinstance(entry.get("function"), dict) else entry
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _diag(t.file, "a tool needs a name ({type: function, function: {name, parameters}})", where)
        params = fn.get("parameters", {"type": "object"})
        if not isinstance(params, dict):
            raise _diag(t.file, f"a tool's parameters must be a JSON Schema object, not {_kind(params)}", f"{where}.parameters")
        specs.append(ToolSpec(fn["name"], params, str(fn.get("description") or "")))
    missing = [n for n in used if n not in {s.name for s in specs}]
    if missing:
        notes.append(f"the model called tools the transcript's 'tools' does not list ({', '.join(missing)}); "
                     "replay presents them as unknown tools, as the session did")
    return specs, notes


def transcript_to_cassette(
    t: Transcript, *, name: str | None = None, redact_secrets: bool = True, secrets: Iterable[str] | None = None
) -> ImportResult:
    """Build the cassette for a transcript; raises :class:`TranscriptError` on wrong shapes.

    Secrets are redacted: the patterns of :mod:`.redact`, plus ``secrets`` (default: the values
    of credential-named environment variables, as ``loopspec record`` does)."""
    w = _Where(t)
    # Redact before the chunks are cut, so that no secret ends up split across chunks.
    literal = tuple(env_secrets() if secrets is None else secrets)
    msgs = redact(t.messages, literal) if redact_secrets else t.messages
    for i, m in enumerate(msgs):
        role = m.get("role")
        if role not in _ROLES:
            raise w.fail(i, f"message role {role!r} is not one of {', '.join(_ROLES)}", ".role")
    first_user = next((i for i, m in enumerate(msgs) if m.get("role") == "user"), None)
    if first_user is None:
        raise _diag(t.file, "the transcript has no user message, so there is no turn to import",
                    hint="a turn starts at the first user message")
    opening: list[dict[str, Any]] = []
    for i, m in enumerate(msgs[: first_user + 1]):
        if m.get("role") not in ("system", "developer", "user"):
            raise w.fail(i, f"{article(m.get('role'))} message before the first user message",
                         hint="the opening of a turn is system messages and the first user message")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise w.fail(i, f"a message's content must be text, a list of parts or null, not {_kind(content)}", ".content")
        opening.append({"role": "system" if m["role"] == "developer" else m["role"], "content": content})
    interactions: list[Interaction] = []
    replies: list[dict[str, Any]] = []
    results: list[ToolOutcome] = []
    used: list[str] = []
    call_names: dict[str, str] = {}
    answered: set[str] = set()
    skipped = 0
    notes: list[str] = []
    for i in range(first_user + 1, len(msgs)):
        m = msgs[i]
        role = m["role"]
        if role == "assistant":
            reply = _reply(w, i, m, call_names, used)
            replies.append(reply)
            interactions.append(StreamResponse(chunks=tuple(reply_chunks(
                reply.get("text", ""), reasoning=reply.get("reasoning", ""),
                tool_calls=[(c["name"], c["arguments"]) for c in reply.get("tool_calls", [])],
                finish=reply.get("finish")))))
        elif role == "tool":
            results.append(_tool_result(w, i, m, call_names, answered))
        else:
            skipped += 1
    if skipped:
        notes.append(f"{skipped} later user/system messages were left out: a cassette holds the model's and the tools' "
                     "side of one turn, and the policy writes its own follow-up prompts")
    if not interactions:
        raise _diag(t.file, "the transcript has no assistant message after the first user message, so there is no model "
                    "response to record")
    tools, tool_notes = _tool_specs(t, used)
    notes += tool_notes
    base = os.path.basename(t.file)
    cassette = Cassette(
        name=name or base.split(".")[0],
        file="",
        messages=tuple(opening),
        interactions=tuple(interactions),
        tools=tuple(tools),
        tool_results=tuple(results),
        expect=Expectations(properties=("history_valid",)),
        doc=f"Imported from {base} by loopspec import: {len(interactions)} model responses, {len(results)} tool results.",
        source={"imported_from": base, "format": t.format, "messages": len(msgs)},
    )
    return ImportResult(cassette, notes, replies, literal)


def _reply(w: _Where, i: int, m: dict[str, Any], call_names: dict[str, str], used: list[str]) -> dict[str, Any]:
    """One assistant message as a cassette ``reply:`` (text, reasoning, tool calls with their raw
    arguments string, finish)."""
    text = "" if m.get("content") is None else _text_of(m.get("content"))
    if text is None:
        raise w.fail(i, f"an assistant message's content must be text, a list of parts or null, not {_kind(m.get('content'))}", ".content")
    reasoning = m.get("reasoning_content", m.get("reasoning")) or ""
    if not isinstance(reasoning, str):
        reasoning = _text_of(reasoning) or ""
    calls: list[tuple[str, str]] = []
    raw_calls = m.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise w.fail(i, f"tool_calls must be a list, not {_kind(raw_calls)}", ".tool_calls")
    for j, tc in enumerate(raw_calls):
        sub = f".tool_calls[{j}]"
        fn = tc.get("function") if isinstance(tc, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise w.fail(i, "a tool call needs function.name", sub, hint='{"id": ..., "type": "function", "function": {"name": ..., "arguments": "..."}}')
        args = fn.get("arguments", "")
        if args is None:
            args = ""
        if not isinstance(args, str):
            args = json.dumps(args)  # some transcripts store parsed arguments
        calls.append((fn["name"], args))
        if fn["name"] not in used:
            used.append(fn["name"])
        if isinstance(tc.get("id"), str) and tc["id"]:
            call_names[tc["id"]] = fn["name"]
    finish = m.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise w.fail(i, f"finish_reason must be a string, not {_kind(finish)}", ".finish_reason")
    reply: dict[str, Any] = {}
    if reasoning:
        reply["reasoning"] = reasoning
    if text:
        reply["text"] = text
    if calls:
        reply["tool_calls"] = [{"name": n, "arguments": a} for n, a in calls]
    if finish is not None:
        reply["finish"] = finish
    return reply


def _tool_result(w: _Where, i: int, m: dict[str, Any], call_names: dict[str, str], answered: set[str]) -> ToolOutcome:
    call_id = m.get("tool_call_id")
    if isinstance(call_id, str) and call_id in call_names:
        tool = call_names[call_id]
        answered.add(call_id)
    elif call_id is None and isinstance(m.get("name"), str):
        tool = m["name"]
    else:
        known = ", ".join(sorted(call_names)) or "none"
        raise w.fail(i, f"tool result answers tool_call_id {call_id!r}, which no earlier assistant tool call has",
                     ".tool_call_id", hint=f"tool call ids so far: {known}")
    content = m.get("content")
    text = "" if content is None else _text_of(content)
    if text is None:
        text = json.dumps(content)
    if m.get("is_error") is True:
        return ToolOutcome(tool, error=text)
    return ToolOutcome(tool, result=text)


def import_transcript(
    path: str, *, name: str | None = None, redact_secrets: bool = True, secrets: Iterable[str] | None = None
) -> ImportResult:
    """Read a transcript file and build its cassette; raises :class:`TranscriptError`."""
    return transcript_to_cassette(read_transcript(path), name=name, redact_secrets=redact_secrets, secrets=secrets)
