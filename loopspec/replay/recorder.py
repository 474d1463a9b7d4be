"""Record one live turn into a cassette.

:class:`RecordingProvider` is the live litellm provider with a tap: every chunk litellm yields is
kept as a chunk dict (``model_dump()`` minus its ``None`` fields), an HTTP error before the stream
becomes an ``error:`` interaction, a stream that breaks becomes its chunks plus a disconnect or an
in-band error object, and a stream the interpreter gave up on (stall timer) becomes its chunks
plus a stall. Tools are wrapped so each result (or raised error) is kept in call order. The turn's
decision trace and observed outcome become the cassette's ``trace`` and ``expect``.

Chunk-level capture is what litellm hands the interpreter, not the wire bytes: litellm rewrites
``model``/``created`` and drops empty and usage-only chunks (docs/providers.md). It is exactly
what the interpreter saw, which is what a replay must reproduce.

Secrets are kept out of the cassette by :mod:`.redact` (its names are re-exported here).
"""

from __future__ import annotations

from loopspec.language.errors import LoopspecError

import asyncio
import datetime as _dt
import inspect
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

from loopspec.wire.classify import classify_exception
from loopspec.engine.clock import Clock, RealClock
from loopspec.engine.results import TurnResult
from loopspec.engine.turn import Turn
from loopspec.engine.tools import ToolRegistry
from loopspec.providers.base import ModelRequest, ProviderError
from loopspec.providers.chunks import usage_from_dict
from loopspec.providers.litellm_provider import LiteLLMProvider, LiteLLMResponseStream, build_kwargs, import_litellm, priced
from loopspec.wire.deltas import Delta
from loopspec.language.model import Policy

from .cassette import Cassette, Expectations, RecordedStep, RequestOptions, ToolOutcome, ToolSpec, cassette_to_data
from .interactions import ErrorResponse, Interaction, StreamResponse
from .redact import (
    REDACTED,
    RedactionError,
    env_secrets,
    redact,
    redact_chunks,
    redact_text,
    safe_dump,
    secret_spans,
    write_redacted,
)

__all__ = [
    "REDACTED",
    "RecordingProvider",
    "RecordingTools",
    "Recording",
    "RedactionError",
    "record_turn",
    "redact",
    "redact_text",
    "redact_chunks",
    "secret_spans",
    "env_secrets",
    "safe_dump",
    "write_redacted",
]


# ------------------------------------------------------------------------------ recording


def _clean(v: Any) -> Any:
    """A chunk's ``model_dump()`` without its ``None`` fields (litellm fills every optional)."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def chunk_to_dict(chunk: Any) -> dict[str, Any]:
    """A litellm ``ModelResponseStream`` as the OpenAI chunk JSON it stands for.

    ``model`` is put back to the upstream's value when litellm kept it (it rewrites ``model`` to
    the requested name); ``created`` is dropped, because litellm rewrites it to local time.
    """
    data = chunk.model_dump() if hasattr(chunk, "model_dump") else dict(chunk)
    data = _clean(data)
    hidden = getattr(chunk, "_hidden_params", None) or {}
    if isinstance(hidden, dict) and hidden.get("provider_response_model"):
        data["model"] = str(hidden["provider_response_model"])
    data.pop("created", None)
    return data


_KEEP_HEADERS = re.compile(r"(?i)^(retry-after|retry-after-ms|x-ratelimit-[a-z-]+|x-should-retry)$")
_LITELLM_PREFIX = re.compile(r"^(?:\s*(?:litellm\.)?\w+(?:Error|Exception)\s*(?::|-)\s*)+")


def _plain_message(text: str) -> str:
    """The upstream's message without litellm's class-name prefixes and repeated original."""
    text = text.split(" Original exception:", 1)[0]
    return _LITELLM_PREFIX.sub("", text).strip() or text.strip()


def _error_interaction(exc: BaseException, event: Any) -> ErrorResponse:
    """An ``error:`` interaction that replays as the same classified event."""
    status = getattr(exc, "status_code", None) or event.attrs.get("status") or 500
    try:
        status = int(status)
    except (TypeError, ValueError):
        status = 500
    if not 400 <= status <= 599:
        status = 500
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and body.get("message"):
        err = dict(body)
    else:
        message = _plain_message(str(event.attrs.get("message") or exc))
        err = {"message": message, "code": event.attrs.get("code") or event.name}
    headers: dict[str, str] = {}
    raw_headers = getattr(exc, "litellm_response_headers", None) or {}
    try:
        items = list(raw_headers.items())
    except AttributeError:
        items = []
    for k, v in items:
        if _KEEP_HEADERS.match(str(k)):
            headers[str(k).lower()] = str(v)
    return ErrorResponse(status, {"error": err}, headers)


class _Tap:
    """Wraps litellm's stream wrapper: passes chunks on and keeps a dict of each."""

    def __init__(self, wrapper: Any, slot: "_Slot") -> None:
        self._wrapper = wrapper
        self._iter = wrapper.__aiter__()
        self._slot = slot

    def __aiter__(self) -> "_Tap":
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._iter.__anext__()
        except StopAsyncIteration:
            self._slot.finish()
            raise
        except asyncio.CancelledError:
            self._slot.gave_up()
            raise
        except Exception as exc:
            self._slot.broke(exc)
            raise
        self._slot.add(chunk)
        return chunk

    async def aclose(self) -> None:
        self._slot.gave_up()
        if hasattr(self._wrapper, "aclose"):
            await self._wrapper.aclose()


