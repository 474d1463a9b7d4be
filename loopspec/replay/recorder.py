"""Record one live turn into a cassette, and keep secrets out of it.

:class:`RecordingProvider` is the live litellm provider with a tap: every chunk litellm yields is
kept as a chunk dict (``model_dump()`` minus its ``None`` fields), an HTTP error before the stream
becomes an ``error:`` interaction, a stream that breaks becomes its chunks plus a disconnect or an
in-band error object, and a stream the interpreter gave up on (stall timer) becomes its chunks
plus a stall. Tools are wrapped so each result (or raised error) is kept in call order. The turn's
decision trace and observed outcome become the cassette's ``trace`` and ``expect``.

Chunk-level capture is what litellm hands the interpreter, not the wire bytes: litellm rewrites
``model``/``created`` and drops empty and usage-only chunks (docs/providers.md). It is exactly
what the interpreter saw, which is what a replay must reproduce.

Redaction (:func:`redact`, :func:`redact_text`, :func:`redact_chunks`) runs over the structured
cassette and again over the written text, and the written file is re-read and checked before it
is kept: API keys, ``Authorization``/``x-api-key`` values, ``Bearer`` tokens, ``sk-``/``sk-ant-``
style keys, ``api_key=`` values and any literal secret the caller names (the ``--api-key`` value,
``*_API_KEY`` environment values) never reach the file, even when a streamed secret is split
across chunks.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import inspect
import math
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

import yaml

from loopspec.wire.classify import classify_exception
from loopspec.engine.clock import Clock, RealClock
from loopspec.engine.results import TurnResult
from loopspec.engine.turn import Turn
from loopspec.engine.tools import ToolRegistry
from loopspec.providers.base import ModelRequest, ProviderError
from loopspec.providers.litellm_provider import LiteLLMProvider, LiteLLMResponseStream, build_kwargs, import_litellm
from loopspec.language.model import Policy

from .cassette import Cassette, Expectations, RecordedStep, ToolOutcome, ToolSpec, cassette_to_data, _Dumper
from .interactions import ErrorResponse, Interaction, StreamResponse

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

REDACTED = "<redacted>"
"""What a secret becomes. Plain text that is valid inside a YAML plain scalar, a quoted scalar and a
JSON string, and that none of the patterns below match again."""

# Key shapes that are secrets wherever they appear.
_KEY_PATTERNS = [
    r"\bsk-(?:ant-|proj-|live-|test-|or-v1-)?[A-Za-z0-9_\-]{12,}",  # OpenAI, Anthropic, OpenRouter, ...
    r"\bgsk_[A-Za-z0-9]{20,}",  # Groq
    r"\bxai-[A-Za-z0-9]{20,}",  # xAI
    r"\bAIza[0-9A-Za-z_\-]{30,}",  # Google
    r"\bhf_[A-Za-z0-9]{20,}",  # Hugging Face
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",  # GitHub
    r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
]
# ``Bearer <token>`` / ``Basic <creds>``: the token goes, the scheme stays.
_AUTH_SCHEME = r"\b(?:Bearer|Basic)\s+(?!<redacted>)([A-Za-z0-9._~+/=\-]{6,})"
# ``name = value`` / ``name: value`` / ``"name": "value"`` for credential-named fields.
_CRED_NAMES = (
    r"(?:x[-_])?api[-_]?key|authorization|proxy[-_]authorization|access[-_]?token|refresh[-_]?token|"
    r"auth[-_]?token|id[-_]?token|client[-_]?secret|secret[-_]?key|password|passwd"
)
_KEY_VALUE = (
    r"(?i)(?<![A-Za-z0-9])(?:" + _CRED_NAMES + r")[\"']?[ \t]*[:=][ \t]*[\"']?"
    r"(?:(?:Bearer|Basic)[ \t]+)?(?!(?:Bearer|Basic)\b)([^\s\"'&,;(){}\[\]<>]+)"
)
# Credentials inside a URL: ``https://user:pass@host``.
_URL_USERINFO = r"(?<=://)([^/\s:@]+:[^/\s@]+)@"

_SECRET_RES = [re.compile(p) for p in _KEY_PATTERNS]
_GROUP_RES = [re.compile(_AUTH_SCHEME), re.compile(_KEY_VALUE), re.compile(_URL_USERINFO)]
_SENSITIVE_KEY = re.compile(r"(?i)^(?:" + _CRED_NAMES + r")$")


class RedactionError(Exception):
    """The written text still carried a secret after redaction; nothing was written."""


def secret_spans(text: str, secrets: Iterable[str] = ()) -> list[tuple[int, int]]:
    """The character ranges of ``text`` that are secrets, merged and sorted."""
    spans: list[tuple[int, int]] = []
    for rx in _SECRET_RES:
        spans += [(m.start(), m.end()) for m in rx.finditer(text)]
    for rx in _GROUP_RES:
        spans += [(m.start(1), m.end(1)) for m in rx.finditer(text) if m.group(1)]
    for s in secrets:
        if s:
            start = text.find(s)
            while start != -1:
                spans.append((start, start + len(s)))
                start = text.find(s, start + 1)
    spans.sort()
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def redact_text(s: str, secrets: Iterable[str] = ()) -> str:
    """``s`` with every secret replaced by :data:`REDACTED`."""
    secrets = tuple(x for x in secrets if x)
    spans = secret_spans(s, secrets)
    if not spans:
        return s
    out, pos = [], 0
    for a, b in spans:
        out += [s[pos:a], REDACTED]
        pos = b
    out.append(s[pos:])
    return "".join(out)


def redact(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like value with every secret string redacted.

    Strings are passed through :func:`redact_text`; the value of a credential-named key
    (``api_key``, ``Authorization``, ``x-api-key``, ``password``, ...) is replaced outright.
    """
    secrets = tuple(x for x in secrets if x)
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            if isinstance(k, str) and _SENSITIVE_KEY.match(k) and isinstance(v, (str, int, float)) and v != "":
                out[k] = REDACTED
            else:
                out[redact_text(k, secrets) if isinstance(k, str) else k] = redact(v, secrets)
        return out
    if isinstance(obj, (list, tuple)):
        return [redact(x, secrets) for x in obj]
    return obj


