"""Hostile cassettes (loopspec issue #14): every wrong value is one diagnostic naming
``file:line:col`` and the field, never a traceback and never a silent reading of it as something
else; ``sse_file`` reads only regular files inside the cassette's folder (or a root the user
widened it to), size-capped like the YAML."""

from __future__ import annotations

import copy
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopspec.language import codes
from loopspec.replay.cassette import read_cassette
from loopspec.replay.cassette_files import FILES_ROOT_ENV, MAX_SIDE_FILE_BYTES

VALID: dict[str, Any] = {
    "loopspec_cassette": 1,
    "messages": [{"role": "user", "content": "hi"}],
    "tools": [{"name": "t", "parameters": {"type": "object"}}],
    "interactions": [{"reply": {"text": "hello"}}],
}
SSE = "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"hi\"}}]}\n\ndata: [DONE]\n\n"


@pytest.fixture(autouse=True)
def _own_folder_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite widens the files root to the repository for the incident corpus; here the default holds."""
    monkeypatch.delenv(FILES_ROOT_ENV, raising=False)


def write(folder: Path, doc: Any, name: str = "c.cassette.yaml") -> str:
    path = folder / name
    # libyaml's emitter when the wheel has it: the pure-Python one took 80 % of this module's time.
    path.write_text(yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False))
    return str(path)


def with_value(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    node: Any = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


# path in the document -> bad value, the diagnostic's path, a piece of its message
WRONG: dict[str, tuple[tuple[Any, ...], Any, str, str]] = {
    "version true": (("loopspec_cassette",), True, "loopspec_cassette", "loopspec_cassette: True"),
    "version 1.0": (("loopspec_cassette",), 1.0, "loopspec_cassette", "loopspec_cassette: 1.0"),
    "content mapping": (("messages", 0, "content"), {"text": "hi"}, "messages[0].content", "content is text, a list of parts or null"),
    "parameters text": (("tools", 0, "parameters"), "notaschema", "tools[0].parameters", "JSON Schema mapping"),
    "parameters type number": (("tools", 0, "parameters"), {"type": 5}, "tools[0].parameters", "JSON Schema mapping"),
    "tool description": (("tools", 0, "description"), ["x"], "tools[0].description", "description is text"),
    "needs_approval text": (("tools", 0, "needs_approval"), "yes", "tools[0].needs_approval", "true or false"),
    "stall_seconds nan": (("interactions", 0, "stall_seconds"), float("nan"), "interactions[0].stall_seconds", "finite number"),
    "stall_seconds inf": (("interactions", 0, "stall_seconds"), float("inf"), "interactions[0].stall_seconds", "finite number"),
    "stall_after true": (("interactions", 0, "stall_after"), True, "interactions[0].stall_after", "whole number of data events"),
    "disconnect_after float": (("interactions", 0, "disconnect_after"), 1.5, "interactions[0].disconnect_after", "whole number"),
    "pause seconds nan": (("interactions", 0, "pauses"), [{"after": 0, "seconds": float("nan")}], "interactions[0].pauses[0].seconds", "finite"),
    "status 200": (("interactions", 0), {"error": {"status": 200, "body": "ok"}}, "interactions[0].error.status", "not an HTTP error (4xx or 5xx)"),
    "status 99999": (("interactions", 0), {"error": {"status": 99999}}, "interactions[0].error.status", "not an HTTP error"),
    "status 99": (("interactions", 0), {"error": {"status": 99}}, "interactions[0].error.status", "not an HTTP error"),
    "status true": (("interactions", 0), {"error": {"status": True}}, "interactions[0].error", "an integer 'status'"),
    "error body number": (("interactions", 0), {"error": {"status": 500, "body": 5}}, "interactions[0].error.body", "text or a mapping"),
    "error header list": (("interactions", 0), {"error": {"status": 429, "headers": {"retry-after": [1]}}}, "interactions[0].error.headers.retry-after", "text or a number"),
    "chunks not mappings": (("interactions", 0), {"chunks": [1, "x"]}, "interactions[0].chunks[0]", "chat.completion.chunk mapping"),
    "chunk choices true": (("interactions", 0), {"chunks": [{"choices": True}]}, "interactions[0].chunks[0].choices", "choices is a list"),
    "chunk delta number": (("interactions", 0), {"chunks": [{"choices": [{"delta": 3}]}]}, "interactions[0].chunks[0].choices[0].delta", "a delta or message is a mapping"),
    "chunk content mapping": (("interactions", 0), {"chunks": [{"choices": [{"delta": {"content": {}}}]}]}, "interactions[0].chunks[0].choices[0].delta.content", "content is text or null"),
    "chunk tool call number": (("interactions", 0), {"chunks": [{"choices": [{"delta": {"tool_calls": [5]}}]}]}, "interactions[0].chunks[0].choices[0].delta.tool_calls[0]", "a tool call is a mapping"),
    "chunk usage text": (("interactions", 0), {"chunks": [{"choices": [], "usage": {"prompt_tokens": "x"}}]}, "interactions[0].chunks[0].usage.prompt_tokens", "whole number of tokens"),
    "completion choices true": (("interactions", 0), {"completion": {"choices": True}}, "interactions[0].completion.choices", "choices is a list"),
    "completion content mapping": (("interactions", 0), {"completion": {"choices": [{"message": {"content": {"a": 1}}}]}}, "interactions[0].completion.choices[0].message.content", "content is text"),
    "reply text number": (("interactions", 0, "reply", "text"), 5, "interactions[0].reply.text", "must be text"),
    "reply tool_calls mapping": (("interactions", 0, "reply", "tool_calls"), {"name": "t"}, "interactions[0].reply.tool_calls", "must be a list"),
    "reply arguments number": (("interactions", 0, "reply", "tool_calls"), [{"name": "t", "arguments": 5}], "interactions[0].reply.tool_calls[0].arguments", "mapping or the raw JSON text"),
    "tool error number": (("tool_results",), [{"tool": "t", "error": 5}], "tool_results[0].error", "the text it raised"),
    "prompt_contains number": (("expect",), {"requests": [{"index": 1, "prompt_contains": 5}]}, "expect.requests[0].prompt_contains", "must be text"),
    "message_contains bool": (("expect",), {"message_contains": True}, "expect.message_contains", "a string or a list of strings"),
    "tools_never_ran numbers": (("expect",), {"tools_never_ran": [1, 2]}, "expect.tools_never_ran", "a string or a list of strings"),
    "properties bool": (("expect",), {"properties": True}, "expect.properties", "a string or a list of strings"),
    "outcome list": (("expect",), {"outcome": []}, "expect.outcome", "an outcome name"),
    "all_played text": (("expect",), {"all_played": "yes"}, "expect.all_played", "true or false"),
    "elapsed nan": (("expect",), {"elapsed": float("nan")}, "expect.elapsed", "must be a number of seconds"),
    "elapsed max inf": (("expect",), {"elapsed": {"max": float("inf")}}, "expect.elapsed", "must be a number of seconds"),
    "trace bool": (("trace",), True, "trace", "must be a list"),
    "trace state number": (("trace",), [{"state": 1, "event": "e", "target": "t"}], "trace[0]", "a trace step"),
    "source list": (("source",), ["x"], "source", "source must be a mapping"),
    "model number": (("model",), 5, "model", "model must be text"),
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_a_wrong_value_is_one_diagnostic_at_its_field(name: str, tmp_path: Path) -> None:
    where, value, path, message = WRONG[name]
    cassette, diags = read_cassette(write(tmp_path, with_value(where, value)))
    assert cassette is None, f"{name}: accepted"
    assert [d.path for d in diags] == [path], [d.format() for d in diags]
    assert message in diags[0].message, diags[0].format()
    assert diags[0].pos is not None and diags[0].pos.line > 0, "the diagnostic points into the file"


@pytest.mark.parametrize("status", [400, 429, 500, 529, 599])
def test_every_error_status_is_accepted(status: int, tmp_path: Path) -> None:
    cassette, diags = read_cassette(write(tmp_path, with_value(("interactions", 0), {"error": {"status": status}})))
    assert cassette is not None and diags == []
    assert cassette.interactions[0].status == status  # type: ignore[union-attr]


def test_a_nested_field_is_pointed_at_by_line(tmp_path: Path) -> None:
    text = (
        "loopspec_cassette: 1\nmessages: [{role: user, content: hi}]\ninteractions:\n"
        "  - chunks:\n      - choices:\n          - delta:\n              content: {a: 1}\n"
    )
    path = tmp_path / "c.cassette.yaml"
    path.write_text(text)
    _c, (d,) = read_cassette(str(path))
    assert (d.code, d.pos.line if d.pos else None) == (codes.CASSETTE_WRONG_TYPE, 7), d.format()


# -- every field, every odd value --------------------------------------------------------------------

FULL: dict[str, Any] = {
    "loopspec_cassette": 1, "name": "n", "doc": "d", "model": "openai/replay", "source": {"a": 1},
    "request": {"tool_choice": "auto", "reasoning_effort": "low", "max_tokens": 5, "extra": {"x": 1}},
    "messages": [{"role": "user", "content": "hi"}],
    "tools": [{"name": "t", "parameters": {"type": "object"}, "description": "d", "needs_approval": False}],
    "interactions": [
        {"reply": {"text": "a", "reasoning": "r", "tool_calls": [{"name": "t", "arguments": {}}], "finish": "stop",
                   "usage": {"prompt_tokens": 1}},
         "stall_after": 0, "stall_seconds": 1, "keepalive": 0.5, "disconnect_after": 3,
         "pauses": [{"after": 0, "seconds": 1, "keepalive": 0.5}], "when_no_tools": {"reply": {"text": "b"}}},
        {"error": {"status": 429, "body": "x", "headers": {"retry-after": "1"}}},
        {"chunks": [{"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}]},
        {"completion": {"choices": [{"message": {"content": "x"}}]}},
        {"sse": SSE},
    ],
    "tool_results": [{"tool": "t", "result": "ok"}, {"tool": "t", "error": "e"}],
    "cancel": {"during_call": 1, "after_chunks": 0},
    "expect": {"outcome": "completed", "model_calls": 1, "tool_batches": {"max": 2}, "final_response_contains": "a",
               "message_contains": ["a"], "message_not_contains": "b", "tools_never_ran": ["t"], "counters": {"c": 1},
               "elapsed": {"max": 3.0}, "all_played": True,
               "requests": [{"index": 1, "tools": "present", "prompt_contains": "hi", "tool_choice": "auto", "model": "m"}],
               "properties": ["history_valid"], "max_fires": {"a": 1}},
    "trace": [{"state": "a", "event": "b", "target": "c", "transition": None}],
}
ODD = [True, None, 0, -3, 10**30, 1.5, "x", [], {}, [1, "x"], {"k": "v"}, [{"a": 1}], [[1]], float("nan"), float("inf"), float("-inf")]


def _paths(obj: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here] if here else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, here + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, here + (i,))
    return out


def test_the_full_cassette_reads(tmp_path: Path) -> None:
    cassette, diags = read_cassette(write(tmp_path, FULL))
    assert diags == [] and cassette is not None


@pytest.mark.parametrize("where", _paths(FULL), ids=lambda p: ".".join(map(str, p)))
def test_no_odd_value_in_any_field_raises(where: tuple[Any, ...], tmp_path: Path) -> None:
    """Each field of a cassette that uses every key, replaced by each odd YAML value: the reader
    answers with diagnostics (or accepts), and never raises."""
    for value in ODD:
        doc = copy.deepcopy(FULL)
        node: Any = doc
        for k in where[:-1]:
            node = node[k]
        node[where[-1]] = value
        cassette, diags = read_cassette(write(tmp_path, doc))
        assert (cassette is None) == bool(diags), (where, value)
        for d in diags:
            assert d.pos is not None, (where, value, d.format())


# -- sse_file ----------------------------------------------------------------------------------------


def sse_cassette(folder: Path, target: str) -> str:
    return write(folder, with_value(("interactions", 0), {"sse_file": target}))


def one_problem(path: str, **kw: Any) -> str:
    cassette, diags = read_cassette(path, **kw)
    assert cassette is None and len(diags) == 1, [d.format() for d in diags]
    assert diags[0].path == "interactions[0].sse_file" and diags[0].pos is not None
    return diags[0].message + " | " + diags[0].hint


def test_sse_file_in_the_cassettes_folder_reads(tmp_path: Path) -> None:
    (tmp_path / "streams").mkdir()
    (tmp_path / "streams" / "s.sse").write_text(SSE)
    cassette, diags = read_cassette(sse_cassette(tmp_path, "streams/s.sse"))
    assert diags == [] and cassette is not None and cassette.interactions[0].sse == SSE  # type: ignore[union-attr]


def test_sse_file_cannot_climb_out_with_dotdot(tmp_path: Path) -> None:
    (tmp_path / "secret.sse").write_text(SSE)
    (tmp_path / "c").mkdir()
    problem = one_problem(sse_cassette(tmp_path / "c", "../secret.sse"))
    assert "outside the cassette's folder" in problem and "--files-root" in problem


def test_sse_file_cannot_name_an_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    assert "outside the cassette's folder" in one_problem(sse_cassette(tmp_path / "c", "/etc/passwd"))


def test_sse_file_cannot_follow_a_symlink_out(tmp_path: Path) -> None:
    (tmp_path / "secret.sse").write_text(SSE)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "link.sse").symlink_to(tmp_path / "secret.sse")
    assert "outside the cassette's folder" in one_problem(sse_cassette(tmp_path / "c", "link.sse"))


def test_sse_file_cannot_go_out_through_a_symlinked_folder(tmp_path: Path) -> None:
    """The folders of a side file's path are resolved too (and remembered): a folder inside the
    cassette's folder that links out is outside, and a symlinked file inside a plain folder is
    still followed."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.sse").write_text(SSE)
    (tmp_path / "c" / "plain").mkdir(parents=True)
    (tmp_path / "c" / "plain" / "ok.sse").write_text(SSE)
    (tmp_path / "c" / "plain" / "link.sse").symlink_to(tmp_path / "outside" / "secret.sse")
    (tmp_path / "c" / "sub").symlink_to(tmp_path / "outside")
    cassette, diags = read_cassette(sse_cassette(tmp_path / "c", "plain/ok.sse"))
    assert diags == [] and cassette is not None
    assert "outside the cassette's folder" in one_problem(sse_cassette(tmp_path / "c", "sub/secret.sse"))
    assert "outside the cassette's folder" in one_problem(sse_cassette(tmp_path / "c", "plain/link.sse"))
    assert "outside the cassette's folder" in one_problem(sse_cassette(tmp_path / "c", "plain/../../outside/secret.sse"))


