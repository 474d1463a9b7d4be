"""The live provider: litellm ``acompletion`` streaming, normalised to Deltas.

litellm is imported lazily (``loopspec validate``/``check`` must not pay its 2.5 s import) and
with ``LITELLM_LOCAL_MODEL_COST_MAP`` set first (otherwise the import tries the network).
Retries are the policy's job, so litellm/openai retries are off: ``max_retries=0`` and never
``num_retries`` (it overrides max_retries, retries 400s and needs tenacity; docs/providers.md, "Retries").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from typing import Any, NoReturn

from loopspec.wire.classify import classify_exception
from loopspec.wire.deltas import Delta, ToolCallFragment
from loopspec.providers.base import ModelRequest, ProviderError, StreamBroken
from loopspec.wire.redaction import literal_secrets
from loopspec.providers.chunks import delta_from_litellm_chunk, field_of, usage_from_obj

__all__ = ["LiteLLMProvider", "LiteLLMResponseStream", "close_clients", "import_litellm", "priced"]

_litellm: Any = None


def import_litellm() -> Any:
    """Import litellm once, quietly and offline-safe."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        _litellm = litellm
    return _litellm


async def close_clients() -> None:
    """Close the async HTTP clients litellm caches per event loop (their sockets leak otherwise).
    Does nothing when this process never imported litellm: importing it only to close nothing
    costs 2.5 s and, without the local cost map, a network fetch."""
    if _litellm is None:
        return
    try:
        from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients
    except ImportError:  # pragma: no cover - a litellm without the helper
        return
    await close_litellm_async_clients()


def build_kwargs(request: ModelRequest, default_timeout: float, *, stream: bool = True) -> dict[str, Any]:
    """The ``acompletion`` keyword arguments for a request (exposed for tests and recording):
    streamed, or with ``stream=False`` one whole response."""
    kwargs: dict[str, Any] = dict(request.extra)
    caller_stream_options = kwargs.pop("stream_options", None)
    # tools and tool_choice come from the request alone: extra must not force a tool_choice onto a
    # request that offers no tools
    kwargs.pop("tools", None)
    kwargs.pop("tool_choice", None)
    kwargs.update(
        model=request.model,
        messages=request.messages,
        stream=stream,
        max_retries=0,
        timeout=request.timeout if request.timeout is not None else default_timeout,
    )
    if stream:  # only a stream takes them
        # without it litellm drops the usage-only final chunk, and a reply whose output all went
        # to hidden reasoning (gpt-5-nano: finish length, no text) looks like a plain cut-off
        kwargs["stream_options"] = {**(caller_stream_options or {}), "include_usage": True}
    kwargs.pop("num_retries", None)
    if request.tools:
        kwargs["tools"] = request.tools
        if request.tool_choice is not None:
            kwargs["tool_choice"] = request.tool_choice
    if request.max_tokens is not None:
        kwargs["max_tokens"] = request.max_tokens
    if request.reasoning_effort is not None:
        kwargs["reasoning_effort"] = request.reasoning_effort
    if request.api_base is not None:
        kwargs["api_base"] = request.api_base
    if request.api_key is not None:
        kwargs["api_key"] = request.api_key
    return kwargs


class LiteLLMResponseStream:
    """Async iterator of Deltas over a litellm ``CustomStreamWrapper``.

    Mid-stream failures become :class:`StreamBroken`; cancellation propagates untouched. Once
    the stream has ended, failed or been closed, the wrapper is never read again.
    """

    def __init__(self, wrapper: Any, *, model: str) -> None:
        self.model = model
        """Priced with litellm's cost map when the usage arrives (see :func:`priced`)."""
        self._wrapper = wrapper
        self._iter = wrapper.__aiter__()
        self._done = False
        self._rest_unread = False
        """The reply's last chunk was handed out: the rest of the upstream is read next
        (:func:`rest_to_the_end`)."""
        self._rest: list[Delta] = []
        """Deltas read with the rest of the upstream and not handed out yet (the usage last)."""

    def __aiter__(self) -> "LiteLLMResponseStream":
        return self

    async def __anext__(self) -> Delta:
        if self._rest:  # read with the upstream's rest, before its end
            return self._rest.pop(0)
        if self._done:
            raise StopAsyncIteration
        wrapper = self._wrapper
        try:
            if self._rest_unread:
                # the reply's last chunk is out: read the rest as litellm would, without its rebuild
                self._rest_unread = False
                handed, usage = await rest_to_the_end(wrapper)
                rest = [priced(delta_from_litellm_chunk(c), self.model) for c in handed]
                if usage is not None:
                    rest.append(priced(Delta(usage=usage_from_obj(usage)), self.model))
                    self._done = True  # the upstream is read to its end; only litellm's rebuild is left
                    await self._close_wrapper()
                if rest:  # without the usage, litellm's own end is read after these
                    self._rest = rest
                    return self._rest.pop(0)
            chunk = await self._iter.__anext__()
        except StopAsyncIteration:
            self._done = True
            raise
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._done = True
            raise StreamBroken(classify_exception(e, phase="stream")) from e
        if getattr(wrapper, "sent_stream_usage", False) is True and not litellm_logs_successes(wrapper):
            # litellm's usage chunk ends the stream: the upstream is exhausted and asking again
            # only rebuilds the whole reply (in a worker thread) to log a success nobody listens to
            self._done = True
            await self._close_wrapper()
        else:
            self._rest_unread = reply_ended_unheard(wrapper)
        return priced(delta_from_litellm_chunk(chunk), self.model)

    async def aclose(self) -> None:
        """Release the HTTP connection (used after a stall or an early stop). Idempotent."""
        self._done, self._rest = True, []
        await self._close_wrapper()

    async def _close_wrapper(self) -> None:
        wrapper, self._wrapper = self._wrapper, None
        if wrapper is not None:
            with contextlib.suppress(Exception):  # a wrapper without aclose, or one that fails closing
                await wrapper.aclose()


