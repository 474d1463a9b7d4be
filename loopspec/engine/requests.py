"""Building one model request from what the step offers (tools, reasoning, fallback model, boosted
token limit) and the turn's own options, and the record a turn keeps of what it sent."""

from __future__ import annotations

from typing import Any

from loopspec.language.model import Offer, Settings
from loopspec.providers.base import ModelRequest

from .results import RequestRecord
from .tools import ToolRegistry


def build_request(
    offer: Offer,
    messages: list[dict[str, Any]],
    *,
    settings: Settings,
    tools: ToolRegistry,
    model: str,
    max_tokens: int | None,
    reasoning_effort: str | None,
    extra: dict[str, Any],
    api_base: str | None,
    api_key: str | None,
    tool_choice: Any = None,
) -> ModelRequest:
    """The request for one ``call`` effect: ``messages`` is the trajectory's working copy.

    ``tool_choice`` is the caller's (e.g. ``"required"``); one smuggled in ``extra`` counts as the
    caller's too. It goes only with a request that offers tools, and becomes ``"auto"`` once the
    policy resets it (``reset_tool_choice``): a choice forced on every request makes a real model
    call tools forever."""
    extra = dict(extra)
    smuggled = extra.pop("tool_choice", None)
    extra.pop("tools", None)
    forced = smuggled if tool_choice is None else tool_choice
    specs = tools.specs() if offer.tools and tools.tools else None
    if not specs or forced is None:
        tool_choice = None
    else:
        tool_choice = "auto" if offer.tool_choice_auto else forced
    effort = reasoning_effort if offer.reasoning else None
    if offer.fallback_model and settings.fallback_model:
        model = settings.fallback_model
    if offer.max_tokens_boosted and settings.boosted_max_tokens:
        max_tokens = settings.boosted_max_tokens
    return ModelRequest(
        model=model,
        messages=messages,
        tools=specs,
        tool_choice=tool_choice,
        max_tokens=max_tokens,
        reasoning_effort=effort,
        extra=extra,
        api_base=api_base,
        api_key=api_key,
        timeout=settings.request_timeout,
    )


def record_of(request: ModelRequest, last_user: str | None = None) -> RequestRecord:
    """What a turn remembers of a request it sent (for expectations: was it sent without tools?).
    ``last_user``: the content of the request's last user message when the caller knows it (the
    history's own, for a request sent without compaction); else the messages are searched."""
    messages = request.messages
    if last_user is None:
        last_user = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    return RequestRecord(
        request.model,
        [t["function"]["name"] for t in request.tools or []],
        request.tool_choice,
        str(last_user),
        len(messages),
        request.reasoning_effort,
        request.max_tokens,
    )