def test_sse_file_cannot_reach_a_sibling_folder_whose_name_starts_alike(tmp_path: Path) -> None:
    """``c-evil`` is not inside ``c``, though its path starts with it."""
    (tmp_path / "c").mkdir()
    (tmp_path / "c-evil").mkdir()
    (tmp_path / "c-evil" / "s.sse").write_text(SSE)
    assert "outside the cassette's folder" in one_problem(sse_cassette(tmp_path / "c", "../c-evil/s.sse"))


def test_a_side_file_rewritten_between_two_reads_is_read_anew(tmp_path: Path) -> None:
    """Side files read lately are remembered by the file's identity and version: a rewrite (new
    size or modification time) is read again, never served from memory."""
    import os

    (tmp_path / "s.sse").write_text(SSE)
    path = sse_cassette(tmp_path, "s.sse")
    first, _ = read_cassette(path)
    other = SSE.replace('"hi"', '"yo"')  # the same size: only the modification time tells
    assert other != SSE and len(other) == len(SSE)
    (tmp_path / "s.sse").write_text(other)
    st = (tmp_path / "s.sse").stat()
    os.utime(tmp_path / "s.sse", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    second, _ = read_cassette(path)
    assert first is not None and second is not None
    assert first.interactions[0].sse == SSE and second.interactions[0].sse == other  # type: ignore[union-attr]


def test_the_user_can_widen_the_files_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "streams").mkdir()
    (tmp_path / "streams" / "s.sse").write_text(SSE)
    (tmp_path / "c").mkdir()
    path = sse_cassette(tmp_path / "c", "../streams/s.sse")
    cassette, diags = read_cassette(path, files_root=str(tmp_path))
    assert diags == [] and cassette is not None
    monkeypatch.setenv(FILES_ROOT_ENV, str(tmp_path))
    cassette, diags = read_cassette(path)
    assert diags == [] and cassette is not None
    assert "outside" in one_problem(path, files_root=str(tmp_path / "c"))