_UNKNOWN = object()


def reply_ended_unheard(wrapper: Any) -> bool:
    """Whether litellm just handed out the reply's last chunk (its finish reason) with the usage
    asked for still to come, nobody listens for the stream's end (:func:`litellm_logs_successes`),
    and the wrapper has the parts :func:`rest_to_the_end` reads (litellm 1.106's)."""
    return (
        getattr(wrapper, "sent_last_chunk", False) is True
        and getattr(wrapper, "send_stream_usage", False) is True
        and getattr(wrapper, "sent_stream_usage", True) is False
        and hasattr(getattr(wrapper, "completion_stream", None), "__aiter__")
        and callable(getattr(wrapper, "chunk_creator", None))
        and isinstance(getattr(wrapper, "chunks", None), list)
        and not litellm_logs_successes(wrapper)
    )


async def rest_to_the_end(wrapper: Any) -> tuple[list[Any], Any]:
    """The rest of the upstream after the reply's last chunk, read as litellm reads it but without
    its rebuild: the chunks litellm would still hand out, and the reply's usage.

    After a reply's last chunk litellm hands out only what still carries something (no upstream
    seen sends any) and keeps the chunks that carry usage (``CustomStreamWrapper.chunks``); at the
    upstream's end it rebuilds the whole reply from its chunks in a worker thread
    (``stream_chunk_builder``, about 1 ms of CPU for a short reply, 2 ms a request in a live turn)
    only to report that usage and its cost. This runs litellm's own loop on the rest (its
    ``chunk_creator`` on each chunk; a chunk with usage kept whole and handed out without it, when
    anything is left; a dropped connection read as the end), adds the usage up with litellm's
    ``calculate_total_usage`` and prices it as the rebuild does (:func:`_stamp_cost`). The usage is
    None when no chunk carried any: then litellm's own end, which counts the tokens itself, is read
    next as before (it finds the upstream already at its end). A failure is raised as litellm raises
    it (mapped, and its failure logged)."""
    import httpx
    from litellm.litellm_core_utils.model_response_utils import is_model_response_stream_empty
    from litellm.litellm_core_utils.streaming_handler import calculate_total_usage

    gemini = getattr(wrapper, "custom_llm_provider", None) == "gemini"
    handed: list[Any] = []
    try:
        async for raw in wrapper.completion_stream:
            if raw is None or raw == "None" or (gemini and hasattr(raw, "parts") and len(raw.parts) == 0):
                continue
            processed = wrapper.chunk_creator(chunk=raw)
            if processed is None:
                continue
            if getattr(processed, "usage", None) is not None:
                wrapper.chunks.append(processed.model_copy())
                processed = processed.model_copy()
                processed.usage = None  # the usage is counted once, with the rest's end
                if is_model_response_stream_empty(model_response=processed):
                    continue
            else:
                wrapper.chunks.append(processed)
            handed.append(processed)
    except StopIteration:  # chunk_creator's way of ending some providers' streams
        pass
    except (httpx.ReadError, httpx.RemoteProtocolError):
        # a dropped connection after the finish reason is the end to litellm too (the rest is
        # read only once the upstream sent its finish reason, or ended without one)
        pass
    except Exception as e:
        _raise_as_litellm(wrapper, e)
    kept = [c for c in wrapper.chunks if getattr(c, "usage", None) is not None]
    if not kept:
        return handed, None
    usage = calculate_total_usage(chunks=wrapper.chunks)
    _stamp_cost(wrapper, usage, kept[-1])
    return handed, usage


def _raise_as_litellm(wrapper: Any, e: Exception) -> NoReturn:
    """Raise ``e`` as litellm's own read would: mapped to its exception types, failure logged."""
    fail = getattr(wrapper, "_log_stream_failure_and_raise", None)
    if callable(fail):
        fail(e)
    raise e