# ------------------------------------------------------------------------------ stream channels


def _channels(chunks: Sequence[dict[str, Any]]) -> dict[tuple[Any, ...], list[tuple[dict[str, Any], str]]]:
    """Per text channel (choice content, reasoning, each tool call's arguments): the dicts that
    hold a piece of it and the key the piece is under, in stream order."""
    chans: dict[tuple[Any, ...], list[tuple[dict[str, Any], str]]] = {}
    for chunk in chunks:
        for ch in chunk.get("choices") or []:
            if not isinstance(ch, dict):
                continue
            idx = ch.get("index", 0)
            delta = ch.get("delta")
            if not isinstance(delta, dict):
                continue
            for key in ("content", "reasoning_content", "reasoning", "refusal"):
                if isinstance(delta.get(key), str):
                    chans.setdefault((idx, key), []).append((delta, key))
            for tc in delta.get("tool_calls") or []:
                fn = tc.get("function") if isinstance(tc, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    chans.setdefault((idx, "tool", tc.get("index", 0)), []).append((fn, "arguments"))
    return chans


def redact_chunks(chunks: Sequence[dict[str, Any]], secrets: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Redact a recorded stream, including secrets that arrived split across chunks.

    Each text channel is joined, secrets are found in the joined text, and the pieces are
    rewritten in place: the piece where a secret starts gets :data:`REDACTED`, the secret's other
    characters are removed from every piece they were in. Chunk boundaries (and so stall and
    disconnect positions) are kept; the whole chunks then get :func:`redact` for other fields.
    """
    secrets = tuple(x for x in secrets if x)
    copied = [_deepcopy(c) for c in chunks]
    for pieces in _channels(copied).values():
        texts = [holder[key] for holder, key in pieces]
        joined = "".join(texts)
        spans = secret_spans(joined, secrets)
        if not spans:
            continue
        offset = 0
        for (holder, key), text in zip(pieces, texts):
            start, end = offset, offset + len(text)
            offset = end
            out = []
            for i, char in enumerate(text, start):
                span = next((sp for sp in spans if sp[0] <= i < sp[1]), None)
                if span is None:
                    out.append(char)
                elif i == span[0]:
                    out.append(REDACTED)
            holder[key] = "".join(out)
    return [redact(c, secrets) for c in copied]


def _deepcopy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _deepcopy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_deepcopy(x) for x in v]
    return v


def env_secrets(environ: dict[str, str] | None = None) -> list[str]:
    """Values of credential-looking environment variables (``*_API_KEY``, ``*_TOKEN``, ...)."""
    env = os.environ if environ is None else environ
    names = re.compile(r"(?i)(API_?KEY|TOKEN|SECRET|PASSWORD)$")
    return sorted({v for k, v in env.items() if names.search(k) and v and len(v) >= 8})


def _strings(obj: Any) -> Iterable[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _strings(x)


def _leaks(data: Any, text: str, secrets: Sequence[str]) -> list[str]:
    """Secrets still present in the data (strings, and streamed channels joined) or in the text."""
    found = []
    for s in _strings(data):
        if secret_spans(s, secrets):
            found.append(s)
    for it in data.get("interactions") or [] if isinstance(data, dict) else []:
        if isinstance(it, dict) and isinstance(it.get("chunks"), list):
            for pieces in _channels(it["chunks"]).values():
                joined = "".join(h[k] for h, k in pieces)
                if secret_spans(joined, secrets):
                    found.append(joined)
    for s in secrets:
        if s and s in text:
            found.append(s)
    return found


def safe_dump(data: dict[str, Any], secrets: Iterable[str] = ()) -> str:
    """Cassette data as YAML text with every secret gone, checked by reading the text back.

    The structured data is redacted (streams channel by channel), dumped, and the text redacted
    once more as a net for anything a structure walk cannot see. The text is then parsed again and
    every string (and every stream channel, joined) checked; a leak raises :class:`RedactionError`.
    """
    secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
    data = dict(data)
    for i, it in enumerate(list(data.get("interactions") or [])):
        if isinstance(it, dict) and isinstance(it.get("chunks"), list):
            it = dict(it, chunks=redact_chunks(it["chunks"], secrets))
            data["interactions"][i] = it
    data = redact(data, secrets)
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    net = redact_text(text, secrets)
    try:
        reread = yaml.safe_load(net)
    except yaml.YAMLError as exc:  # pragma: no cover - REDACTED is chosen to keep YAML valid
        raise RedactionError(f"redacting the written text broke its YAML: {exc}") from exc
    leaks = _leaks(reread, net, secrets)
    if leaks:
        raise RedactionError(f"{len(leaks)} strings still carry a secret after redaction")
    return net


def write_redacted(c: Cassette, path: str, secrets: Iterable[str] = ()) -> str:
    """Write a cassette with secrets removed; returns the text written."""
    text = safe_dump(cassette_to_data(c), secrets)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return text


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

    def __post_init__(self) -> None:
        self.last = self.now()

    def add(self, chunk: Any) -> None:
        self.chunks.append(chunk_to_dict(chunk))
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
        slot = _Slot(self.clock.now)
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
        return LiteLLMResponseStream(_Tap(wrapper, slot), None, exhausted=False)


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
        from loopspec.engine.tools import _result_text

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
            self.outcomes.append(ToolOutcome(name, result=_result_text(value)))
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
    )
    # Literal secrets shorter than 8 characters would redact ordinary words; patterns cover keys.
    all_secrets = tuple(s for s in (*secrets, api_key or "", *env_secrets()) if s and len(s) >= 8)
    return Recording(cassette, result, all_secrets)


def _litellm_version() -> str:
    from importlib.metadata import version

    return version("litellm")