def test_sse_file_refuses_a_device(tmp_path: Path) -> None:
    """/dev/zero never ends: read whole it was a MemoryError."""
    assert "not a regular file" in one_problem(sse_cassette(tmp_path, "/dev/zero"), files_root="/")


def test_sse_file_refuses_a_fifo_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.sse")
    assert "not a regular file" in one_problem(sse_cassette(tmp_path, "pipe.sse"))


def test_sse_file_refuses_a_socket_and_a_folder(tmp_path: Path) -> None:
    (tmp_path / "dir.sse").mkdir()
    assert "not a regular file" in one_problem(sse_cassette(tmp_path, "dir.sse"))
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "s.sse"))
        assert "No such device or address" in one_problem(sse_cassette(tmp_path, "s.sse"))  # a socket cannot be opened


def test_sse_file_is_size_capped_like_the_yaml(tmp_path: Path) -> None:
    with open(tmp_path / "big.sse", "wb") as fh:
        fh.truncate(MAX_SIDE_FILE_BYTES + 1)
    assert "larger than 4 MiB" in one_problem(sse_cassette(tmp_path, "big.sse"))


def test_sse_file_must_be_utf8_and_named_by_text(tmp_path: Path) -> None:
    (tmp_path / "bin.sse").write_bytes(b"data: \xff\n\n")
    assert "not UTF-8" in one_problem(sse_cassette(tmp_path, "bin.sse"))
    assert "names a file" in one_problem(sse_cassette(tmp_path, 5))  # type: ignore[arg-type]