@dataclass
class _Slot:
    """One model call's recording, filled in as the stream is consumed. Times come from the
    turn's clock (unscaled seconds, also under a ScaledClock)."""

    now: Any
    chunks: list[dict[str, Any]] = field(default_factory=list)
    interaction: Interaction | None = None
    last: float = 0.0
    model: str = ""
    """The request's model: a usage chunk is recorded with its cost (see :func:`priced_chunk`)."""

    def __post_init__(self) -> None:
        self.last = self.now()

    def add(self, chunk: Any) -> None:
        self.chunks.append(priced_chunk(chunk_to_dict(chunk), self.model))
        self.last = self.now()

    def finish(self) -> None:
        if self.interaction is None:
            self.interaction = StreamResponse(chunks=tuple(self.chunks))

    def broke(self, exc: BaseException) -> None:
        if self.interaction is not None:
            return
        event = classify_exception(exc, phase="stream")
        if event.attrs.get("cause") == "disconnect":
            self.interaction = StreamResponse(chunks=tuple(self.chunks), disconnect_after=len(self.chunks))
        else:
            error = {"message": _plain_message(str(event.attrs.get("message") or exc))}
            self.interaction = StreamResponse(chunks=(*self.chunks, {"error": error}))

    def gave_up(self) -> None:
        """The interpreter closed the stream before it ended (its stall timer, a cancel): what
        the upstream said is the chunks so far, then silence for as long as we waited."""
        if self.interaction is None:
            waited = self.now() - self.last
            self.interaction = StreamResponse(
                chunks=tuple(self.chunks), stall_after=len(self.chunks), stall_seconds=recorded_pause(waited)
            )


def priced_chunk(chunk: dict[str, Any], model: str) -> dict[str, Any]:
    """A chunk whose usage the provider did not price gets litellm's price as ``usage.cost`` (as
    OpenRouter reports it), so a replay charges what the live run was charged and never needs
    litellm's cost map; a model missing from the map is recorded without a cost (unknown)."""
    usage = chunk.get("usage")
    if not isinstance(usage, dict) or "cost" in usage:
        return chunk
    got = priced(Delta(usage=usage_from_dict(usage)), model).usage
    if got is None or got.cost is None:
        return chunk
    return {**chunk, "usage": {**usage, "cost": got.cost}}


def recorded_pause(waited: float) -> float:
    """The silence to record when the interpreter gave up after ``waited`` seconds.

    We only know the upstream said nothing for at least that long; recording twice as much keeps
    the replay a stall under the same policy even when replay over HTTP compresses time and a
    loaded machine eats part of the pause before the client asks for the next chunk."""
    return float(math.ceil(2 * waited) + 1)


