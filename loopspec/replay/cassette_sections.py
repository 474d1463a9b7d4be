"""Reading a cassette's request, cancel and expect sections: what the turn is asked to do and
what a replay must see. The rest of the document is read in :mod:`.cassette_reader`."""

from __future__ import annotations

import math
import os
from typing import Any

import loopspec.language.codes as codes
from loopspec.language.alphabet import OUTCOMES
from loopspec.language.diagnostics import Position, did_you_mean
from loopspec.language.reader import DocumentReader, type_name
from loopspec.language.yamlsource import YMap

from .cassette_files import SideFile, files_root_for
from .cassette_model import (
    plain,
    CANCEL_KEYS,
    CANCEL_POINTS,
    EXPECT_KEYS,
    PROPERTIES,
    REQUEST_EXPECT_KEYS,
    REQUEST_KEYS,
    Bound,
    CancelPoint,
    Expectations,
    RequestExpectation,
    RequestOptions,
    ToolOutcome,
    ToolSpec,
)

_RENAMED_PROPERTIES = {"halt_message_nonempty": "halt_message", "no_partial_tool_ran": "no_partial_tool_exec"}



class SectionReader(DocumentReader):
    """The cassette reader's base: its error codes, and the sections that configure and judge a turn."""

    UNKNOWN_KEY = codes.CASSETTE_UNKNOWN_KEY
    WRONG_TYPE = codes.CASSETTE_WRONG_TYPE

    def __init__(self, file: str, *, files_root: str | None = None):
        super().__init__(file)
        self.base = os.path.dirname(os.path.abspath(file))
        self.files_root = files_root_for(self.base, files_root)
        """The folder an ``sse_file`` must stay in."""
        self.positions: dict[tuple[str, int], Position] = {}
        """Where read items stood, for checks made after reading them."""
        self.side_files: list[SideFile] = []
        """The side files read (``sse_file``), as they were when read."""

    def error(self, message: str, path: str, pos: Position | None, hint: str = "") -> None:
        self.report(codes.BAD_CASSETTE, message, path, pos, hint)

    def wrong_type(self, message: str, path: str, pos: Position | None, hint: str = "") -> None:
        self.report(codes.CASSETTE_WRONG_TYPE, message, path, pos, hint or "`loopspec cassette-schema` gives every field's type")

    def read_strings(self, parent: YMap, key: str, path: str, what: str) -> list[str]:
        """``key: TEXT`` or ``key: [TEXT, ...]``; anything else (a number, a boolean, a mapping, a
        list holding one) is reported, not turned into text with ``str``."""
        v = parent.get(key)
        if v is None:
            return []
        if isinstance(v, str):
            return [v]
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return list(v)
        self.wrong_type(f"{path} must be {what} (a string or a list of strings), got {type_name(v)}", path, parent.pos_of(key),
                        f"quote it: {key}: \"{v}\"" if isinstance(v, (bool, int, float)) else "")
        return []


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
            tool_choice=plain(choice),
            reasoning_effort=effort if isinstance(effort, str) else None,
            max_tokens=tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None,
            extra=tuple(plain(extra).items()) if isinstance(extra, dict) else (),
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
        props = tuple(self.read_strings(em, "properties", "expect.properties", "a list of property names"))
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
            final_response_contains=tuple(self.read_strings(em, "final_response_contains", "expect.final_response_contains", "text")),
            message_contains=tuple(self.read_strings(em, "message_contains", "expect.message_contains", "text")),
            message_not_contains=tuple(self.read_strings(em, "message_not_contains", "expect.message_not_contains", "text")),
            tools_never_ran=tuple(self.read_strings(em, "tools_never_ran", "expect.tools_never_ran", "tool names")),
            counters=tuple(counters),
            elapsed=elapsed if isinstance(elapsed, Bound) or elapsed is None else Bound(exact=elapsed),
            all_played=self.read_flag(em, "all_played", "expect.all_played"),
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
        if not isinstance(value, str):
            self.wrong_type(f"expect.outcome must be an outcome name or {{any_of: [...]}}, got {type_name(value)}", "expect.outcome", pos,
                            "e.g. outcome: completed")
            return None, ()
        if value not in OUTCOMES:
            self.error(f"unknown outcome {value!r}", "expect.outcome", pos, did_you_mean(value, OUTCOMES))
        return value, ()

    def read_bound(self, value: Any, path: str, pos: Position | None, *, integer: bool) -> Any:
        """A number as is, or ``{min: N, max: N}`` (either or both) as a :class:`Bound`."""
        if value is None:
            return None
        kind = "a whole number" if integer else "a number of seconds"

        def ok(v: Any) -> bool:
            return not isinstance(v, bool) and isinstance(v, int if integer else (int, float)) and math.isfinite(v) and v >= 0

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
            prompt = r.get("prompt_contains")
            if prompt is not None and not isinstance(prompt, str):
                self.wrong_type(f"{path}.prompt_contains must be text, got {type_name(prompt)}", f"{path}.prompt_contains",
                                r.pos_of("prompt_contains") if hasattr(r, "pos_of") else pos, f'quote it: prompt_contains: "{prompt}"')
                continue
            carries = tuple((k, plain(r[k])) for k in ("tool_choice", "reasoning_effort", "max_tokens", "model") if k in r)
            reqs.append(RequestExpectation(index, r.get("tools"), r.get("prompt_contains"), carries))
        return reqs


    def read_flag(self, parent: YMap, key: str, path: str) -> bool:
        """``key: true`` or ``key: false``; a string or number is reported, not read as truthy."""
        v = parent.get(key, False)
        if isinstance(v, bool):
            return v
        self.wrong_type(f"{path} is true or false, got {type_name(v)}", path, parent.pos_of(key))
        return False
