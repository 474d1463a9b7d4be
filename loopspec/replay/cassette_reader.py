"""Reading a cassette file: load it, check it, and give every problem a ``file:line:col``
diagnostic like a bad policy gets."""

from __future__ import annotations

import loopspec.language.codes as codes

from loopspec.language.errors import LoopspecError

import json
import os
from typing import Any

from loopspec.language.alphabet import OUTCOMES
from loopspec.language.diagnostics import Diagnostic, Position, did_you_mean
from loopspec.language.reader import DocumentReader
from loopspec.language.yamlsource import LoadError, YMap, load_yaml_file

from .cassette_model import (
    CASSETTE_VERSION,
    EXPECT_KEYS,
    FAULT_KEYS,
    INTERACTION_FORMS,
    PROPERTIES,
    TOP_KEYS,
    Cassette,
    CassetteError,
    Expectations,
    RecordedStep,
    RequestExpectation,
    ToolOutcome,
    ToolSpec,
)
from .interactions import CompletionResponse, ErrorResponse, Interaction, StreamResponse
from .synth import reply_chunks

_RENAMED_PROPERTIES = {"halt_message_nonempty": "halt_message", "no_partial_tool_ran": "no_partial_tool_exec"}


class _Reader(DocumentReader):
    UNKNOWN_KEY = codes.CASSETTE_UNKNOWN_KEY
    WRONG_TYPE = codes.CASSETTE_WRONG_TYPE

    def __init__(self, file: str):
        super().__init__(file)
        self.base = os.path.dirname(os.path.abspath(file))

    def error(self, message: str, path: str, pos: Position | None, hint: str = "") -> None:
        self.report(codes.BAD_CASSETTE, message, path, pos, hint)

    def read(self, doc: Any) -> Cassette | None:
        root = self.expect_map(doc, "", Position(1, 1), "a cassette's top level")
        if root is None:
            return None
        self.unknown_keys(root, TOP_KEYS, "", "a cassette")
        version = root.get("loopspec_cassette")
        if version != CASSETTE_VERSION:
            self.report(
                codes.CASSETTE_VERSION,
                f"not a loopspec cassette version {CASSETTE_VERSION} (loopspec_cassette: {version!r})",
                "loopspec_cassette",
                root.pos_of("loopspec_cassette"),
                f"a cassette starts with 'loopspec_cassette: {CASSETTE_VERSION}'",
            )
        name = str(root.get("name") or os.path.splitext(os.path.basename(self.file))[0])
        messages = self.read_messages(root)
        tools = self.read_tools(root)
        interactions = self.read_interactions(root)
        tool_results = self.read_tool_results(root)
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
            source=_plain(root.get("source") or {}),
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
            out.append(_plain(mm))
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
            params = _plain(tm.get("parameters") or {"type": "object", "properties": {}})
            out.append(ToolSpec(tm["name"], params, str(tm.get("description") or ""), bool(tm.get("needs_approval", False))))
        return out

    def read_interactions(self, root: YMap) -> list[Interaction]:
        lst = self.expect_list(root.get("interactions"), "interactions", root.pos_of("interactions"), "interactions (one per model request)")
        out: list[Interaction] = []
        for i, it in enumerate(lst or []):
            path = f"interactions[{i}]"
            im = self.expect_map(it, path, lst.pos_of(i), "an interaction") if lst is not None else None
            if im is None:
                continue
            forms = [k for k in im if k in INTERACTION_FORMS]
            self.unknown_keys(im, (*INTERACTION_FORMS, *FAULT_KEYS, "doc"), path, "an interaction")
            if len(forms) != 1:
                found = f"found {' and '.join(forms)}" if forms else "found none"
                self.error(
                    f"an interaction has exactly one of: {', '.join(INTERACTION_FORMS)}",
                    path,
                    im.pos,
                    f"{found}; one model response per list item" + (" (split them into two items?)" if forms else ""),
                )
                continue
            form = forms[0]
            value, pos = im[form], im.pos_of(form)
            try:
                out.append(self.interaction(form, value, im, f"{path}.{form}", pos))
            except _Skip:
                continue
            except (ValueError, TypeError) as exc:
                self.error(str(exc), path, im.pos)
        return out

    def interaction(self, form: str, value: Any, im: YMap, path: str, pos: Position | None) -> Interaction:
        faults = {k: im[k] for k in FAULT_KEYS if k in im}
        if form == "error":
            em = self.expect_map(value, path, pos, "an error ({status, body})")
            if em is None or not isinstance(em.get("status"), int):
                self.error("an error needs an integer 'status'", path, pos)
                raise _Skip()
            return ErrorResponse(em["status"], _plain(em.get("body", "")), _plain(em.get("headers") or {}))
        if form == "completion":
            cm = self.expect_map(value, path, pos, "a completion body")
            if cm is None:
                raise _Skip()
            return CompletionResponse(_plain(cm))
        if form == "sse":
            if not isinstance(value, str):
                self.error("sse must be the raw SSE text", path, pos)
                raise _Skip()
            return StreamResponse(sse=value, **faults)
        if form == "sse_file":
            full = os.path.normpath(os.path.join(self.base, str(value)))
            try:
                with open(full, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as exc:
                self.error(f"cannot read {value!r}: {exc.strerror}", path, pos, "sse_file is relative to the cassette's folder")
                raise _Skip() from None
            return StreamResponse(sse=text, **faults)
        if form == "chunks":
            lst = self.expect_list(value, path, pos, "chunks (OpenAI chat.completion.chunk objects)")
            if lst is None:
                raise _Skip()
            return StreamResponse(chunks=tuple(_plain(c) for c in lst), **faults)
        rm = self.expect_map(value, path, pos, "a reply ({text, reasoning, tool_calls, finish})")
        if rm is None:
            raise _Skip()
        self.unknown_keys(rm, ("text", "reasoning", "tool_calls", "finish"), path, "a reply")
        calls = []
        for j, tc in enumerate(rm.get("tool_calls") or []):
            if not isinstance(tc, dict) or "name" not in tc:
                self.error("a tool call needs a name (and arguments)", f"{path}.tool_calls[{j}]", pos)
                raise _Skip()
            args = tc.get("arguments", {})
            calls.append((tc["name"], args if isinstance(args, str) else _plain(args)))
        chunks = reply_chunks(str(rm.get("text") or ""), reasoning=str(rm.get("reasoning") or ""), tool_calls=calls, finish=rm.get("finish"))
        return StreamResponse(chunks=tuple(chunks), **faults)

    def read_tool_results(self, root: YMap) -> list[ToolOutcome]:
        if root.get("tool_results") is None:
            return []
        lst = self.expect_list(root["tool_results"], "tool_results", root.pos_of("tool_results"), "tool_results")
        out: list[ToolOutcome] = []
        for i, r in enumerate(lst or []):
            rm = self.expect_map(r, f"tool_results[{i}]", lst.pos_of(i), "a tool result") if lst is not None else None
            if rm is None:
                continue
            self.unknown_keys(rm, ("tool", "result", "error"), f"tool_results[{i}]", "a tool result")
            if not isinstance(rm.get("tool"), str) or ("result" in rm) == ("error" in rm):
                self.error("a tool result names its tool and has exactly one of result or error", f"tool_results[{i}]", rm.pos)
                continue
            res = rm.get("result")
            out.append(ToolOutcome(rm["tool"], None if res is None else (res if isinstance(res, str) else json.dumps(_plain(res))), rm.get("error")))
        return out

    def read_expect(self, root: YMap) -> Expectations:
        if root.get("expect") is None:
            return Expectations()
        em = self.expect_map(root["expect"], "expect", root.pos_of("expect"), "expect")
        if em is None:
            return Expectations()
        self.unknown_keys(em, EXPECT_KEYS, "expect", "expect")
        outcome = em.get("outcome")
        if outcome is not None and outcome not in OUTCOMES:
            self.error(f"unknown outcome {outcome!r}", "expect.outcome", em.pos_of("outcome"), did_you_mean(outcome, OUTCOMES))
        props = tuple(em.get("properties") or ())
        for p in props:
            if p in _RENAMED_PROPERTIES:
                self.error(
                    f"property {p!r} is now called {_RENAMED_PROPERTIES[p]!r} (the name loopspec check uses)",
                    "expect.properties",
                    em.pos_of("properties"),
                    f"write {_RENAMED_PROPERTIES[p]}",
                )
            elif p not in PROPERTIES:
                self.error(f"unknown property {p!r}", "expect.properties", em.pos_of("properties"), did_you_mean(p, PROPERTIES))
        reqs = []
        for j, r in enumerate(em.get("requests") or []):
            if not isinstance(r, dict) or not isinstance(r.get("index"), int):
                self.error("a request expectation needs an integer 'index' (1 = the first call)", f"expect.requests[{j}]", em.pos_of("requests"))
                continue
            if r.get("tools") not in (None, "present", "absent"):
                self.error("tools is 'present' or 'absent'", f"expect.requests[{j}].tools", em.pos_of("requests"))
            reqs.append(RequestExpectation(r["index"], r.get("tools"), r.get("prompt_contains")))
        fires: list[tuple[str, int]] = []
        mf = em.get("max_fires")
        if mf is not None:
            mm = self.expect_map(mf, "expect.max_fires", em.pos_of("max_fires"), "max_fires ({transition label: N})")
            if mm is not None:
                for label, n in mm.items():
                    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                        self.error(f"max_fires for {label!r} must be a whole number", f"expect.max_fires.{label}", mm.pos_of(label))
                    else:
                        fires.append((str(label), n))
        return Expectations(
            outcome=outcome,
            model_calls=em.get("model_calls"),
            tool_batches=em.get("tool_batches"),
            final_response_contains=tuple(_strings(em.get("final_response_contains"))),
            message_contains=tuple(_strings(em.get("message_contains"))),
            all_played=bool(em.get("all_played", False)),
            requests=tuple(reqs),
            properties=props,
            max_fires=tuple(fires),
        )

    def read_trace(self, root: YMap) -> list[RecordedStep]:
        out: list[RecordedStep] = []
        for i, s in enumerate(root.get("trace") or []):
            if not isinstance(s, dict) or not {"state", "event", "target"} <= set(s):
                self.error("a trace step has state, event and target", f"trace[{i}]", root.pos_of("trace"))
                continue
            out.append(RecordedStep(s["state"], s["event"], s["target"], s.get("transition")))
        return out


class _Skip(LoopspecError):
    pass


def _strings(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v]


def _plain(v: Any) -> Any:
    """YMap/YList -> dict/list, recursively (cassette payloads are handed to other code as JSON)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def read_cassette(path: str) -> tuple[Cassette | None, list[Diagnostic]]:
    """Load and check one cassette; never raises for bad input."""
    try:
        doc = load_yaml_file(path)
    except LoadError as exc:
        return None, [exc.diagnostic]
    reader = _Reader(path)
    cassette = reader.read(doc)
    return cassette, reader.diags


def load_cassette(path: str) -> Cassette:
    cassette, diags = read_cassette(path)
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