# -- the wire shapes of recorded bodies, field by field ----------------------------------------------

CHUNK_SHAPES: dict[str, tuple[dict[str, Any], str, str]] = {
    "x_groq not a mapping": ({"x_groq": 5}, ".x_groq", "x_groq is a mapping"),
    "x_groq usage": ({"x_groq": {"usage": {"completion_tokens": -1}}}, ".x_groq.usage.completion_tokens", "whole number of tokens"),
    "usage not a mapping": ({"usage": [1]}, ".usage", "usage is a mapping"),
    "details not a mapping": ({"usage": {"completion_tokens_details": 3}}, ".usage.completion_tokens_details", "is a mapping"),
    "reasoning tokens": ({"usage": {"completion_tokens_details": {"reasoning_tokens": "many"}}},
                         ".usage.completion_tokens_details.reasoning_tokens", "whole number"),
    "choice not a mapping": ({"choices": [3]}, ".choices[0]", "a choice is a mapping"),
    "choice index": ({"choices": [{"index": True}]}, ".choices[0].index", "index is a whole number"),
    "finish_reason": ({"choices": [{"finish_reason": 5}]}, ".choices[0].finish_reason", "finish_reason is text or null"),
    "role": ({"choices": [{"delta": {"role": 1}}]}, ".choices[0].delta.role", "role is text or null"),
    "tool_calls not a list": ({"choices": [{"delta": {"tool_calls": {}}}]}, ".choices[0].delta.tool_calls", "tool_calls is a list"),
    "tool call index": ({"choices": [{"delta": {"tool_calls": [{"index": "a"}]}}]}, ".choices[0].delta.tool_calls[0].index", "whole number"),
    "tool call id": ({"choices": [{"delta": {"tool_calls": [{"id": 5}]}}]}, ".choices[0].delta.tool_calls[0].id", "id is text"),
    "function": ({"choices": [{"delta": {"tool_calls": [{"function": "f"}]}}]}, ".choices[0].delta.tool_calls[0].function", "function is a mapping"),
    "function name": ({"choices": [{"delta": {"tool_calls": [{"function": {"name": 1}}]}}]},
                      ".choices[0].delta.tool_calls[0].function.name", "name is text"),
    "arguments": ({"choices": [{"delta": {"tool_calls": [{"function": {"arguments": 1}}]}}]},
                  ".choices[0].delta.tool_calls[0].function.arguments", "arguments are the JSON text"),
    "reasoning_details not a list": ({"choices": [{"delta": {"reasoning_details": "x"}}]},
                                     ".choices[0].delta.reasoning_details", "reasoning_details is a list"),
    "reasoning_details text": ({"choices": [{"delta": {"reasoning_details": [{"type": "reasoning.text", "text": 5}]}}]},
                               ".choices[0].delta.reasoning_details[0].text", "text is text"),
}


