"""Reading a cassette file: load it, check it, and give every problem a ``file:line:col``
diagnostic like a bad policy gets."""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

import loopspec.language.codes as codes
from loopspec.language.diagnostics import Diagnostic, Position
from loopspec.language.errors import LoopspecError
from loopspec.language.reader import type_name
from loopspec.language.yamlsource import LoadError, YList, YMap, load_yaml_bytes, load_yaml_text, read_yaml_bytes

from .cassette_model import (
    plain,
    CASSETTE_VERSION,
    FAULT_KEYS,
    INTERACTION_FORMS,
    INTERACTION_KEYS,
    PAUSE_KEYS,
    REPLY_KEYS,
    TOOL_RESULT_KEYS,
    TOP_KEYS,
    USAGE_KEYS,
    Cassette,
    CassetteError,
    RecordedStep,
    ToolOutcome,
    ToolSpec,
)
from .interactions import CompletionResponse, ErrorResponse, Interaction, Pause, Served, StreamResponse, WhenNoTools
from .cassette_files import SideFile, read_side_file
from .cassette_shapes import chunk_problem, completion_problem
from .synth import reply_chunks

_RENAMED_PROPERTIES = {"halt_message_nonempty": "halt_message", "no_partial_tool_ran": "no_partial_tool_exec"}
from .cassette_sections import SectionReader


