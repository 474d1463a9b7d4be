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
    CANCEL_KEYS,
    CANCEL_POINTS,
    CASSETTE_VERSION,
    EXPECT_KEYS,
    FAULT_KEYS,
    INTERACTION_FORMS,
    INTERACTION_KEYS,
    PAUSE_KEYS,
    PROPERTIES,
    REPLY_KEYS,
    REQUEST_EXPECT_KEYS,
    REQUEST_KEYS,
    TOOL_RESULT_KEYS,
    TOP_KEYS,
    USAGE_KEYS,
    Bound,
    CancelPoint,
    Cassette,
    CassetteError,
    Expectations,
    RecordedStep,
    RequestExpectation,
    RequestOptions,
    ToolOutcome,
    ToolSpec,
)
from .interactions import CompletionResponse, ErrorResponse, Interaction, Pause, Served, StreamResponse, WhenNoTools
from .synth import reply_chunks

_RENAMED_PROPERTIES = {"halt_message_nonempty": "halt_message", "no_partial_tool_ran": "no_partial_tool_exec"}


class _Reader(DocumentReader):
    UNKNOWN_KEY = codes.CASSETTE_UNKNOWN_KEY
    WRONG_TYPE = codes.CASSETTE_WRONG_TYPE

    def __init__(self, file: str):
        super().__init__(file)
        self.base = os.path.dirname(os.path.abspath(file))
        self.positions: dict[tuple[str, int], Position] = {}
        """Where read items stood, for checks made after reading them."""

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
            source=_plain(root.get("source") or {}),
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
            calls.append((tc["name"], args if isinstance(args, str) else _plain(args)))
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
            result = None if res is None else (res if isinstance(res, str) else json.dumps(_plain(res)))
            out.append(ToolOutcome(rm["tool"], result, rm.get("error"), blocks))
            self.positions[("tool_results", len(out) - 1)] = rm.pos
        return out

    def read_request(self, root: YMap) -> RequestOptions:
        """``request:``: the options the caller passed to the Turn."""
        if root.get("request") is None:
            return RequestOptions()
        rm = self.expect_map(root["request"], "request", root.pos_of("request"), "request ({tool_choice, reasoning_effort, max_tokens, extra})")
        if rm is None:
            return RequestOptions()
        self.unknown_keys(rm, REQUEST_KEYS, "request", "request")

        def bad(key: str, what: str) -> None:
            self.report(codes.BAD_REQUEST_OPTIONS, f"request.{key} {what}", f"request.{key}", rm.pos_of(key))

        choice, effort, tokens, extra = rm.get("tool_choice"), rm.get("reasoning_effort"), rm.get("max_tokens"), rm.get("extra")
        if choice is not None and not isinstance(choice, (str, dict)):
            bad("tool_choice", "must be a string (auto, required, none) or a mapping naming a function")
        if effort is not None and not isinstance(effort, str):
            bad("reasoning_effort", "must be a string (e.g. low, medium, high)")
        if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1):
            bad("max_tokens", "must be a positive integer")
        if extra is not None and not isinstance(extra, dict):
            bad("extra", "must be a mapping of litellm keyword arguments")
        return RequestOptions(
            tool_choice=_plain(choice),
            reasoning_effort=effort if isinstance(effort, str) else None,
            max_tokens=tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None,
            extra=tuple(_plain(extra).items()) if isinstance(extra, dict) else (),
        )

    def read_cancel(self, root: YMap, tools: list[ToolSpec], results: list[ToolOutcome]) -> CancelPoint | None:
        """``cancel:``: where the caller cancels. A tool that blocks must have a cancel that ends it."""
        cancel: CancelPoint | None = None
        if root.get("cancel") is not None:
            cancel = self._cancel_point(root)
        for i, r in enumerate(results):
            if r.blocks and (cancel is None or cancel.during_tool != r.tool):
                self.report(
                    codes.BAD_CANCEL_POINT,
                    f"tool {r.tool!r} blocks until the turn is cancelled, and nothing cancels it",
                    f"tool_results[{i}]",
                    self.positions.get(("tool_results", i)),
                    f"add 'cancel: {{during_tool: {r.tool}}}', or give the tool a result",
                )
        if cancel is not None and cancel.during_tool is not None and cancel.during_tool not in {t.name for t in tools}:
            cm = root["cancel"]
            self.report(
                codes.BAD_CANCEL_POINT,
                f"cancel.during_tool names {cancel.during_tool!r}, which the cassette's tools do not offer",
                "cancel.during_tool",
                cm.pos_of("during_tool"),
                did_you_mean(cancel.during_tool, [t.name for t in tools]),
            )
        return cancel

    def _cancel_point(self, root: YMap) -> CancelPoint | None:
        cm = self.expect_map(root["cancel"], "cancel", root.pos_of("cancel"), "cancel (where the caller cancels the turn)")
        if cm is None:
            return None
        self.unknown_keys(cm, CANCEL_KEYS, "cancel", "cancel")
        points = [k for k in CANCEL_POINTS if k in cm]
        if len(points) != 1:
            self.report(
                codes.BAD_CANCEL_POINT,
                f"cancel has exactly one of: {', '.join(CANCEL_POINTS)}",
                "cancel",
                root.pos_of("cancel"),
                f"found {' and '.join(points) if points else 'none'}",
            )
            return None
        point = points[0]
        value = cm[point]
        if point == "during_tool":
            if not isinstance(value, str):
                self.report(codes.BAD_CANCEL_POINT, "cancel.during_tool names a tool", "cancel.during_tool", cm.pos_of(point))
                return None
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.report(
                codes.BAD_CANCEL_POINT,
                f"cancel.{point} counts from 1, got {value!r}",
                f"cancel.{point}",
                cm.pos_of(point),
                "1 = the first " + ("backoff" if point == "during_backoff" else "model call"),
            )
            return None
        after = cm.get("after_chunks", 0)
        if "after_chunks" in cm and point != "during_call":
            self.report(codes.BAD_CANCEL_POINT, "after_chunks goes with during_call", "cancel.after_chunks", cm.pos_of("after_chunks"))
            return None
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            self.report(codes.BAD_CANCEL_POINT, "cancel.after_chunks is a whole number of chunks", "cancel.after_chunks", cm.pos_of("after_chunks"))
            return None
        return CancelPoint(**{point: value}, after_chunks=after)

    def read_expect(self, root: YMap) -> Expectations:
        if root.get("expect") is None:
            return Expectations()
        em = self.expect_map(root["expect"], "expect", root.pos_of("expect"), "expect")
        if em is None:
            return Expectations()
        self.unknown_keys(em, EXPECT_KEYS, "expect", "expect")
        outcome, any_of = self.read_outcome(em)
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
        counters: list[tuple[str, Bound]] = []
        cm = em.get("counters")
        if cm is not None:
            cmap = self.expect_map(cm, "expect.counters", em.pos_of("counters"), "counters ({counter: N or {max: N}})")
            for name, v in (cmap or {}).items():
                b = self.read_bound(v, f"expect.counters.{name}", cmap.pos_of(name) if cmap is not None else None, integer=True)
                if b is not None:
                    counters.append((str(name), b if isinstance(b, Bound) else Bound(exact=b)))
        elapsed = self.read_bound(em.get("elapsed"), "expect.elapsed", em.pos_of("elapsed"), integer=False)
        return Expectations(
            outcome=outcome,
            outcome_any_of=any_of,
            model_calls=self.read_bound(em.get("model_calls"), "expect.model_calls", em.pos_of("model_calls"), integer=True),
            tool_batches=self.read_bound(em.get("tool_batches"), "expect.tool_batches", em.pos_of("tool_batches"), integer=True),
            final_response_contains=tuple(_strings(em.get("final_response_contains"))),
            message_contains=tuple(_strings(em.get("message_contains"))),
            message_not_contains=tuple(_strings(em.get("message_not_contains"))),
            tools_never_ran=tuple(_strings(em.get("tools_never_ran"))),
            counters=tuple(counters),
            elapsed=elapsed if isinstance(elapsed, Bound) or elapsed is None else Bound(exact=elapsed),
            all_played=bool(em.get("all_played", False)),
            requests=tuple(self.read_request_expectations(em)),
            properties=props,
            max_fires=tuple(fires),
        )

    def read_outcome(self, em: YMap) -> tuple[str | None, tuple[str, ...]]:
        """``outcome: NAME`` or ``outcome: {any_of: [NAME, ...]}``."""
        value, pos = em.get("outcome"), em.pos_of("outcome")
        if value is None:
            return None, ()
        if isinstance(value, dict):
            self.unknown_keys(value, ("any_of",), "expect.outcome", "outcome")  # type: ignore[arg-type]
            names = value.get("any_of")
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                self.error("outcome.any_of is a list of outcomes", "expect.outcome.any_of", pos, "e.g. outcome: {any_of: [completed, tool_budget]}")
                return None, ()
            for n in names:
                if n not in OUTCOMES:
                    self.error(f"unknown outcome {n!r}", "expect.outcome.any_of", value.pos_of("any_of"), did_you_mean(n, OUTCOMES))  # type: ignore[attr-defined]
            return None, tuple(names)
        if value not in OUTCOMES:
            self.error(f"unknown outcome {value!r}", "expect.outcome", pos, did_you_mean(value, OUTCOMES))
        return value, ()

    def read_bound(self, value: Any, path: str, pos: Position | None, *, integer: bool) -> Any:
        """A number as is, or ``{min: N, max: N}`` (either or both) as a :class:`Bound`."""
        if value is None:
            return None
        kind = "a whole number" if integer else "a number of seconds"

        def ok(v: Any) -> bool:
            return not isinstance(v, bool) and isinstance(v, int if integer else (int, float)) and v >= 0

        if ok(value):
            return value  # type: ignore[no-any-return]
        if isinstance(value, dict) and value and set(value) <= {"min", "max"} and all(ok(v) for v in value.values()):
            lo, hi = value.get("min"), value.get("max")
            if lo is not None and hi is not None and lo > hi:
                self.report(codes.BAD_BOUND, f"{path}: min {lo} is above max {hi}", path, pos)
                return None
            return Bound(min=lo, max=hi)
        self.report(codes.BAD_BOUND, f"{path} must be {kind}, or {{max: N}} and/or {{min: N}}, got {value!r}", path, pos,
                    f"e.g. {path.rsplit('.', 1)[-1]}: {{max: 3}}")
        return None

    def read_request_expectations(self, em: YMap) -> list[RequestExpectation]:
        reqs: list[RequestExpectation] = []
        lst = em.get("requests")
        if lst is None:
            return reqs
        if not isinstance(lst, list):
            self.report(codes.CASSETTE_WRONG_TYPE, "expect.requests must be a list", "expect.requests", em.pos_of("requests"))
            return reqs
        for j, r in enumerate(lst):
            path = f"expect.requests[{j}]"
            pos = lst.pos_of(j) if hasattr(lst, "pos_of") else em.pos_of("requests")
            if not isinstance(r, dict):
                self.error("a request expectation is a mapping with an 'index'", path, pos)
                continue
            self.unknown_keys(r, REQUEST_EXPECT_KEYS, path, "a request expectation")  # type: ignore[arg-type]
            index = r.get("index")
            ipos = r.pos_of("index") if hasattr(r, "pos_of") else pos
            if isinstance(index, bool) or not isinstance(index, int) or index == 0:
                self.report(
                    codes.BAD_REQUEST_INDEX,
                    f"request index {index!r} names no request" if index == 0 else "a request expectation needs an integer 'index'",
                    f"{path}.index",
                    ipos,
                    "1 = the first request, -1 = the last (negative counts from the end); there is no request 0",
                )
                continue
            if r.get("tools") not in (None, "present", "absent"):
                self.error("tools is 'present' or 'absent'", f"{path}.tools", pos)
            carries = tuple((k, _plain(r[k])) for k in ("tool_choice", "reasoning_effort", "max_tokens", "model") if k in r)
            reqs.append(RequestExpectation(index, r.get("tools"), r.get("prompt_contains"), carries))
        return reqs

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
