"""The loopback replay server's promises that the broader server tests leave loose (docs/quality.md,
`replay/server.py`): each test here was written against a planted mutation that the rest of the
suite let through, and fails on it.

Everything goes over real loopback sockets to a real :class:`LoopbackServer`; raw requests are
written by hand where the point is what the server does with the bytes.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
import threading
import time
from typing import Any

import pytest

from loopspec.replay.interactions import CompletionResponse, ErrorResponse, Pause, StreamResponse, WhenNoTools
from loopspec.replay.server import DIVERGED_HEADER, LoopbackServer
from loopspec.replay.synth import reply_chunks

PATH = "/v1/chat/completions"
THREAD = "loopspec-replay-server"
DONE: Any = {"choices": []}
CHUNKS = reply_chunks("one two three four", piece=4)  # role, 5 pieces, finish: 7 data events


def exchange(port: int, raw: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``raw`` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        return read_to_end(s)


def read_to_end(s: socket.socket) -> bytes:
    data = b""
    try:
        while part := s.recv(65536):
            data += part
    except ConnectionResetError:
        pass
    return data


def read_events(s: socket.socket, n: int) -> bytes:
    """Read a streamed answer until ``n`` data events have come (a stream held in a stall after them)."""
    got = b""
    while got.count(b"data: {") < n:
        part = s.recv(65536)
        assert part, "the stream ended before its stall"
        got += part
    return got


def read_kept_stream(s: socket.socket) -> tuple[dict[str, list[str]], bytes, bytes]:
    """A whole streamed answer off a kept-alive connection: its headers, its dechunked body (checked
    terminated), and the bytes read past it."""
    got = b""
    while b"\r\n0\r\n\r\n" not in got:
        part = s.recv(65536)
        assert part, "the connection ended inside the stream"
        got += part
    stream, _, left = got.partition(b"\r\n0\r\n\r\n")
    _, headers, payload = split(stream)
    body, terminated = dechunk(payload + b"\r\n0\r\n\r\n")
    assert terminated
    return headers, body, left


def post(body: bytes, *, head: str = "POST", target: str = PATH, version: str = "HTTP/1.1", headers: str = "Connection: close\r\n") -> bytes:
    return (f"{head} {target} {version}\r\nHost: x\r\n{headers}Content-Length: {len(body)}\r\n\r\n").encode() + body


def split(data: bytes) -> tuple[str, dict[str, list[str]], bytes]:
    """(status line, header values by lower-cased name, body) of one raw response."""
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers, body


def dechunk(payload: bytes) -> tuple[bytes, bool]:
    """The body of a chunked response, and whether it was properly terminated."""
    out = b""
    while payload:
        line, _, payload = payload.partition(b"\r\n")
        size = int(line, 16)
        if size == 0:
            return out, payload == b"\r\n"
        out, payload = out + payload[:size], payload[size + 2 :]
    return out, False


def server_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == THREAD and t.is_alive()}


STREAM = json.dumps({"model": "x", "stream": True}).encode()


def read_stream(resp: StreamResponse, stall_timeout: float, scale: float = 0.001) -> tuple[bytes, bool, LoopbackServer]:
    """What a streaming client reads (the dechunked body), whether the stream was terminated, and
    the closed server (for ``stalled`` and ``waited``)."""
    with LoopbackServer([resp], time_scale=scale, stall_timeout=stall_timeout) as server:
        _, _, payload = split(exchange(server.port, post(STREAM)))
    body, terminated = dechunk(payload)
    return body, terminated, server


# ------------------------------------------------------------------------------ lifecycle


def test_time_scale_must_be_positive() -> None:
    """A zero scale would serve every recorded pause as no pause at all: refused like a negative one."""
    for bad in (0, 0.0, -1.0):
        with pytest.raises(ValueError, match="time_scale must be positive"):
            LoopbackServer([], time_scale=bad)


def test_leaving_with_or_async_with_stops_serving_and_the_thread() -> None:
    """Exit closes the listening socket (a new connection is refused) and ends the loop thread,
    whether the server was used with ``with``, ``async with`` or ``start``/``close``."""
    before = server_threads()

    def gone(port: int) -> None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert server_threads() <= before

    with LoopbackServer([]) as srv:
        assert server_threads() - before
    gone(srv.port)

    async def scoped() -> int:
        async with LoopbackServer([]) as srv:
            assert server_threads() - before
            return srv.port

    gone(asyncio.run(scoped()))
    srv = LoopbackServer([]).start()
    srv.close()
    gone(srv.port)


def test_a_failed_start_leaves_no_thread_and_a_closed_server_starts_again() -> None:
    """A bind that fails (an address not on this machine) raises and stops the thread it started;
    a server that was closed can be started again and serves what it had left."""
    before = server_threads()
    with pytest.raises(OSError):
        LoopbackServer([], host="192.0.2.1").start()  # TEST-NET-1: never a local address
    assert server_threads() <= before

    srv = LoopbackServer([CompletionResponse(DONE)] * 2).start()
    assert split(exchange(srv.port, post(b"{}")))[0] == "HTTP/1.1 200 OK"
    srv.close()
    srv.start()
    try:
        assert split(exchange(srv.port, post(b"{}")))[0] == "HTTP/1.1 200 OK"
        assert srv.consumed == 2
    finally:
        srv.close()


def test_close_drops_a_connection_held_in_a_stall() -> None:
    """A client waiting in a 30 s pause sees its connection end when the server closes (no
    terminating chunk), instead of waiting the pause out."""
    resp = StreamResponse(chunks=CHUNKS, stall_after=2, stall_seconds=30.0)
    srv = LoopbackServer([resp]).start()
    try:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(post(STREAM))
        got = read_events(s, 2)
    finally:
        srv.close()
    with s:
        got += read_to_end(s)  # raises socket.timeout if the connection outlives the server
    assert got.count(b"data: {") == 2 and not got.endswith(b"0\r\n\r\n")


def test_close_drops_a_connection_whose_client_reads_nothing() -> None:
    """Shutdown aborts connections rather than flushing them: a client that stopped reading a
    32 MB answer still sees its connection end when the server closes."""
    big = CompletionResponse({"choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * (32 << 20)}}]})
    srv = LoopbackServer([big]).start()
    try:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        s.sendall(post(b"{}"))
        assert s.recv(1), "the answer started"
    finally:
        srv.close()
    with s:
        rest = read_to_end(s)
    assert len(rest) < 32 << 20, "the whole answer was flushed after close"


def test_close_drops_connections_even_when_the_loop_thread_answers_late() -> None:
    """Shutdown does not depend on the loop thread answering within close's wait: with the thread
    held up past it (a loaded CI machine), the open connection still ends soon after close."""
    srv = LoopbackServer([CompletionResponse(DONE), CompletionResponse(DONE)]).start()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(post(b"{}", headers=""))  # keep-alive: the handler waits for a second request
    assert s.recv(1), "the answer started"
    assert srv._loop is not None
    srv._loop.call_soon_threadsafe(time.sleep, 1.5)  # the thread is busy past close's wait
    srv.close()
    with s:
        read_to_end(s)  # raises socket.timeout if the connection outlives the server


def test_a_malformed_request_is_dropped_quietly(caplog: pytest.LogCaptureFixture) -> None:
    """A request the server cannot parse (no request line, a Content-Length that is not a number,
    a chunk size that is not hex) closes its connection with nothing sent and nothing logged, and
    the server goes on serving."""
    caplog.set_level(logging.ERROR)
    with LoopbackServer([CompletionResponse(DONE)]) as srv:
        assert exchange(srv.port, b"garbage\r\n\r\n") == b""
        assert exchange(srv.port, b"POST / HTTP/1.1\r\nContent-Length: many\r\n\r\n") == b""
        assert exchange(srv.port, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n") == b""
        # a full answer after them: the loop has run every callback of the dropped connections
        assert split(exchange(srv.port, post(b"{}")))[0] == "HTTP/1.1 200 OK"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert len(srv.requests) == 1


# ------------------------------------------------------------------------------ reading requests


def test_methods_and_header_values_are_read_case_insensitively() -> None:
    """``post``, ``Expect: 100-Continue``, ``Transfer-Encoding: Chunked``, ``Connection: Close`` and
    an HTTP/1.0 ``Connection: Keep-Alive`` mean what their lower-case spelling means."""
    body = b'{"model": "m"}'
    with LoopbackServer([CompletionResponse(DONE)] * 4) as srv:
        assert split(exchange(srv.port, post(body, head="post")))[0] == "HTTP/1.1 200 OK"

        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: Close\r\nExpect: 100-Continue\r\n"
                      b"Transfer-Encoding: Chunked\r\n\r\n" % PATH.encode())
            assert s.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
            s.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            data = read_to_end(s)  # Close is honoured: the server ends the connection
        status, headers, _ = split(data)
        assert status == "HTTP/1.1 200 OK" and headers["connection"] == ["close"]

        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"  # type: ignore[attr-defined]
        for _ in range(2):  # the second request rides the kept-alive connection
            conn.request("POST", PATH, body=body, headers={"Connection": "Keep-Alive"})
            r = conn.getresponse()
            assert r.status == 200 and r.getheader("connection") == "keep-alive"
            r.read()
        conn.close()
    assert [r.body for r in srv.requests] == [{"model": "m"}] * 4


def test_a_request_head_up_to_a_mebibyte_is_read() -> None:
    """The head is read with a 1 MiB limit: a 900 kB header is served, a 1.2 MB one is dropped."""
    with LoopbackServer([CompletionResponse(DONE)] * 2) as srv:
        big = f"X-Big: {'a' * 900_000}\r\nConnection: close\r\n"
        assert split(exchange(srv.port, post(b"{}", headers=big)))[0] == "HTTP/1.1 200 OK"
        assert srv.requests[0].headers["x-big"] == "a" * 900_000
        huge = f"X-Big: {'a' * 1_200_000}\r\nConnection: close\r\n"
        assert exchange(srv.port, post(b"{}", headers=huge)) == b""
    assert srv.consumed == 1


def test_request_bodies_without_json_are_recorded_as_they_came() -> None:
    """No body is recorded as ``{}``; a body that is not UTF-8 as its text with replacement
    characters, not as a dropped connection."""
    with LoopbackServer([CompletionResponse(DONE)]) as srv:
        assert split(exchange(srv.port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))[0].startswith("HTTP/1.1 404 ")
        assert split(exchange(srv.port, post(b'{"a": "\xff"}')))[0] == "HTTP/1.1 200 OK"
    assert [r.body for r in srv.requests] == [{}, {"_unparsed": '{"a": "\ufffd"}'}]


def test_every_credential_header_is_redacted_in_the_record() -> None:
    """``Authorization``, ``x-api-key`` (Anthropic) and ``api-key`` (Azure) are recorded redacted,
    so a recorded request can go into a cassette or a trace as is; other headers as sent, and
    nothing else (the blank line that ends the head is no header)."""
    creds = "Authorization: Bearer sk-secret\r\nX-Api-Key: sk-ant-secret\r\nApi-Key: az-secret\r\nX-Other: kept\r\n"
    with LoopbackServer([CompletionResponse(DONE)]) as srv:
        exchange(srv.port, post(b"{}", headers=creds + "Connection: close\r\n"))
    (req,) = srv.requests
    assert [req.headers[k] for k in ("authorization", "x-api-key", "api-key", "x-other")] == ["Bearer ***", "***", "***", "kept"]
    assert sorted(req.headers) == ["api-key", "authorization", "connection", "content-length", "host", "x-api-key", "x-other"]


def test_a_header_value_that_holds_colons_is_recorded_whole() -> None:
    """A header is split at its first colon: ``Host`` with its port, as every HTTP client sends
    it, and a value with more colons in it keep their names and values."""
    with LoopbackServer([CompletionResponse(DONE)]) as srv:
        host = f"Host: 127.0.0.1:{srv.port}\r\n"
        exchange(srv.port, post(b"{}", headers="X-Trace: a:b:c\r\nConnection: close\r\n").replace(b"Host: x\r\n", host.encode()))
    (req,) = srv.requests
    assert (req.headers["host"], req.headers["x-trace"]) == (f"127.0.0.1:{srv.port}", "a:b:c")


# ------------------------------------------------------------------------------ what is answered


def test_the_chat_path_is_matched_without_its_query_and_only_for_post() -> None:
    """A query string (Azure's ``?api-version=``) does not change the path; a GET to the chat path
    is a 404 that plays nothing."""
    with LoopbackServer([CompletionResponse(DONE)]) as srv:
        status, _, body = split(exchange(srv.port, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % PATH.encode()))
        assert status.startswith("HTTP/1.1 404 ") and json.loads(body)["error"]["type"] == "not_found"
        assert srv.consumed == 0
        status, _, body = split(exchange(srv.port, post(b"{}", target=PATH + "?api-version=2024-06-01")))
        assert status == "HTTP/1.1 200 OK" and json.loads(body) == DONE
    assert [r.path for r in srv.requests] == [PATH, PATH + "?api-version=2024-06-01"]


def test_every_call_past_the_end_names_the_cassette_length() -> None:
    """``x-loopspec-diverged`` carries the number of recorded responses on every call past the end,
    not the call's index, and says not to retry."""
    with LoopbackServer([CompletionResponse(DONE)]) as srv:
        exchange(srv.port, post(b"{}"))
        for _ in range(2):
            status, headers, _ = split(exchange(srv.port, post(b"{}")))
            assert status.startswith("HTTP/1.1 409 ")
            assert headers[DIVERGED_HEADER] == ["1"] and headers["x-should-retry"] == ["false"]
    assert srv.diverged_at == 1


def read_answer(s: socket.socket, buffered: bytes) -> tuple[str, dict[str, list[str]], bytes, bytes]:
    """One answer with a Content-Length off a kept-alive connection: status, headers, body, and
    the bytes read past it."""
    while b"\r\n\r\n" not in buffered:
        part = s.recv(65536)
        assert part, "the connection ended before an answer"
        buffered += part
    status, headers, rest = split(buffered)
    length = int(headers["content-length"][0])
    while len(rest) < length:
        part = s.recv(65536)
        assert part, "the connection ended inside an answer"
        rest += part
    return status, headers, rest[:length], rest[length:]


def test_a_wrong_path_and_a_call_past_the_end_are_answered_in_json_on_a_connection_kept_open() -> None:
    """Neither a request the server does not serve (404) nor one past the cassette's end (409)
    ends a kept-alive connection: each is answered with an OpenAI-shaped error body and the next
    request on the same connection is answered too. A query string is not part of the path, even
    one holding another '?'."""
    with LoopbackServer([CompletionResponse(DONE)]) as srv:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        with s:
            def ask(raw: bytes, buffered: bytes) -> tuple[str, dict[str, list[str]], Any, bytes]:
                s.sendall(raw)
                status, headers, body, left = read_answer(s, buffered)
                return status, headers, json.loads(body), left

            keep = "Host: x\r\n"
            status, headers, body, left = ask(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", b"")
            assert (status, headers["connection"]) == ("HTTP/1.1 404 Not Found", ["keep-alive"])
            assert body == {"error": {"type": "not_found", "message":
                                      "loopspec replay server only serves POST /v1/chat/completions; got GET /v1/models"}}
            status, headers, body, left = ask(post(b"{}", target=PATH + "?a=1?b=2", headers=keep), left)
            assert (status, headers["connection"], body) == ("HTTP/1.1 200 OK", ["keep-alive"], DONE)
            status, headers, body, left = ask(post(b"{}", headers=keep), left)
            assert (status, headers["connection"]) == ("HTTP/1.1 409 Conflict", ["keep-alive"])
            assert body == {"error": {"type": "loopspec_diverged", "code": "loopspec_diverged",
                                      "message": "cassette has 1 recorded model responses; the policy asked for call 2"}}
            status, _, _, _ = ask(post(b"{}", headers=keep), left)
            assert status == "HTTP/1.1 409 Conflict", "still answered on the same connection"


def test_litellm_does_not_retry_a_divergence(loop: asyncio.AbstractEventLoop) -> None:
    """Even with retries allowed, the openai SDK under litellm sends one request past the end of
    the cassette, not one per retry: the 409 tells it not to retry."""
    import litellm

    with LoopbackServer([]) as srv:
        with pytest.raises(litellm.APIError):
            loop.run_until_complete(litellm.acompletion(
                model="openai/x", api_base=srv.api_base, api_key="sk-test", max_retries=2, timeout=10,
                messages=[{"role": "user", "content": "hi"}],
            ))
    assert len(srv.requests) == 1


def test_when_no_tools_answers_by_whether_the_request_offered_tools() -> None:
    """A ``WhenNoTools`` response plays ``default`` to a request with tools and ``no_tools`` to one
    without (or with an empty list)."""
    with_tools: Any = {"choices": [], "id": "default"}
    without: Any = {"choices": [], "id": "no_tools"}
    pick = WhenNoTools(CompletionResponse(with_tools), CompletionResponse(without))
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with LoopbackServer([pick] * 3) as srv:
        got = [json.loads(split(exchange(srv.port, post(json.dumps(b).encode())))[2])["id"]
               for b in ({"tools": tools}, {}, {"tools": []})]
    assert got == ["default", "no_tools", "no_tools"]


def test_only_a_json_true_stream_flag_asks_for_a_stream() -> None:
    """``"stream": "true"`` or ``1`` is not ``true``: the answer is the folded JSON completion."""
    resp = StreamResponse(chunks=CHUNKS)
    with LoopbackServer([resp] * 3) as srv:
        heads = []
        for flag in ("true", 1, True):
            _, headers, _ = split(exchange(srv.port, post(json.dumps({"stream": flag}).encode())))
            heads.append(headers["content-type"][0])
    assert heads == ["application/json", "application/json", "text/event-stream; charset=utf-8"]


def test_a_stream_to_a_kept_alive_request_says_so_and_the_connection_serves_the_next() -> None:
    """A streamed answer's head keeps the connection alive when the request did (HTTP/1.1 without
    ``Connection: close``), and the next request on that connection is answered."""
    with LoopbackServer([StreamResponse(chunks=CHUNKS)]) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(post(STREAM, headers="Host: x\r\n"))
            headers, _, left = read_kept_stream(s)
            assert headers["connection"] == ["keep-alive"]
            s.sendall(post(b"{}", headers="Host: x\r\n"))
            assert read_answer(s, left)[0] == "HTTP/1.1 409 Conflict"


def test_a_whole_completion_asked_as_a_stream_is_streamed_and_a_stream_asked_whole_is_folded_on_a_kept_connection() -> None:
    """A recorded whole completion asked for as a stream goes out as its chunks, terminated, and a
    recorded stream asked for whole goes out as one JSON completion; neither ends a kept-alive
    connection."""
    text = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there."}, "finish_reason": "stop"}]}
    with LoopbackServer([CompletionResponse(text), StreamResponse(chunks=CHUNKS), CompletionResponse(DONE)]) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(post(STREAM, headers="Host: x\r\n"))
            headers, body, left = read_kept_stream(s)
            assert headers["connection"] == ["keep-alive"]
            deltas = [json.loads(line[6:])["choices"][0]["delta"] for line in body.decode().splitlines()
                      if line.startswith("data: {")]
            assert "".join(d.get("content") or "" for d in deltas) == "Hi there."
            s.sendall(post(b"{}", headers="Host: x\r\n"))
            status, headers, folded, left = read_answer(s, left)
            assert (status, headers["connection"]) == ("HTTP/1.1 200 OK", ["keep-alive"])
            assert json.loads(folded)["choices"][0]["message"]["content"] == "one two three four"
            s.sendall(post(b"{}", headers="Host: x\r\n"))
            assert read_answer(s, left)[0] == "HTTP/1.1 200 OK", "the connection still serves"


def test_an_empty_content_length_is_a_request_without_a_body() -> None:
    with LoopbackServer([CompletionResponse(DONE)]) as srv:
        raw = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: \r\n\r\n"
        assert split(exchange(srv.port, raw, timeout=5))[0] == "HTTP/1.1 200 OK"
    assert srv.requests[0].body == {}


def test_a_recorded_error_says_whether_its_body_is_json() -> None:
    """An error body recorded as an object, or as text that parses as JSON, goes out as
    ``application/json`` (what the openai SDK reads a message from); other text as plain text."""
    bodies: list[Any] = [{"error": {"message": "slow down"}}, '{"error": {"message": "slow down"}}', "slow down"]
    with LoopbackServer([ErrorResponse(429, b) for b in bodies]) as srv:
        got = [split(exchange(srv.port, post(b"{}"))) for _ in bodies]
    assert [(status, headers["content-type"]) for status, headers, _ in got] == [
        ("HTTP/1.1 429 Too Many Requests", ["application/json"]), ("HTTP/1.1 429 Too Many Requests", ["application/json"]),
        ("HTTP/1.1 429 Too Many Requests", ["text/plain; charset=utf-8"])]
    assert [json.loads(body) for _, _, body in got[:2]] == [bodies[0], bodies[0]] and got[2][2] == b"slow down"


def test_a_streamed_answer_has_an_sse_head() -> None:
    """A stream goes out as ``text/event-stream``, uncached, chunked: what a provider sends."""
    with LoopbackServer([StreamResponse(chunks=CHUNKS)]) as srv:
        status, headers, payload = split(exchange(srv.port, post(STREAM)))
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == ["text/event-stream; charset=utf-8"]
    assert headers["cache-control"] == ["no-cache"] and headers["transfer-encoding"] == ["chunked"]
    body, terminated = dechunk(payload)
    assert terminated and body.count(b"data: {") == len(CHUNKS)


# ------------------------------------------------------------------------------ recorded headers


def test_recorded_headers_go_out_once_and_as_recorded() -> None:
    """A recorded ``content-type`` replaces the default one (one header, not two), and a value
    outside ASCII reaches the client as the same text (headers are latin-1 on the wire)."""
    with LoopbackServer([ErrorResponse(502, "<html>bad gateway</html>", {"content-type": "text/html", "x-note": "café"})]) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("POST", PATH, body=b"{}")
        r = conn.getresponse()
        headers = [(k.lower(), v) for k, v in r.getheaders()]
        body = r.read()
        conn.close()
    assert r.status == 502 and body == b"<html>bad gateway</html>"
    assert [v for k, v in headers if k == "content-type"] == ["text/html"]
    assert [v for k, v in headers if k == "x-note"] == ["café"]


def test_recorded_framing_headers_do_not_frame_the_answer() -> None:
    """A cassette's ``content-length``, ``transfer-encoding`` or ``connection`` (copied from a real
    response) says nothing about the answer the server sends: the server frames it itself, so the
    body arrives whole and the kept-alive connection serves the next answer."""
    body = {"error": {"message": "overloaded"}}
    framing = {"Content-Length": "5", "transfer-encoding": "chunked", "connection": "close", "retry-after": "2"}
    with LoopbackServer([ErrorResponse(503, body, framing), CompletionResponse(DONE)]) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("POST", PATH, body=b"{}")
        r = conn.getresponse()
        headers = [(k.lower(), v) for k, v in r.getheaders()]
        assert (r.status, json.loads(r.read())) == (503, body)
        assert sorted((k, v) for k, v in headers if k in ("content-length", "transfer-encoding", "connection")) == [
            ("connection", "keep-alive"), ("content-length", str(len(json.dumps(body))))]
        assert r.getheader("retry-after") == "2"
        conn.request("POST", PATH, body=b"{}")
        r = conn.getresponse()
        assert (r.status, json.loads(r.read())) == (200, DONE)
        conn.close()


# ------------------------------------------------------------------------------ pauses and stalls


def test_a_non_streaming_answer_waits_the_scaled_pauses() -> None:
    """Folded, a 1000 s stall at a scale of 0.001 delays the answer by 1 s, not 1000 s."""
    resp = StreamResponse(chunks=CHUNKS, stall_after=2, stall_seconds=1000.0)
    with LoopbackServer([resp], time_scale=0.001) as srv:
        status, _, body = split(exchange(srv.port, post(b"{}"), timeout=30))
    assert status == "HTTP/1.1 200 OK" and json.loads(body)["object"] == "chat.completion"


def test_a_non_streaming_answer_waits_all_its_pauses_together() -> None:
    """Two 1 s pauses in one recorded stream hold a folded answer back for their sum: no byte has
    arrived 1.5 s after the request (the existing no-byte-before-the-stall pattern, with margin)."""
    resp = StreamResponse(chunks=CHUNKS, pauses=(Pause(1, 1.0), Pause(4, 1.0)))
    with LoopbackServer([resp]) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=1.5) as s:
            s.sendall(post(b"{}"))
            with pytest.raises(socket.timeout):
                s.recv(1)
            s.settimeout(10)
            assert read_to_end(s).startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_long_stall_is_served_as_the_stall_timeout_and_its_pings() -> None:
    """A 300 s stall with a ping every 25 s, at a 60 s stall timeout: two pings (at 25 and 50 s)
    then the drop at 60 s, not a third ping; the turn waited 60 s."""
    body, terminated, srv = read_stream(StreamResponse(chunks=CHUNKS, stall_after=3, stall_seconds=300, keepalive=25), 60)
    assert not terminated and srv.stalled == {0}
    assert body.count(b"data: {") == 3 and body.count(b": ping") == 2
    assert srv.waited == {0: 60}


def test_a_pause_exactly_as_long_as_the_stall_timeout_is_a_stall() -> None:
    """The client's stall timer fires when the wait reaches the timeout, so a recorded pause of
    exactly 60 s at a 60 s timeout is served as a stall (as the in-process transport judges it),
    and one a hair shorter is waited out."""
    body, terminated, srv = read_stream(StreamResponse(chunks=CHUNKS, stall_after=3, stall_seconds=60), 60)
    assert not terminated and srv.stalled == {0} and body.count(b"data: {") == 3
    body, terminated, srv = read_stream(StreamResponse(chunks=CHUNKS, stall_after=3, stall_seconds=59.9), 60)
    assert terminated and srv.stalled == set() and body.count(b"data: {") == len(CHUNKS)


def test_a_ping_in_the_last_second_of_a_stall_still_goes_out() -> None:
    """At a 50.5 s stall timeout with a ping every 25 s, the client hears the pings at 25 and 50 s
    and then the drop half a second later: the stall is served to its last fraction of a second."""
    body, terminated, srv = read_stream(StreamResponse(chunks=CHUNKS, stall_after=3, stall_seconds=300, keepalive=25), 50.5)
    assert not terminated and srv.stalled == {0} and body.count(b": ping") == 2
    assert srv.waited == {0: 50.5}


def test_data_lines_without_a_space_are_events_too() -> None:
    """``data:{...}`` (no space after the colon, as some providers send) counts toward the stall's
    position like ``data: {...}``."""
    event = 'data:{"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'
    resp = StreamResponse(sse=event * 4 + "data:[DONE]\n\n", stall_after=2, stall_seconds=70)
    body, terminated, srv = read_stream(resp, 60)
    assert not terminated and srv.stalled == {0} and body.count(b"data:{") == 2


@pytest.mark.parametrize("done", ["data: [DONE]", "data:[DONE]"])
def test_done_in_the_middle_of_a_stream_is_not_an_event(done: str) -> None:
    """``[DONE]`` carries nothing, so it does not move the stall's position, however it is
    spelled: with a stall before the fourth data event (the third that carries a chunk), the chunk
    after [DONE] is served."""
    event = 'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n'
    sse = event % "a" + done + "\n\n" + event % "b" + event % "c"
    body, terminated, srv = read_stream(StreamResponse(sse=sse, stall_after=3, stall_seconds=70), 60)
    assert not terminated and srv.stalled == {0}
    assert b'"b"' in body and b'"c"' not in body


@pytest.mark.parametrize("pauses", [(Pause(1, 40.0), Pause(2, 40.0)), (Pause(1, 59.5), Pause(2, 40.0)), (Pause(2, 70.0),)],
                         ids=["around [DONE]", "all but half a second before [DONE]", "after [DONE]"])
def test_a_stall_that_lies_past_done_is_served_whole(pauses: tuple[Pause, ...]) -> None:
    """A stall at the end of a stream whose wait is split by ``[DONE]`` (or lies after it): the
    in-process transport waits the stall timeout there, so the server serves the whole 60 s before
    it drops the stream, not only the part before [DONE]."""
    sse = 'data: {"choices":[{"index":0,"delta":{"content":"Hi."},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    body, terminated, srv = read_stream(StreamResponse(sse=sse, pauses=pauses), 60)
    assert not terminated and srv.stalled == {0} and b"[DONE]" not in body
    assert srv.waited == {0: 60.0}


def test_the_turn_time_of_a_stall_past_done_is_the_stall_timeout(loop: asyncio.AbstractEventLoop) -> None:
    """The same stall over HTTP and in-process costs the turn the same time: 60 s, the stall
    timeout of machines/default.yaml, though 40 s of the recorded wait lie after [DONE]."""
    from loopspec import InProcessProvider, Turn, VirtualClock, load_policy
    from loopspec.replay.http import LoopbackClock, run_guarded_over_http
    from loopspec.replay.turn_time import TurnTime

    from _paths import DEFAULT_POLICY

    policy = load_policy(str(DEFAULT_POLICY))
    user = [{"role": "user", "content": "hi"}]
    sse = 'data: {"choices":[{"index":0,"delta":{"content":"Hi."},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    script: list[Any] = [StreamResponse(sse=sse, pauses=(Pause(1, 40.0), Pause(2, 40.0))), StreamResponse(chunks=reply_chunks("All green."))]
    scale = 0.002
    clock = TurnTime(LoopbackClock(scale))
    result, _server, crash = loop.run_until_complete(run_guarded_over_http(policy, script, user, time_scale=scale, clock=clock))
    virtual = VirtualClock()
    local = asyncio.run(Turn(policy, InProcessProvider(script), model="replay", clock=virtual).run(user))
    assert crash is None and [s.event for s in result.trace] == [s.event for s in local.trace]
    assert [s.event for s in result.trace][:2] == ["opened", "stalled"]
    assert clock.elapsed == virtual.now() == policy.settings.stall_timeout == 60
