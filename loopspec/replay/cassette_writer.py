"""Writing a cassette: the model as YAML data and text, and storing a decision trace into an
existing file without touching the rest of it."""

from __future__ import annotations

from typing import Any

import yaml

from .cassette_model import CASSETTE_VERSION, Bound, CancelPoint, Cassette, RecordedStep, RequestOptions
from .interactions import CompletionResponse, ErrorResponse, Interaction, WhenNoTools



class CassetteDumper(yaml.SafeDumper):
    """Dumps cassette YAML with multi-line strings as literal blocks, so recorded bodies stay readable;
    the redactor writes with it too."""


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


CassetteDumper.add_representer(str, _str_presenter)


def interaction_to_data(it: Interaction) -> dict[str, Any]:
    if isinstance(it, WhenNoTools):
        return {**interaction_to_data(it.default), "when_no_tools": interaction_to_data(it.no_tools)}
    if isinstance(it, ErrorResponse):
        data: dict[str, Any] = {"error": {"status": it.status, "body": it.body}}
        if it.headers:
            data["error"]["headers"] = dict(it.headers)
        return data
    if isinstance(it, CompletionResponse):
        return {"completion": it.body}
    data = {"sse": it.sse} if it.sse is not None else {"chunks": list(it.chunks or ())}
    if it.stall_after is not None:
        data.update(stall_after=it.stall_after, stall_seconds=it.stall_seconds)
        if it.keepalive is not None:
            data["keepalive"] = it.keepalive
    if it.pauses:
        data["pauses"] = [
            {"after": p.after, "seconds": p.seconds, **({"keepalive": p.keepalive} if p.keepalive else {})} for p in it.pauses
        ]
    if it.disconnect_after is not None:
        data["disconnect_after"] = it.disconnect_after
    return data


def cassette_to_data(c: Cassette) -> dict[str, Any]:
    data: dict[str, Any] = {"loopspec_cassette": CASSETTE_VERSION, "name": c.name}
    if c.doc:
        data["doc"] = c.doc
    if c.source:
        data["source"] = c.source
    data["model"] = c.model
    if c.request != RequestOptions():
        data["request"] = request_to_data(c.request)
    data["messages"] = list(c.messages)
    if c.tools:
        data["tools"] = [
            {
                "name": t.name,
                **({"description": t.description} if t.description else {}),
                "parameters": t.parameters,
                **({"needs_approval": True} if t.needs_approval else {}),
            }
            for t in c.tools
        ]
    data["interactions"] = [interaction_to_data(i) for i in c.interactions]
    if c.tool_results:
        data["tool_results"] = [
            {"tool": r.tool, **_tool_answer(r.result, r.error, r.blocks)} for r in c.tool_results
        ]
    if c.cancel is not None:
        data["cancel"] = cancel_to_data(c.cancel)
    e = c.expect
    if not e.empty:
        exp: dict[str, Any] = {}
        if e.outcome is not None:
            exp["outcome"] = e.outcome
        elif e.outcome_any_of:
            exp["outcome"] = {"any_of": list(e.outcome_any_of)}
        for key in ("model_calls", "tool_batches", "elapsed"):
            value = getattr(e, key)
            if value is not None:
                exp[key] = value.to_data() if isinstance(value, Bound) else value
        for key in ("final_response_contains", "message_contains", "message_not_contains", "tools_never_ran"):
            if getattr(e, key):
                exp[key] = list(getattr(e, key))
        if e.counters:
            exp["counters"] = {name: b.to_data() for name, b in e.counters}
        if e.all_played:
            exp["all_played"] = True
        if e.requests:
            exp["requests"] = [
                {
                    "index": r.index,
                    **({"tools": r.tools} if r.tools is not None else {}),
                    **({"prompt_contains": r.prompt_contains} if r.prompt_contains is not None else {}),
                    **dict(r.carries),
                }
                for r in e.requests
            ]
        if e.properties:
            exp["properties"] = list(e.properties)
        if e.max_fires:
            exp["max_fires"] = dict(e.max_fires)
        data["expect"] = exp
    if c.trace:
        data["trace"] = [{k: v for k, v in vars(s).items() if v is not None} for s in c.trace]
    return data


def _tool_answer(result: str | None, error: str | None, blocks: bool) -> dict[str, Any]:
    if blocks:
        return {"blocks": True}
    return {"error": error} if error is not None else {"result": result}


def request_to_data(r: RequestOptions) -> dict[str, Any]:
    data: dict[str, Any] = {k: getattr(r, k) for k in ("tool_choice", "reasoning_effort", "max_tokens") if getattr(r, k) is not None}
    if r.extra:
        data["extra"] = dict(r.extra)
    return data


def cancel_to_data(c: CancelPoint) -> dict[str, Any]:
    data: dict[str, Any] = {
        k: getattr(c, k) for k in ("before_call", "during_call", "during_tool", "during_backoff") if getattr(c, k) is not None
    }
    if c.during_call is not None and c.after_chunks:
        data["after_chunks"] = c.after_chunks
    return data


def dump_cassette(c: Cassette) -> str:
    return yaml.dump(cassette_to_data(c), Dumper=CassetteDumper, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)


def write_cassette(c: Cassette, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(dump_cassette(c))


def store_trace(path: str, trace: list[RecordedStep]) -> None:
    """Write ``trace`` into the cassette file as its top-level ``trace:``, keeping the rest of the
    file (comments, anchors, layout) exactly as it is; an existing ``trace:`` is replaced."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines(keepends=True)
    out: list[str] = []
    skipping = False
    for line in lines:
        top_level = bool(line.strip()) and not line[0].isspace() and not line.startswith(("#", "-"))
        if top_level:
            skipping = line.startswith("trace:")
        if not skipping:
            out.append(line)
    text = "".join(out).rstrip("\n") + "\n"
    steps = [{k: v for k, v in vars(s).items() if v is not None} for s in trace]
    text += yaml.dump({"trace": steps}, Dumper=CassetteDumper, sort_keys=False, allow_unicode=True, width=200, default_flow_style=None)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