class RecordingProvider(LiteLLMProvider):
    """The live litellm provider, keeping what each call got back as cassette interactions."""

    def __init__(self, *, clock: Clock | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.clock: Clock = clock or RealClock()
        self.slots: list[_Slot] = []

    @property
    def interactions(self) -> list[Interaction]:
        out = []
        for slot in self.slots:
            slot.finish()  # a stream still open at the end was consumed up to here
            assert slot.interaction is not None
            out.append(slot.interaction)
        return out

    async def open(self, request: ModelRequest) -> LiteLLMResponseStream:
        litellm = import_litellm()
        slot = _Slot(self.clock.now, model=request.model)
        self.slots.append(slot)
        kwargs = build_kwargs(request, self.default_timeout)
        try:
            wrapper = await litellm.acompletion(**kwargs)
        except asyncio.CancelledError:
            # The interpreter's request timer: no headers for as long as we waited.
            waited = slot.now() - slot.last
            slot.interaction = StreamResponse(chunks=(), stall_after=0, stall_seconds=recorded_pause(waited))
            raise
        except Exception as e:
            event = classify_exception(e, phase="call")
            slot.interaction = _error_interaction(e, event)
            raise ProviderError(event) from e
        slot.last = slot.now()
        return LiteLLMResponseStream(_Tap(wrapper, slot), model=request.model)


@dataclass
class RecordingTools:
    """A copy of a tool registry whose tools also keep each result (or raised error), in call order."""

    inner: ToolRegistry
    outcomes: list[ToolOutcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.registry = ToolRegistry()
        for tool in self.inner.tools.values():
            self.registry.tools[tool.name] = replace(tool, fn=self._wrap(tool.name, tool.fn))

    def _wrap(self, name: str, fn: Any) -> Any:
        from loopspec.engine.tools import result_text

        async def call(**arguments: Any) -> Any:
            try:
                value = fn(**arguments)
                if inspect.isawaitable(value):
                    value = await value
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.outcomes.append(ToolOutcome(name, error=str(exc) or type(exc).__name__))
                raise
            self.outcomes.append(ToolOutcome(name, result=result_text(value)))
            return value

        return call

    def specs(self) -> list[ToolSpec]:
        return [ToolSpec(t.name, dict(t.parameters), t.description, t.needs_approval) for t in self.inner.tools.values()]


@dataclass
class Recording:
    cassette: Cassette
    result: TurnResult
    secrets: tuple[str, ...] = ()

    def write(self, path: str) -> str:
        """Write the cassette, redacted; returns the text written."""
        return write_redacted(self.cassette, path, self.secrets)

    def render(self) -> str:
        """The cassette's text, redacted, without writing it (the CLI checks it first)."""
        return safe_dump(cassette_to_data(self.cassette), self.secrets)


async def record_turn(
    policy: Policy,
    messages: Sequence[dict[str, Any]],
    *,
    model: str,
    tools: ToolRegistry | None = None,
    api_base: str | None = None,
    api_key: str | None = None,
    name: str = "recorded",
    machine: str = "",
    secrets: Iterable[str] = (),
    **turn_options: Any,
) -> Recording:
    """Run one live turn and capture everything the outside world said as a cassette.

    The cassette holds the opening messages, the tool schemas, one interaction per model call,
    each tool result, the decision trace, and the observed outcome as ``expect``. It is not yet
    redacted: :meth:`Recording.write` redacts (``secrets`` plus ``api_key`` plus the credential
    environment variables, on top of the patterns).
    """
    clock: Clock = turn_options.pop("clock", None) or RealClock()
    provider = RecordingProvider(clock=clock)
    rtools = RecordingTools(tools or ToolRegistry())
    turn = Turn(policy, provider, model=model, tools=rtools.registry, api_base=api_base, api_key=api_key, clock=clock,
                **turn_options)
    result = await turn.run(messages)
    source: dict[str, Any] = {
        "recorded_by": "loopspec record",
        "recorded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model,
    }
    if machine:
        source["machine"] = machine
    if api_base:
        source["api_base"] = api_base
    try:
        source["litellm"] = _litellm_version()
    except Exception:  # pragma: no cover
        pass
    cassette = Cassette(
        name=name,
        file="",
        messages=tuple(dict(m) for m in messages),
        interactions=tuple(provider.interactions),
        tools=tuple(rtools.specs()),
        tool_results=tuple(rtools.outcomes),
        expect=Expectations(
            outcome=result.outcome,
            model_calls=result.usage.model_calls,
            tool_batches=result.usage.tool_batches,
            all_played=True,
            properties=("history_valid",),
        ),
        trace=tuple(RecordedStep(s.state, s.event, s.target, s.transition) for s in result.trace),
        model=model,
        doc=f"Recorded live with loopspec record under {machine or 'a policy'}: outcome {result.outcome}.",
        source=source,
        request=RequestOptions(
            tool_choice=turn_options.get("tool_choice"),
            reasoning_effort=turn_options.get("reasoning_effort"),
            max_tokens=turn_options.get("max_tokens"),
            extra=tuple((turn_options.get("extra") or {}).items()),
        ),
    )
    # Literal secrets shorter than 8 characters would redact ordinary words; patterns cover keys.
    all_secrets = tuple(s for s in (*secrets, api_key or "", *env_secrets()) if s and len(s) >= 8)
    return Recording(cassette, result, all_secrets)


def _litellm_version() -> str:
    from importlib.metadata import version

    return version("litellm")