@pytest.mark.parametrize("name", sorted(CHUNK_SHAPES))
def test_a_recorded_chunk_with_a_wrong_field_is_refused_there(name: str, tmp_path: Path) -> None:
    chunk, sub, message = CHUNK_SHAPES[name]
    cassette, diags = read_cassette(write(tmp_path, with_value(("interactions", 0), {"chunks": [chunk]})))
    assert cassette is None and [d.path for d in diags] == ["interactions[0].chunks[0]" + sub], [d.format() for d in diags]
    assert message in diags[0].message


def test_well_formed_chunks_of_every_kind_are_accepted(tmp_path: Path) -> None:
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "reasoning_details": [
            {"type": "reasoning.text", "text": "hm", "signature": None}, "opaque"]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "t", "arguments": "{}"}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "completion_tokens_details": {"reasoning_tokens": 1}},
         "x_groq": {"usage": {"prompt_tokens": 3}}},
    ]
    cassette, diags = read_cassette(write(tmp_path, with_value(("interactions", 0), {"chunks": chunks})))
    assert diags == [] and cassette is not None


def test_a_relative_files_root_is_confined_afresh_after_a_change_of_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Folders are remembered by absolute path: ``--files-root .`` read from another working
    directory is another folder. Remembered by name, the second read would still accept files
    under the first directory."""
    (tmp_path / "a" / "c").mkdir(parents=True)
    (tmp_path / "a" / "s.sse").write_text(SSE)
    (tmp_path / "b" / "c").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a")
    inside_a = read_cassette(sse_cassette(tmp_path / "a" / "c", "../s.sse"), files_root=".")
    assert inside_a[0] is not None, inside_a[1]
    monkeypatch.chdir(tmp_path / "b")
    assert "outside" in one_problem(sse_cassette(tmp_path / "b" / "c", "../../a/s.sse"), files_root=".")