class _Reader(SectionReader):
    def read(self, doc: Any) -> Cassette | None:
        root = self.expect_map(doc, "", Position(1, 1), "a cassette's top level")
        if root is None:
            return None
        self.unknown_keys(root, TOP_KEYS, "", "a cassette")
        version = root.get("loopspec_cassette")
        if type(version) is not int or version != CASSETTE_VERSION:  # true and 1.0 both == 1 in Python
            self.report(
                codes.CASSETTE_VERSION,
                f"not a loopspec cassette version {CASSETTE_VERSION} (loopspec_cassette: {version!r})",
                "loopspec_cassette",
                root.pos_of("loopspec_cassette"),
                f"a cassette starts with 'loopspec_cassette: {CASSETTE_VERSION}'",
            )
        for key in ("name", "doc", "model"):
            if root.get(key) is not None and not isinstance(root[key], str):
                self.wrong_type(f"{key} must be text, got {type_name(root[key])}", key, root.pos_of(key))
        if root.get("source") is not None and not isinstance(root["source"], dict):
            self.wrong_type(f"source must be a mapping (free-form provenance), got {type_name(root['source'])}", "source", root.pos_of("source"))
        name = str(root.get("name") or os.path.splitext(os.path.basename(self.file))[0])
        messages = self.read_messages(root)
        tools = self.read_tools(root)
        interactions = self.read_interactions(root)
        tool_results = self.read_tool_results(root)
        request = self.read_request(root)
        cancel = self.read_cancel(root, tools, tool_results)
        expect = self.read_expect(root)
        trace = self.read_trace(root)
        if self.diags:
            return None
        return Cassette(
            name=name,
            file=self.file,
            messages=tuple(messages),
            interactions=tuple(interactions),
            tools=tuple(tools),
            tool_results=tuple(tool_results),
            expect=expect,
            trace=tuple(trace),
            model=str(root.get("model") or "openai/replay"),
            doc=str(root.get("doc") or ""),
            source=plain(root.get("source") or {}),
            request=request,
            cancel=cancel,
        )

    def read_messages(self, root: YMap) -> list[dict[str, Any]]:
        lst = self.expect_list(root.get("messages"), "messages", root.pos_of("messages"), "messages (the turn's initial messages)")
        out: list[dict[str, Any]] = []
        for i, m in enumerate(lst or []):
            mm = self.expect_map(m, f"messages[{i}]", lst.pos_of(i), "a message") if lst is not None else None
            if mm is None:
                continue
            if mm.get("role") not in ("system", "user", "assistant", "tool"):
                self.error(f"message role {mm.get('role')!r} is not system, user, assistant or tool", f"messages[{i}].role", mm.pos_of("role"))
            content = mm.get("content")
            if content is not None and not isinstance(content, (str, list)):
                self.wrong_type(
                    f"a message's content is text, a list of parts or null, got {type_name(content)}",
                    f"messages[{i}].content",
                    mm.pos_of("content"),
                    "write the text as a string; parts go in a list ([{type: text, text: ...}])",
                )
            out.append(plain(mm))
        if lst is not None and not out:
            self.error("a cassette needs at least one initial message", "messages", root.pos_of("messages"))
        return out

    def read_tools(self, root: YMap) -> list[ToolSpec]:
        if root.get("tools") is None:
            return []
        lst = self.expect_list(root["tools"], "tools", root.pos_of("tools"), "tools")
        out: list[ToolSpec] = []
        for i, t in enumerate(lst or []):
            tm = self.expect_map(t, f"tools[{i}]", lst.pos_of(i), "a tool") if lst is not None else None
            if tm is None:
                continue
            self.unknown_keys(tm, ("name", "parameters", "description", "needs_approval"), f"tools[{i}]", "a tool")
            if not isinstance(tm.get("name"), str):
                self.error("a tool needs a name", f"tools[{i}].name", tm.pos)
                continue
            raw = tm.get("parameters")
            if raw is not None and (not isinstance(raw, dict) or not isinstance(raw.get("type", "object"), (str, list))):
                self.wrong_type(
                    f"a tool's parameters are a JSON Schema mapping, got {type_name(raw)}",
                    f"tools[{i}].parameters",
                    tm.pos_of("parameters"),
                    "e.g. parameters: {type: object, properties: {path: {type: string}}}",
                )
                continue
            description = tm.get("description")
            if description is not None and not isinstance(description, str):
                self.wrong_type(f"a tool's description is text, got {type_name(description)}", f"tools[{i}].description", tm.pos_of("description"))
                continue
            params = plain(raw or {"type": "object", "properties": {}})
            approval = self.read_flag(tm, "needs_approval", f"tools[{i}].needs_approval")
            out.append(ToolSpec(tm["name"], params, description or "", approval))
        return out

    def read_interactions(self, root: YMap) -> list[Interaction]:
        lst = self.expect_list(root.get("interactions"), "interactions", root.pos_of("interactions"), "interactions (one per model request)")
        out: list[Interaction] = []
        for i, it in enumerate(lst or []):
            path = f"interactions[{i}]"
            im = self.expect_map(it, path, lst.pos_of(i), "an interaction") if lst is not None else None
            if im is None:
                continue
            self.unknown_keys(im, INTERACTION_KEYS, path, "an interaction")
            served = self.read_served(im, path)
            if served is None:
                continue
            if "when_no_tools" in im:
                alt_path = f"{path}.when_no_tools"
                am = self.expect_map(im["when_no_tools"], alt_path, im.pos_of("when_no_tools"), "when_no_tools (a response)")
                if am is None:
                    continue
                self.unknown_keys(am, tuple(k for k in INTERACTION_KEYS if k != "when_no_tools"), alt_path, "when_no_tools")
                alt = self.read_served(am, alt_path)
                if alt is not None:
                    out.append(WhenNoTools(served, alt))
                continue
            out.append(served)
        return out

    def read_served(self, im: YMap, path: str) -> Served | None:
        """One response (exactly one form, its faults), or None after reporting why not."""
        forms = [k for k in im if k in INTERACTION_FORMS]
        if len(forms) != 1:
            found = f"found {' and '.join(forms)}" if forms else "found none"
            self.error(
                f"an interaction has exactly one of: {', '.join(INTERACTION_FORMS)}",
                path,
                im.pos,
                f"{found}; one model response per list item" + (" (split them into two items?)" if forms else ""),
            )
            return None
        form = forms[0]
        value, pos = im[form], im.pos_of(form)
        try:
            return self.interaction(form, value, im, f"{path}.{form}", pos)
        except _Skip:
            return None
        except (ValueError, TypeError) as exc:
            self.error(str(exc), path, im.pos)
            return None

    def interaction(self, form: str, value: Any, im: YMap, path: str, pos: Position | None) -> Served:
        where = path.rsplit(".", 1)[0]
        faults = {k: im[k] for k in FAULT_KEYS if k in im}
        self.check_faults(im, where)
        if "pauses" in faults:
            faults["pauses"] = self.read_pauses(im, where)
        if "keepalive" in faults and "stall_after" not in faults:
            self.error(
                "keepalive pings fill a pause, and this response has no stall",
                where + ".keepalive",
                im.pos_of("keepalive"),
                "add stall_after and stall_seconds, or give the pause in pauses: [{after, seconds, keepalive}]",
            )
            raise _Skip()
        if form == "error":
            return self.read_error(value, path, pos)
        if form == "completion":
            cm = self.expect_map(value, path, pos, "a completion body")
            if cm is None:
                raise _Skip()
            self.check_shape(completion_problem(cm), path, cm)
            return CompletionResponse(plain(cm))
        if form == "sse":
            if not isinstance(value, str):
                self.error("sse must be the raw SSE text", path, pos)
                raise _Skip()
            return StreamResponse(sse=value, **faults)
        if form == "sse_file":
            return StreamResponse(sse=self.read_sse_file(value, path, pos), **faults)
        if form == "chunks":
            lst = self.expect_list(value, path, pos, "chunks (OpenAI chat.completion.chunk objects)")
            if lst is None:
                raise _Skip()
            for j, c in enumerate(lst):
                if not isinstance(c, YMap):
                    self.wrong_type(
                        f"a chunk is a chat.completion.chunk mapping, got {type_name(c)}",
                        f"{path}[{j}]",
                        lst.pos_of(j),
                        'e.g. {choices: [{index: 0, delta: {content: "hi"}}]}',
                    )
                    raise _Skip()
                self.check_shape(chunk_problem(c), f"{path}[{j}]", c)
            return StreamResponse(chunks=tuple(plain(c) for c in lst), **faults)
        rm = self.expect_map(value, path, pos, "a reply ({text, reasoning, tool_calls, finish, usage})")
        if rm is None:
            raise _Skip()
        self.unknown_keys(rm, REPLY_KEYS, path, "a reply")
        usage = self.read_usage(rm, path)
        for key in ("text", "reasoning"):
            if rm.get(key) is not None and not isinstance(rm[key], str):
                self.wrong_type(f"{path}.{key} must be text, got {type_name(rm[key])}", f"{path}.{key}", rm.pos_of(key),
                                f'quote it: {key}: "{rm[key]}"')
                raise _Skip()
        calls = []
        raw_calls = rm.get("tool_calls")
        if raw_calls is not None and not isinstance(raw_calls, list):
            self.wrong_type(f"{path}.tool_calls must be a list, got {type_name(raw_calls)}", f"{path}.tool_calls", rm.pos_of("tool_calls"))
            raise _Skip()
        for j, tc in enumerate(raw_calls or []):
            tpos = raw_calls.pos_of(j) if isinstance(raw_calls, YList) else pos
            if not isinstance(tc, dict) or not isinstance(tc.get("name"), str):
                self.error("a tool call needs a name (and arguments)", f"{path}.tool_calls[{j}]", tpos)
                raise _Skip()
            args = tc.get("arguments", {})
            if not isinstance(args, (str, dict)):
                self.wrong_type(
                    f"a tool call's arguments are a mapping or the raw JSON text, got {type_name(args)}",
                    f"{path}.tool_calls[{j}].arguments",
                    tc.pos_of("arguments") if isinstance(tc, YMap) else tpos,
                )
                raise _Skip()
            calls.append((tc["name"], args if isinstance(args, str) else plain(args)))
        finish = rm.get("finish")
        if finish is not None and not isinstance(finish, str):
            self.error("finish is a finish_reason string, or null for none at all", f"{path}.finish", rm.pos_of("finish"))
            raise _Skip()
        chunks = reply_chunks(
            rm.get("text") or "", reasoning=rm.get("reasoning") or "", tool_calls=calls, finish=finish,
            omit_finish="finish" in rm and finish is None, usage=usage,
        )
        return StreamResponse(chunks=tuple(chunks), **faults)

    def check_shape(self, problem: tuple[str, str] | None, path: str, node: YMap) -> None:
        """Report a recorded body's wrong field at the closest position the document has for it."""
        if problem is None:
            return
        sub, message = problem
        self.wrong_type(message, path + sub, _position_of(node, sub), "a recorded body keeps the types the provider sent")
        raise _Skip()

    def check_faults(self, im: YMap, path: str) -> None:
        """Fault positions are whole numbers of data events, waits finite seconds: ``true`` is not 1
        and ``.nan`` is not a length of time."""
        for key in ("stall_after", "disconnect_after"):
            if key in im and not is_count(im[key]):
                self.wrong_type(f"{key} is a whole number of data events (0 or more), got {type_name(im[key])}", f"{path}.{key}", im.pos_of(key))
                raise _Skip()
        if "stall_seconds" in im and not is_seconds(im["stall_seconds"]):
            self.wrong_type(f"stall_seconds is a finite number of seconds (0 or more), got {type_name(im['stall_seconds'])}",
                            f"{path}.stall_seconds", im.pos_of("stall_seconds"), "e.g. stall_seconds: 90")
            raise _Skip()
        if "keepalive" in im and not (is_seconds(im["keepalive"]) and im["keepalive"] > 0):
            self.error(f"keepalive must be a positive number of seconds (finite), got {type_name(im['keepalive'])}",
                       f"{path}.keepalive", im.pos_of("keepalive"))
            raise _Skip()

    def read_error(self, value: Any, path: str, pos: Position | None) -> ErrorResponse:
        """``error: {status, body, headers}``: an HTTP error status (4xx or 5xx), as the provider sent it."""
        em = self.expect_map(value, path, pos, "an error ({status, body})")
        if em is None:
            raise _Skip()
        status = em.get("status")
        if isinstance(status, bool) or not isinstance(status, int):
            self.error("an error needs an integer 'status'", path, pos)
            raise _Skip()
        if not 400 <= status <= 599:
            self.error(
                f"error status {status} is not an HTTP error (4xx or 5xx)",
                f"{path}.status",
                em.pos_of("status"),
                "a successful answer is a reply, chunks, sse or completion; an error is e.g. 429, 500 or 503",
            )
            raise _Skip()
        body = em.get("body", "")
        if not isinstance(body, (str, dict)):
            self.wrong_type(f"an error body is text or a mapping, got {type_name(body)}", f"{path}.body", em.pos_of("body"))
            raise _Skip()
        headers: dict[str, Any] = {}
        if em.get("headers"):
            hm = self.expect_map(em["headers"], f"{path}.headers", em.pos_of("headers"), "headers ({name: value})")
            if hm is None:
                raise _Skip()
            for k, v in hm.items():
                if not isinstance(v, (str, int, float)) or isinstance(v, bool) or (isinstance(v, float) and not math.isfinite(v)):
                    self.wrong_type(f"header {k!r} must be text or a number, got {type_name(v)}", f"{path}.headers.{k}", hm.pos_of(k))
                    raise _Skip()
            headers = plain(hm)
        return ErrorResponse(status, plain(body), headers)

    def read_sse_file(self, value: Any, path: str, pos: Position | None) -> str:
        """The text of an ``sse_file``: a regular file, inside the cassette's folder unless the
        caller allowed files elsewhere, no larger than a cassette may be."""
        if not isinstance(value, str) or not value:
            self.wrong_type(f"sse_file names a file, got {type_name(value)}", path, pos)
            raise _Skip()
        problem, text = read_side_file(self.base, value, root=self.files_root, seen=self.side_files)
        if problem is not None:
            self.error(f"cannot read {value!r}: {problem[0]}", path, pos, problem[1])
            raise _Skip()
        return text

    def read_pauses(self, im: YMap, path: str) -> tuple[Pause, ...]:
        """``pauses: [{after: K, seconds: S, keepalive: P}]``: waits anywhere in the stream."""
        lst = self.expect_list(im["pauses"], f"{path}.pauses", im.pos_of("pauses"), "pauses (a list of {after, seconds, keepalive})")
        if lst is None:
            raise _Skip()
        out: list[Pause] = []
        for j, p in enumerate(lst):
            ppath = f"{path}.pauses[{j}]"
            pm = self.expect_map(p, ppath, lst.pos_of(j), "a pause ({after, seconds, keepalive})")
            if pm is None:
                raise _Skip()
            self.unknown_keys(pm, PAUSE_KEYS, ppath, "a pause")
            after, seconds, every = pm.get("after"), pm.get("seconds"), pm.get("keepalive")
            if isinstance(after, bool) or not isinstance(after, int) or isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                self.error("a pause needs 'after' (data events before it) and 'seconds'", ppath, pm.pos)
                raise _Skip()
            if not is_seconds(seconds):
                self.wrong_type(f"a pause's seconds are a finite number, 0 or more, got {type_name(seconds)}", f"{ppath}.seconds", pm.pos_of("seconds"))
                raise _Skip()
            if every is not None and not (is_seconds(every) and every > 0):
                self.error("keepalive is a finite number of seconds above 0", f"{ppath}.keepalive", pm.pos_of("keepalive"))
                raise _Skip()
            out.append(Pause(after, float(seconds), None if every is None else float(every)))
        return tuple(out)

    def read_usage(self, rm: YMap, path: str) -> dict[str, Any] | None:
        if rm.get("usage") is None:
            return None
        um = self.expect_map(rm["usage"], f"{path}.usage", rm.pos_of("usage"), "usage ({prompt_tokens, completion_tokens, reasoning_tokens})")
        if um is None:
            raise _Skip()
        self.unknown_keys(um, USAGE_KEYS, f"{path}.usage", "usage")
        for k, v in um.items():
            if k == "cost":
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
                    self.report(codes.CASSETTE_WRONG_TYPE, "cost must be a finite number of dollars, 0 or more", f"{path}.usage.cost", um.pos_of(k))
                    raise _Skip()
            elif k in USAGE_KEYS and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                self.report(codes.CASSETTE_WRONG_TYPE, f"{k} must be a whole number of tokens", f"{path}.usage.{k}", um.pos_of(k))
                raise _Skip()
        return {k: (float(v) if k == "cost" else int(v)) for k, v in um.items() if k in USAGE_KEYS}

    def read_tool_results(self, root: YMap) -> list[ToolOutcome]:
        if root.get("tool_results") is None:
            return []
        lst = self.expect_list(root["tool_results"], "tool_results", root.pos_of("tool_results"), "tool_results")
        out: list[ToolOutcome] = []
        for i, r in enumerate(lst or []):
            rm = self.expect_map(r, f"tool_results[{i}]", lst.pos_of(i), "a tool result") if lst is not None else None
            if rm is None:
                continue
            self.unknown_keys(rm, TOOL_RESULT_KEYS, f"tool_results[{i}]", "a tool result")
            blocks = rm.get("blocks") is True
            if not isinstance(rm.get("tool"), str) or ("result" in rm) + ("error" in rm) + blocks != 1:
                self.error(
                    "a tool result names its tool and has exactly one of result, error or blocks: true",
                    f"tool_results[{i}]",
                    rm.pos,
                )
                continue
            if "error" in rm and not isinstance(rm["error"], str):
                self.wrong_type(f"a tool's error is the text it raised, got {type_name(rm['error'])}", f"tool_results[{i}].error", rm.pos_of("error"))
                continue
            res = rm.get("result")
            result = None if res is None else (res if isinstance(res, str) else json.dumps(plain(res)))
            out.append(ToolOutcome(rm["tool"], result, rm.get("error"), blocks))
            self.positions[("tool_results", len(out) - 1)] = rm.pos
        return out

    def read_trace(self, root: YMap) -> list[RecordedStep]:
        out: list[RecordedStep] = []
        if root.get("trace") is None:
            return out
        lst = self.expect_list(root["trace"], "trace", root.pos_of("trace"), "trace (the recorded decisions)")
        for i, s in enumerate(lst or []):
            if (
                not isinstance(s, dict)
                or not {"state", "event", "target"} <= set(s)
                or not all(isinstance(s[k], str) for k in ("state", "event", "target"))
                or not isinstance(s.get("transition"), (str, type(None)))
            ):
                self.error("a trace step has state, event and target (names), and a transition label or null", f"trace[{i}]",
                           lst.pos_of(i) if lst is not None else root.pos_of("trace"))
                continue
            out.append(RecordedStep(s["state"], s["event"], s["target"], s.get("transition")))
        return out


