"""Keep secrets out of a cassette.

What a secret is lives in :mod:`loopspec.wire.redaction` (re-exported here); this module applies
it to cassettes. Redaction (:func:`redact`, :func:`redact_text`, :func:`redact_chunks`) runs over the structured
cassette and again over the written text, and the written file is re-read and checked before it
is kept: API keys, ``Authorization``/``x-api-key`` values, ``Bearer`` tokens, ``sk-``/``sk-ant-``
style keys, ``api_key=`` values and any literal secret the caller names (the ``--api-key`` value,
``*_API_KEY`` environment values) never reach the file, even when a streamed secret is split
across chunks.
"""

from __future__ import annotations

from loopspec.language.errors import LoopspecError

from typing import Any, Iterable, Sequence

import yaml

from loopspec.wire.redaction import REDACTED, env_secrets, redact, redact_text, secret_spans

from .cassette import Cassette
from .cassette_model import plain
from .cassette_writer import CassetteDumper, cassette_to_data

__all__ = [
    "REDACTED",
    "RedactionError",
    "redact",
    "redact_text",
    "redact_chunks",
    "secret_spans",
    "env_secrets",
    "safe_dump",
    "write_redacted",
]


class RedactionError(LoopspecError):
    """The written text still carried a secret after redaction; nothing was written."""


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
    copied = [plain(c) for c in chunks]
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
    text = yaml.dump(data, Dumper=CassetteDumper, sort_keys=False, allow_unicode=True, width=100)
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
