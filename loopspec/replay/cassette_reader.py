"""Reading a cassette file: load it, check it, and give every problem a ``file:line:col``
diagnostic like a bad policy gets."""

from __future__ import annotations

import json
import os
from typing import Any

import loopspec.language.codes as codes
from loopspec.language.diagnostics import Diagnostic, Position
from loopspec.language.errors import LoopspecError
from loopspec.language.yamlsource import LoadError, YMap, load_yaml_file

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
            params = plain(tm.get("parameters") or {"type": "object", "properties": {}})
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
        faults = {k: im[k] for k in FAULT_KEYS if k in im}
        if "pauses" in faults:
            faults["pauses"] = self.read_pauses(im, path.rsplit(".", 1)[0])
        if "keepalive" in faults and "stall_after" not in faults:
            self.error(
                "keepalive pings fill a pause, and this response has no stall",
                path.rsplit(".", 1)[0] + ".keepalive",
                im.pos_of("keepalive"),
                "add stall_after and stall_seconds, or give the pause in pauses: [{after, seconds, keepalive}]",
            )
            raise _Skip()
        if form == "error":
            em = self.expect_map(value, path, pos, "an error ({status, body})")
            if em is None or not isinstance(em.get("status"), int):
                self.error("an error needs an integer 'status'", path, pos)
                raise _Skip()
            return ErrorResponse(em["status"], plain(em.get("body", "")), plain(em.get("headers") or {}))
        if form == "completion":
            cm = self.expect_map(value, path, pos, "a completion body")
            if cm is None:
                raise _Skip()
            return CompletionResponse(plain(cm))
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
            return StreamResponse(chunks=tuple(plain(c) for c in lst), **faults)
        rm = self.expect_map(value, path, pos, "a reply ({text, reasoning, tool_calls, finish, usage})")
        if rm is None:
            raise _Skip()
        self.unknown_keys(rm, REPLY_KEYS, path, "a reply")
        usage = self.read_usage(rm, path)
        calls = []
        for j, tc in enumerate(rm.get("tool_calls") or []):
            if not isinstance(tc, dict) or "name" not in tc:
                self.error("a tool call needs a name (and arguments)", f"{path}.tool_calls[{j}]", pos)
                raise _Skip()
            args = tc.get("arguments", {})
            calls.append((tc["name"], args if isinstance(args, str) else plain(args)))
        finish = rm.get("finish")
        if finish is not None and not isinstance(finish, str):
            self.error("finish is a finish_reason string, or null for none at all", f"{path}.finish", rm.pos_of("finish"))
            raise _Skip()
        chunks = reply_chunks(
            str(rm.get("text") or ""), reasoning=str(rm.get("reasoning") or ""), tool_calls=calls, finish=finish,
            omit_finish="finish" in rm and finish is None, usage=usage,
        )
        return StreamResponse(chunks=tuple(chunks), **faults)

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
            if every is not None and (isinstance(every, bool) or not isinstance(every, (int, float))):
                self.error("keepalive is a number of seconds", f"{ppath}.keepalive", pm.pos_of("keepalive"))
                raise _Skip()
            out.append(Pause(after, float(seconds), None if every is None else float(every)))
        return tuple(out)

    def read_usage(self, rm: YMap, path: str) -> dict[str, int] | None:
        if rm.get("usage") is None:
            return None
        um = self.expect_map(rm["usage"], f"{path}.usage", rm.pos_of("usage"), "usage ({prompt_tokens, completion_tokens, reasoning_tokens})")
        if um is None:
            raise _Skip()
        self.unknown_keys(um, USAGE_KEYS, f"{path}.usage", "usage")
        for k, v in um.items():
            if k in USAGE_KEYS and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                self.report(codes.CASSETTE_WRONG_TYPE, f"{k} must be a whole number of tokens", f"{path}.usage.{k}", um.pos_of(k))
                raise _Skip()
        return {k: int(v) for k, v in um.items() if k in USAGE_KEYS}

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
            res = rm.get("result")
            result = None if res is None else (res if isinstance(res, str) else json.dumps(plain(res)))
            out.append(ToolOutcome(rm["tool"], result, rm.get("error"), blocks))
            self.positions[("tool_results", len(out) - 1)] = rm.pos
        return out

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