def _position_of(node: Any, sub: str) -> Position:
    """The position of ``sub`` (``.choices[0].delta``) under ``node``, as deep as the path goes."""
    pos: Position = node.pos
    for part in re.findall(r"\.(\w+)|\[(\d+)\]", sub):
        key: Any = part[0] if part[0] else int(part[1])
        if isinstance(node, YMap) and key in node:
            pos, node = node.pos_of(key), node[key]
        elif isinstance(node, YList) and isinstance(key, int) and key < len(node):
            pos, node = node.pos_of(key), node[key]
        else:
            break
    return pos


class _Skip(LoopspecError):
    pass


def is_count(v: Any) -> bool:
    """A whole number, 0 or more (``true`` is not 1)."""
    return not isinstance(v, bool) and isinstance(v, int) and v >= 0


def is_seconds(v: Any) -> bool:
    """A finite number of seconds, 0 or more (``.nan`` and ``.inf`` are not)."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v >= 0


def read_cassette(path: str, *, files_root: str | None = None) -> tuple[Cassette | None, list[Diagnostic]]:
    """Load and check one cassette; never raises for bad input. ``sse_file`` reads stay inside
    ``files_root`` (default: ``$LOOPSPEC_FILES_ROOT``, else the cassette's folder)."""
    try:
        raw = read_yaml_bytes(path)
    except LoadError as exc:
        return None, [exc.diagnostic]
    cassette, diags, _side = read_cassette_bytes(raw, path, files_root=files_root)
    return cassette, diags


def read_cassette_bytes(raw: bytes, path: str, *, files_root: str | None = None
                        ) -> tuple[Cassette | None, list[Diagnostic], list[SideFile]]:
    """:func:`read_cassette` of the bytes read from ``path``, with the side files it read (what a
    cache of read cassettes must check is unchanged)."""
    try:
        doc = load_yaml_bytes(raw, path)
    except LoadError as exc:
        return None, [exc.diagnostic], []
    reader = _Reader(path, files_root=files_root)
    cassette = reader.read(doc)
    return cassette, reader.diags, reader.side_files


def read_cassette_text(text: str, path: str, *, files_root: str | None = None) -> tuple[Cassette | None, list[Diagnostic]]:
    """Check cassette text as if it were the file ``path``, before anything is written there: what
    ``import`` and ``record`` write, ``replay`` must read."""
    try:
        doc = load_yaml_text(text, path)
    except LoadError as exc:
        return None, [exc.diagnostic]
    reader = _Reader(path, files_root=files_root)
    cassette = reader.read(doc)
    return cassette, reader.diags


def load_cassette(path: str, *, files_root: str | None = None) -> Cassette:
    cassette, diags = read_cassette(path, files_root=files_root)
    if cassette is None:
        raise CassetteError(diags)
    return cassette


def find_cassettes(paths: list[str]) -> list[str]:
    """Cassette files under the given files and folders, sorted (``*.cassette.yaml``, ``*.yaml``)."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            for dirpath, _dirs, files in os.walk(p):
                out += [os.path.join(dirpath, f) for f in files if f.endswith((".cassette.yaml", ".cassette.yml"))]
        else:
            out.append(p)
    return sorted(out)