def _stamp_cost(wrapper: Any, usage: Any, last: Any) -> None:
    """Price ``usage`` as litellm's rebuild does: its cost calculator on a response carrying the
    upstream's own model name (a provider-reported cost is kept)."""
    logging_obj = getattr(wrapper, "logging_obj", None)
    if logging_obj is None or isinstance(getattr(usage, "cost", None), (int, float)):
        return
    with contextlib.suppress(Exception):  # litellm's calculator raises for a model it cannot price
        response = _litellm.ModelResponse(model=getattr(last, "model", None), usage=usage)
        response._hidden_params = dict(getattr(last, "_hidden_params", None) or {})
        cost = logging_obj.response_cost_calculator(result=response)
        if isinstance(cost, (int, float)) and cost > 0:
            usage.cost = cost


def litellm_logs_successes(wrapper: Any) -> bool:
    """Whether litellm has anything to do once a stream has ended: a success callback (global or
    passed with the request) or a response cache. Only then is its second end-of-stream pass,
    the one after the usage chunk, worth waiting for."""
    litellm = _litellm
    if litellm is None:  # a wrapper that did not come from this module's litellm: keep going
        return True
    lists = [getattr(litellm, name, _UNKNOWN) for name in ("callbacks", "success_callback", "_async_success_callback")]
    if any(x is _UNKNOWN or x for x in lists) or getattr(litellm, "cache", _UNKNOWN) is not None:
        return True  # a listener, or a litellm that keeps them elsewhere: read to its end
    logging_obj = getattr(wrapper, "logging_obj", None)
    return bool(getattr(logging_obj, "dynamic_success_callbacks", None)
                or getattr(logging_obj, "dynamic_async_success_callbacks", None))


class CompletedResponse:
    """A non-streaming response as a one-delta stream, so the interpreter's ``stream`` effect and
    the classifier treat both modes alike."""

    def __init__(self, delta: Delta) -> None:
        self._delta: Delta | None = delta

    def __aiter__(self) -> "CompletedResponse":
        return self

    async def __anext__(self) -> Delta:
        if self._delta is None:
            raise StopAsyncIteration
        delta, self._delta = self._delta, None
        return delta

    async def aclose(self) -> None:
        self._delta = None


_UNPRICED: set[str] = set()
"""Models litellm's local cost map does not know (looking one up costs about 0.2 ms, raising)."""


def priced(delta: Delta, model: str) -> Delta:
    """``delta`` with the cost of its usage, when it carries usage the provider did not price.

    The price is litellm's local cost map (``LITELLM_LOCAL_MODEL_COST_MAP``, never a download): a
    model missing from it leaves the cost unknown (None), which a cost budget does not charge and
    records as ``cost_unknown``. A cost the provider reported itself (OpenRouter's ``usage.cost``)
    is kept as it is."""
    u = delta.usage
    if u is None or u.cost is not None or not model or model in _UNPRICED:
        return delta
    try:
        prompt, completion = import_litellm().cost_per_token(
            model=model, prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens
        )
        cost = float(prompt) + float(completion)
    except Exception:  # litellm raises its own errors for a model it does not know
        _UNPRICED.add(model)  # the local map does not change while the process runs: ask once
        return delta
    if not 0 <= cost < float("inf"):
        return delta
    return delta._replace(usage=dataclasses.replace(u, cost=cost))


def delta_from_litellm_response(response: Any) -> Delta:
    """A whole litellm ``ModelResponse`` (non-streaming) as one Delta."""
    choice = (field_of(response, "choices") or [None])[0]
    message = field_of(choice, "message")  # field_of(None, name) is None: no choice, no message
    frags = tuple(
        ToolCallFragment(i, field_of(tc, "id"), field_of(field_of(tc, "function"), "name"), field_of(field_of(tc, "function"), "arguments") or "")
        for i, tc in enumerate(field_of(message, "tool_calls") or [])
    )
    return Delta(
        text=field_of(message, "content") or "",
        reasoning=field_of(message, "reasoning_content") or "",
        tool_calls=frags,
        finish_reason=field_of(choice, "finish_reason") or None,
        usage=usage_from_obj(field_of(response, "usage")),
    )


class LiteLLMProvider:
    """``Provider`` backed by ``litellm.acompletion``: streaming by default, or ``stream=False``
    for providers or proxies that only answer whole responses."""

    def __init__(self, *, default_timeout: float = 600.0, stream: bool = True) -> None:
        self.default_timeout = default_timeout
        self.stream = stream

    async def open(self, request: ModelRequest) -> LiteLLMResponseStream:
        """Send the request; returns once the response headers arrived.

        HTTP errors (429, 4xx, 5xx) are raised by ``acompletion`` itself and surface here as
        :class:`ProviderError`. Waiting for the first chunk is the stream's job: a provider that
        sends headers and then nothing is a stalled stream (a zero-character stub), which the
        interpreter's stall timer must see exactly as in-process replay shows it.
        """
        litellm = import_litellm()
        kwargs = build_kwargs(request, self.default_timeout, stream=self.stream)
        try:
            wrapper = await litellm.acompletion(**kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            raise ProviderError(classify_exception(e, phase="call", secrets=literal_secrets(request.api_key))) from e
        if not self.stream:
            return CompletedResponse(priced(delta_from_litellm_response(wrapper), request.model))  # type: ignore[return-value]
        return LiteLLMResponseStream(wrapper, model=request.model)


