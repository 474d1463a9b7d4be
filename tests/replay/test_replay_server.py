"""The loopback replay server against the real litellm client stack (no mocks).

Every stream and error body here is a real recorded provider response (see
fixtures/streams/SOURCES.md); the expectations come from docs/providers.md, which describes
litellm 1.106.2 against a loopback server.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from _paths import ROOT
from typing import Any, Awaitable, TypeVar

import pytest

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before importing litellm: no network fetch

import litellm  # noqa: E402
# Not re-exported from the top-level package in 1.106.2 (`from litellm import ...` fails).
from litellm.exceptions import MidStreamFallbackError  # noqa: E402

from loopspec.replay import (  # noqa: E402
    DIVERGED_HEADER,
    CompletionResponse,
    Disconnect,
    ErrorResponse,
    LoopbackServer,
    Stall,
    StreamResponse,
    is_data_event,
    sse_events,
    stream_chunks,
    stream_plan,
)

litellm.suppress_debug_info = True

REPO = ROOT
T = TypeVar("T")


def recorded(name: str) -> Path:
    """A recorded body from fixtures/streams."""
    path = REPO / "fixtures" / "streams" / name
    if not path.is_file():
        raise FileNotFoundError(name)
    return path


def sse_text(name: str) -> str:
    return recorded(name).read_bytes().decode("utf-8")


def recorded_chunks(name: str) -> tuple[dict[str, Any], ...]:
    """The chunk dicts of a recorded OpenAI stream, parsed naively and independently of the code
    under test."""
    out = []
    for line in sse_text(name).splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[len("data: ") :]))
    return tuple(out)


def recorded_content(name: str) -> str:
    return "".join(
        (c.get("delta") or {}).get("content") or ""
        for chunk in recorded_chunks(name)
        for c in chunk.get("choices") or []
    )


def run(loop: asyncio.AbstractEventLoop, coro: Awaitable[T]) -> T:
    return loop.run_until_complete(coro)  # type: ignore[arg-type]


MESSAGES = [{"role": "user", "content": "What is the capital of Mexico?"}]


async def stream_call(server: LoopbackServer, timeout: float = 5.0, **kw: Any) -> list[Any]:
    """Run one streamed litellm call; returns the chunks. Exceptions propagate, with the chunks
    seen so far attached as ``exc.seen_chunks``."""
    resp = await litellm.acompletion(
        model="openai/x", api_base=server.api_base, api_key="sk-test", messages=MESSAGES,
        stream=True, max_retries=0, timeout=timeout, **kw,
    )
    seen: list[Any] = []
    try:
        async for chunk in resp:
            seen.append(chunk)
    except Exception as e:
        e.seen_chunks = seen  # type: ignore[attr-defined]
        raise
    return seen


def text_of(chunks: list[Any]) -> str:
    return "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)


# ---------------------------------------------------------------------------- pure helpers


def test_sse_events_are_byte_exact_and_count_data_events() -> None:
    raw = sse_text("openrouter_stream_length_then_error_chunk.sse")
    events = sse_events(StreamResponse(sse=raw))
    assert b"".join(events) == raw.encode()
    assert not is_data_event(events[0])  # ": OPENROUTER PROCESSING" comment
    # chunk mode: one event per chunk, then [DONE]
    chunks = recorded_chunks("openai_stream_text.sse")
    rendered = sse_events(StreamResponse(chunks=chunks))
    assert len(rendered) == len(chunks) + 1 and rendered[-1] == b"data: [DONE]\n\n"
    assert [json.loads(e[6:]) for e in rendered[:-1]] == list(chunks)
    assert stream_chunks(StreamResponse(sse=sse_text("openai_stream_text.sse"))) == list(chunks)
    plan = stream_plan(StreamResponse(chunks=chunks, stall_after=2, stall_seconds=1.0, disconnect_after=3))
    assert plan[2] == Stall(1.0) and plan[4] == Disconnect() and len(plan) == 5
    with pytest.raises(ValueError):
        StreamResponse(chunks=chunks, sse=raw)
    with pytest.raises(ValueError):
        StreamResponse(chunks=chunks, disconnect_after=len(chunks) + 2)


# ---------------------------------------------------------------------------- litellm, streaming


def test_text_stream_content_equals_recording(loop: asyncio.AbstractEventLoop) -> None:
    with LoopbackServer([StreamResponse(sse=sse_text("openai_stream_text.sse"))]) as server:
        chunks = run(loop, stream_call(server))
    assert text_of(chunks) == recorded_content("openai_stream_text.sse") == "The capital of Mexico is Mexico City."
    assert server.unconsumed == 0 and server.diverged_at is None
    (req,) = server.requests
    assert req.index == 0 and req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer ***"
    assert req.body["model"] == "x" and req.body["stream"] is True and req.body["messages"] == MESSAGES


def test_tool_call_stream_yields_the_tool_call(loop: asyncio.AbstractEventLoop) -> None:
    tools = [{"type": "function", "function": {
        "name": "get_capital", "description": "Capital of a country",
        "parameters": {"type": "object", "properties": {"country": {"type": "string"}}, "required": ["country"]},
    }}]
    chunks_in = recorded_chunks("openai_stream_tool_call_single.sse")
    with LoopbackServer([StreamResponse(chunks=chunks_in)]) as server:
        chunks = run(loop, stream_call(server, tools=tools))
    built = litellm.stream_chunk_builder(chunks, messages=MESSAGES)
    (call,) = built.choices[0].message.tool_calls
    assert call.id == "call_ZR5UUuTt3pf61kjwAJIYdVMj"
    assert call.function.name == "get_capital"
    assert json.loads(call.function.arguments) == {"country": "UK"}
    assert built.choices[0].finish_reason == "tool_calls"
    assert server.requests[0].body["tools"] == tools


def test_429_raises_rate_limit_with_one_request(loop: asyncio.AbstractEventLoop) -> None:
    body = json.loads(recorded("openai_error_429_rate_limit_requests.json").read_text())
    with LoopbackServer([ErrorResponse(429, body, {"retry-after": "20"})]) as server:
        with pytest.raises(litellm.RateLimitError) as ei:
            run(loop, stream_call(server))
    assert ei.value.status_code == 429
    assert "Rate limit reached" in str(ei.value)
    assert len(server.requests) == 1 and server.unconsumed == 0


def test_stall_past_timeout_is_midstream_failure_and_exit_is_fast(loop: asyncio.AbstractEventLoop) -> None:
    stall = 30.0  # far beyond anything the test waits: ending before it means the stall was cut short
    stream = StreamResponse(sse=sse_text("openai_stream_text.sse"), stall_after=3, stall_seconds=stall)
    server = LoopbackServer([stream]).start()
    try:
        t0 = time.monotonic()
        with pytest.raises(MidStreamFallbackError) as ei:  # raising at all means before the stall ended
            run(loop, stream_call(server, timeout=0.5))
        assert time.monotonic() - t0 >= 0.5, "not before the client's own timeout"
        assert len(ei.value.seen_chunks) >= 2  # type: ignore[attr-defined]
        assert ei.value.generated_content == "The capital"
    finally:
        t0 = time.monotonic()
        server.close()  # the handler is still asleep in its stall
        assert time.monotonic() - t0 < stall / 3, "close cancelled the stalled handler instead of waiting it out"


def test_disconnect_after_3_is_midstream_failure(loop: asyncio.AbstractEventLoop) -> None:
    stream = StreamResponse(chunks=recorded_chunks("openai_stream_text.sse"), disconnect_after=3)
    with LoopbackServer([stream]) as server:
        with pytest.raises(MidStreamFallbackError) as ei:
            run(loop, stream_call(server))
    assert ei.value.generated_content == "The capital"
    assert text_of(ei.value.seen_chunks) == "The capital"  # type: ignore[attr-defined]


def test_call_beyond_cassette_is_409_diverged(loop: asyncio.AbstractEventLoop) -> None:
    async def two_calls(server: LoopbackServer) -> BaseException:
        await stream_call(server)
        with pytest.raises(litellm.APIError) as ei:  # litellm has no 409 class; it is an APIError
            await stream_call(server)
        return ei.value

    async def scenario() -> tuple[LoopbackServer, BaseException]:
        async with LoopbackServer([StreamResponse(sse=sse_text("openai_stream_text.sse"))]) as server:
            return server, await two_calls(server)

    server, err = run(loop, scenario())
    assert getattr(err, "status_code", None) == 409
    # litellm drops the body's error "type" but keeps the response headers
    assert err.litellm_response_headers[DIVERGED_HEADER] == "1"  # type: ignore[attr-defined]
    assert "cassette has 1 recorded model responses; the policy asked for call 2" in str(err)
    assert server.diverged_at == 1 and server.unconsumed == 0 and len(server.requests) == 2


def test_nonstreaming_litellm_gets_folded_stream(loop: asyncio.AbstractEventLoop) -> None:
    with LoopbackServer([StreamResponse(sse=sse_text("openai_stream_text.sse"))]) as server:
        resp = run(loop, litellm.acompletion(
            model="openai/x", api_base=server.api_base, api_key="sk-test", messages=MESSAGES,
            max_retries=0, timeout=5,
        ))
    assert resp.choices[0].message.content == recorded_content("openai_stream_text.sse")
    assert resp.usage.total_tokens == 22


# ---------------------------------------------------------------------------- raw HTTP


def _dechunk(payload: bytes) -> tuple[list[bytes], bytes]:
    """Split a chunked-encoded body into its chunks; returns (chunks, bytes after the 0-chunk)."""
    chunks = []
    while True:
        line, _, payload = payload.partition(b"\r\n")
        size = int(line, 16)
        if size == 0:
            return chunks, payload
        chunks.append(payload[:size])
        assert payload[size : size + 2] == b"\r\n"
        payload = payload[size + 2 :]


def test_raw_sse_is_served_byte_for_byte() -> None:
    name = "openrouter_stream_length_then_error_chunk.sse"
    raw = recorded(name).read_bytes()
    stream = StreamResponse(sse=raw.decode("utf-8"))
    with LoopbackServer([stream]) as server:
        body = json.dumps({"model": "x", "messages": MESSAGES, "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            )
            data = b""
            while part := s.recv(65536):
                data += part
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    chunks, rest = _dechunk(payload)
    assert rest == b"\r\n"  # properly terminated
    assert b"".join(chunks) == raw
    assert chunks == sse_events(stream)  # one HTTP chunk per SSE event, as in-process replay sees them


def test_sync_urllib_nonstreaming_and_404() -> None:
    completion = json.loads(recorded("openai_nonstream_tool_call.json").read_text())
    folded_from = StreamResponse(sse=sse_text("openai_stream_tool_call_single.sse"))
    with LoopbackServer([CompletionResponse(completion), folded_from]) as server:
        def post(body: dict[str, Any]) -> dict[str, Any]:
            req = urllib.request.Request(
                server.api_base + "/chat/completions", data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", "Authorization": "Bearer sk-secret"},
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                assert r.status == 200 and r.headers["Content-Type"] == "application/json"
                return json.loads(r.read())

        assert post({"model": "x", "messages": MESSAGES}) == completion
        folded = post({"model": "x", "messages": MESSAGES, "stream": False})
        assert server.unconsumed == 0
        with pytest.raises(urllib.error.HTTPError) as ei:
            urllib.request.urlopen(server.api_base + "/models", timeout=5)
        assert ei.value.code == 404
        ei.value.close()
        # keep-alive: two requests on one http.client connection, the second past the cassette
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        for _ in range(2):
            conn.request("POST", "/v1/chat/completions", body=b"{}", headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            assert r.status == 409 and json.loads(r.read())["error"]["type"] == "loopspec_diverged"
        conn.close()
    (call,) = folded["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "get_capital", "arguments": '{"country":"UK"}'}
    assert folded["choices"][0]["finish_reason"] == "tool_calls" and folded["usage"]["total_tokens"] == 68
    assert server.requests[0].headers["authorization"] == "Bearer ***"
    assert [r.path for r in server.requests] == ["/v1/chat/completions"] * 2 + ["/v1/models"] + ["/v1/chat/completions"] * 2
    assert server.diverged_at == 2


# ---------------------------------------------------------------------------- non-streaming faults


def _raw_post(port: int, body: bytes, extra_headers: bytes = b"", *, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + extra_headers + b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    return s


def _read_all(s: socket.socket) -> bytes:
    data = b""
    while part := s.recv(65536):
        data += part
    return data


NONSTREAM = json.dumps({"model": "x", "messages": MESSAGES, "stream": False}).encode()


def test_nonstreaming_request_with_a_planned_disconnect_gets_no_byte() -> None:
    """The plan drops the connection after 3 events; folded, that is a close before any byte of
    the answer, and the recorded response counts as played."""
    disconnect = StreamResponse(chunks=recorded_chunks("openai_stream_text.sse"), disconnect_after=3)
    with LoopbackServer([disconnect, StreamResponse(sse=sse_text("openai_stream_text.sse"))]) as server:
        with _raw_post(server.port, NONSTREAM, b"Connection: keep-alive\r\n") as s:
            assert _read_all(s) == b"", "the connection closed with nothing sent"
        with _raw_post(server.port, NONSTREAM, b"Connection: close\r\n") as s:
            data = _read_all(s)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(data.partition(b"\r\n\r\n")[2])["choices"][0]["message"]["content"] == recorded_content("openai_stream_text.sse")
    assert server.consumed == 2 and len(server.requests) == 2


def test_nonstreaming_disconnect_is_a_connection_error_in_litellm(loop: asyncio.AbstractEventLoop) -> None:
    disconnect = StreamResponse(sse=sse_text("openai_stream_text.sse"), disconnect_after=3)
    with LoopbackServer([disconnect]) as server:
        with pytest.raises(litellm.InternalServerError) as ei:
            run(loop, litellm.acompletion(model="openai/x", api_base=server.api_base, api_key="sk-test",
                                          messages=MESSAGES, max_retries=0, timeout=5))
    assert "Connection error" in str(ei.value)
    assert len(server.requests) == 1


def test_nonstreaming_request_with_a_planned_stall_waits_before_the_status_line() -> None:
    """A stall anywhere in the stream delays the whole folded answer: no byte (not even headers)
    arrives before it ends, then the complete body does."""
    stall = StreamResponse(sse=sse_text("openai_stream_text.sse"), stall_after=3, stall_seconds=1.0)
    with LoopbackServer([stall]) as server:
        with _raw_post(server.port, NONSTREAM, b"Connection: close\r\n") as s:
            s.settimeout(0.3)  # the server cannot answer before its 1.0 s stall ends
            with pytest.raises(socket.timeout):
                s.recv(1)
            s.settimeout(5)
            data = _read_all(s)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(data.partition(b"\r\n\r\n")[2])["choices"][0]["message"]["content"] == recorded_content("openai_stream_text.sse")


def test_nonstreaming_stall_past_the_timeout_is_a_litellm_timeout(loop: asyncio.AbstractEventLoop) -> None:
    stall = StreamResponse(sse=sse_text("openai_stream_text.sse"), stall_after=1, stall_seconds=1.5)
    with LoopbackServer([stall]) as server:
        with pytest.raises(litellm.Timeout):
            run(loop, litellm.acompletion(model="openai/x", api_base=server.api_base, api_key="sk-test",
                                          messages=MESSAGES, max_retries=0, timeout=0.3))


# ---------------------------------------------------------------------------- request bodies


def test_chunked_request_body_with_extensions_and_trailers_is_read_whole() -> None:
    body = json.dumps({"model": "x", "messages": MESSAGES, "stream": False, "temperature": 0}).encode()
    pieces = [body[:7], body[7:40], body[40:]]
    chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nX-Trailer: yes\r\n\r\n"
    with LoopbackServer([StreamResponse(sse=sse_text("openai_stream_text.sse"))]) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
            )
            assert s.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
            s.sendall(chunked)
            data = _read_all(s)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    (req,) = server.requests
    assert req.body == json.loads(body)
    assert json.loads(data.partition(b"\r\n\r\n")[2])["choices"][0]["message"]["content"] == recorded_content("openai_stream_text.sse")


def test_chunked_request_body_then_a_second_request_on_the_same_connection() -> None:
    """Keep-alive after a chunked body: the terminating chunk and trailers are consumed exactly."""
    first = json.dumps({"model": "x", "messages": MESSAGES, "stream": False, "n": 1}).encode()
    second = json.dumps({"model": "x", "messages": MESSAGES, "stream": False, "n": 2}).encode()
    texts = [StreamResponse(sse=sse_text("openai_stream_text.sse"))] * 2
    with LoopbackServer(texts) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("POST", "/v1/chat/completions", body=iter([first[:10], first[10:]]),
                     headers={"Content-Type": "application/json"}, encode_chunked=True)
        r1 = conn.getresponse()
        assert r1.status == 200 and json.loads(r1.read())["object"] == "chat.completion"
        conn.request("POST", "/v1/chat/completions", body=second, headers={"Content-Type": "application/json"})
        r2 = conn.getresponse()
        assert r2.status == 200 and json.loads(r2.read())["object"] == "chat.completion"
        conn.close()
    assert [r.body["n"] for r in server.requests] == [1, 2]


def test_nonstreaming_request_for_a_stream_with_an_error_event_is_http_500() -> None:
    """Folding Groq's recorded ``event: error`` frame: the answer is the error object, as HTTP 500."""
    with LoopbackServer([StreamResponse(sse=sse_text("groq_stream_reasoning_then_error_event.sse"))]) as server:
        with _raw_post(server.port, NONSTREAM, b"Connection: close\r\n") as s:
            data = _read_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ")
    error = json.loads(body)["error"]
    assert error["code"] == "tool_use_failed" and error["message"].startswith("Tool call validation failed")
