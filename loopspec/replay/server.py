"""A loopback OpenAI-compatible server that plays a cassette's model responses over real HTTP.

The HTTP replay transport points litellm at it with ``api_base``, so the real client stack (openai
SDK, httpx/aiohttp, litellm's SSE parsing and exception mapping) sees real statuses, real pauses
and real dropped connections. HTTP/1.1 is hand-written on ``asyncio.start_server`` to avoid a
dependency; it supports keep-alive and chunked responses because litellm's clients reuse
connections. The server never invents a response: a request past the end of the cassette gets
HTTP 409 ``loopspec_diverged``.

Given the client's stall timeout, the server also says where the recording stalls, so a replay
over HTTP stalls exactly where an in-process one does, however slow the client stack is: the wait
before a data event is judged with the in-process transport's own items
(:func:`~loopspec.replay.inproc.stream_items`); at a stall the server waits out the stall timeout
(keep-alive pings included), drops the connection before the next data event and notes the
request in :attr:`LoopbackServer.stalled`. A client that reads a dropped stream of a noted
request knows it as a stall, not as a disconnect, and needs no timer of its own, so the time
litellm spends parsing a 4 MB reply or a 40,000-event stream never counts as a stall.
"""

from __future__ import annotations

from loopspec.language.errors import LoopspecError

import asyncio
import http
import json
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Sequence

from .inproc import stream_items
from .interactions import (
    CompletionResponse,
    Disconnect,
    ErrorResponse,
    Interaction,
    Stall,
    StreamResponse,
    WhenNoTools,
    choose,
    completion_chunks,
    fold_stream,
    is_data_event,
    stream_plan,
)

__all__ = ["LoopbackServer", "RecordedRequest", "CHAT_PATH", "DIVERGED_HEADER"]

CHAT_PATH = "/v1/chat/completions"
DIVERGED_HEADER = "x-loopspec-diverged"
_MAX_HEAD = 1 << 20
_REDACT = {"authorization": "Bearer ***", "x-api-key": "***", "api-key": "***"}
_FRAMING = {"content-length", "transfer-encoding", "connection"}
"""Headers that frame the answer on the wire: the server's own, never a recording's."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it. Header names are lower-cased; credentials are redacted
    so that a recorded request can be written into a cassette or a trace as is."""

    index: int
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    raw_body: bytes


class _Dropped(LoopspecError):
    """The response plan ended in a disconnect; the connection is gone."""


class LoopbackServer:
    """Serve ``responses`` in order to ``POST /v1/chat/completions`` on 127.0.0.1:<ephemeral>.

    Runs its own asyncio loop in a daemon thread so that sync and async callers alike can use it
    (``with`` or ``async with``). Exit cancels in-flight handlers, so a stalled stream never holds
    up shutdown. Every recorded pause is served ``time_scale`` times as long. With
    ``stall_timeout`` (in recorded seconds, the client's), a wait at least that long before a data
    event is a stall: served as the stall timeout, then the connection is dropped and the request's
    index added to :attr:`stalled`.
    """

    def __init__(
        self,
        responses: Sequence[Interaction],
        *,
        host: str = "127.0.0.1",
        time_scale: float = 1.0,
        stall_timeout: float | None = None,
    ) -> None:
        for r in responses:
            if not isinstance(r, (StreamResponse, ErrorResponse, CompletionResponse, WhenNoTools)):
                raise TypeError(f"not a replayable response: {r!r}")
        if not time_scale > 0:
            raise ValueError("time_scale must be positive")
        self.responses: tuple[Interaction, ...] = tuple(responses)
        self.host = host
        self.time_scale = time_scale
        self.stall_timeout = stall_timeout
        self.port: int = 0
        self.requests: list[RecordedRequest] = []
        self.stalled: set[int] = set()
        """Indices of the requests whose stream the server ended at a recorded stall."""
        self.waited: dict[int, float] = {}
        """Recorded seconds of pause served so far, by request index (a stall counts as the stall
        timeout it was served for): the turn's own time, whatever the client spent meanwhile."""
        self.diverged_at: int | None = None
        self._served = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # ----------------------------------------------------------------- public surface

    @property
    def api_base(self) -> str:
        """What to pass to litellm as ``api_base`` (it appends ``/chat/completions``)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def consumed(self) -> int:
        """How many recorded responses have been played."""
        return min(self._served, len(self.responses))

    @property
    def unconsumed(self) -> int:
        """How many recorded responses were never played (the policy stopped early)."""
        return len(self.responses) - self.consumed

    def start(self) -> LoopbackServer:
        """Bind an ephemeral port and start serving; returns once ``.port`` is known."""
        if self._thread is not None:
            raise RuntimeError("LoopbackServer already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name="loopspec-replay-server", daemon=True
        )
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._bind(), loop)
        try:
            fut.result(timeout=5)
        except BaseException:
            fut.cancel()  # a bind still running would be left pending when the loop closes
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop serving: stop the loop, whose thread then cancels every handler (stalled ones
        included) and aborts every connection before it ends.

        The shutdown runs on the loop thread after the loop stops, not as a task racing the stop,
        so no connection outlives the server however late the thread gets to it."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._loop = None
        self._thread = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> LoopbackServer:
        # Off the caller's loop: start/close block briefly on the server thread.
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)

    # ----------------------------------------------------------------- loop thread

    def _run_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
        finally:
            loop.close()

    async def _bind(self) -> None:
        self._server = await asyncio.start_server(self._handle_conn, self.host, 0, limit=_MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=0.3)
        await asyncio.sleep(0)  # let the aborted transports' connection_lost close their sockets

    async def _handle_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                req = await self._read_request(reader, writer)
                if req is None or not await self._respond(req, writer):
                    break
        except (asyncio.CancelledError, _Dropped, ConnectionError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ValueError):
            # Cancelled at shutdown, a planned disconnect, or a client that went away (e.g. it
            # timed out during a stall): nothing left to say on this connection.
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    # ----------------------------------------------------------------- HTTP/1.1

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None  # client closed between requests
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(parts)
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
        return _Request(method.upper(), target, version.strip(), headers, body)

    @staticmethod
    def _keep_alive(req: _Request) -> bool:
        conn = req.headers.get("connection", "").lower()
        if req.version == "HTTP/1.0":
            return conn == "keep-alive"
        return conn != "close"

    @staticmethod
    def _head(status: int, headers: dict[str, str], keep_alive: bool) -> bytes:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {status} {reason}"]
        merged = {"Connection": "keep-alive" if keep_alive else "close", **headers}
        lines += [f"{k}: {v}" for k, v in merged.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send_body(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        content_type: str,
        keep_alive: bool,
        extra: dict[str, str] | None = None,
    ) -> bool:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        for k, v in (extra or {}).items():
            if k.lower() in _FRAMING:
                continue  # a recorded length or encoding would cut the body or hang the client
            headers = {hk: hv for hk, hv in headers.items() if hk.lower() != k.lower()}
            headers[k] = v
        writer.write(self._head(status, headers, keep_alive) + body)
        await writer.drain()
        return keep_alive

    async def _send_json(
        self, writer: asyncio.StreamWriter, status: int, obj: Any, keep_alive: bool,
        extra: dict[str, str] | None = None,
    ) -> bool:
        return await self._send_body(
            writer, status, json.dumps(obj).encode("utf-8"), "application/json", keep_alive, extra
        )

    def _record(self, req: _Request) -> None:
        headers = {k: _REDACT.get(k, v) for k, v in req.headers.items()}
        try:
            parsed = json.loads(req.raw_body) if req.raw_body else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            parsed = {"_unparsed": req.raw_body.decode("utf-8", errors="replace")}
        if not isinstance(parsed, dict):
            parsed = {"_json": parsed}
        self.requests.append(RecordedRequest(len(self.requests), req.target, headers, parsed))

    async def _respond(self, req: _Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; returns whether the connection stays open."""
        self._record(req)
        body = self.requests[-1].body
        keep = self._keep_alive(req)
        path = req.target.split("?", 1)[0]
        if req.method != "POST" or path != CHAT_PATH:
            return await self._send_json(
                writer, 404,
                {"error": {"type": "not_found", "message":
                           f"loopspec replay server only serves POST {CHAT_PATH}; got {req.method} {path}"}},
                keep,
            )
        call = self._served
        self._served += 1
        if call >= len(self.responses):
            n = len(self.responses)
            if self.diverged_at is None:
                self.diverged_at = n
            msg = f"cassette has {n} recorded model responses; the policy asked for call {call + 1}"
            # x-should-retry stops the openai SDK from retrying a 409 when max_retries > 0.
            # litellm keeps only the message of the body, not its "type", but it does keep the
            # response headers (exc.litellm_response_headers): x-loopspec-diverged marks it.
            return await self._send_json(
                writer, 409, {"error": {"type": "loopspec_diverged", "code": "loopspec_diverged", "message": msg}}, keep,
                {"x-should-retry": "false", DIVERGED_HEADER: str(n)},
            )
        resp = choose(self.responses[call], bool(body.get("tools")))
        wants_stream = body.get("stream") is True
        if isinstance(resp, ErrorResponse):
            return await self._send_error(writer, resp, keep)
        if isinstance(resp, CompletionResponse):
            if wants_stream:
                return await self._send_stream(writer, StreamResponse(chunks=completion_chunks(resp.body)), keep, call)
            return await self._send_json(writer, 200, resp.body, keep)
        if wants_stream:
            return await self._send_stream(writer, resp, keep, call)
        return await self._send_folded(writer, resp, keep)

    async def _send_error(self, writer: asyncio.StreamWriter, resp: ErrorResponse, keep: bool) -> bool:
        if isinstance(resp.body, str):
            try:
                json.loads(resp.body)
                ctype = "application/json"
            except json.JSONDecodeError:
                ctype = "text/plain; charset=utf-8"
            data = resp.body.encode("utf-8")
        else:
            ctype, data = "application/json", json.dumps(resp.body).encode("utf-8")
        return await self._send_body(writer, resp.status, data, ctype, keep, dict(resp.headers))

    async def _send_folded(self, writer: asyncio.StreamWriter, resp: StreamResponse, keep: bool) -> bool:
        """A stream asked for non-streaming: the stall delays the whole answer, a disconnect
        drops the connection before any byte, a mid-stream error object becomes HTTP 500."""
        wait = sum(p.seconds for p in resp.all_pauses())
        if wait:
            await asyncio.sleep(wait * self.time_scale)
        if resp.disconnect_after is not None:
            raise _Dropped
        folded = fold_stream(resp)
        return await self._send_json(writer, 500 if "error" in folded else 200, folded, keep)

    def _stall_at(self, resp: StreamResponse) -> int | None:
        """After how many data events the recording stalls for this client, or None: the first
        wait at least ``stall_timeout`` long, judged on the in-process transport's own items (each
        is one data event, with the wait before it), so both transports stall at the same one."""
        if self.stall_timeout is None:
            return None
        for k, item in enumerate(stream_items(resp)):
            if item.pause >= self.stall_timeout:
                return k
        return None

    async def _send_stream(self, writer: asyncio.StreamWriter, resp: StreamResponse, keep: bool, call: int) -> bool:
        headers = {
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
        }
        writer.write(self._head(200, headers, keep))
        await writer.drain()
        stall_at = self._stall_at(resp)
        budget = self.stall_timeout or 0.0
        events = 0
        for step in stream_plan(resp):
            stalling = events == stall_at
            if isinstance(step, Stall):
                seconds = min(step.seconds, budget) if stalling else step.seconds
                await asyncio.sleep(seconds * self.time_scale)
                self.waited[call] = self.waited.get(call, 0.0) + seconds  # before the next byte
                if stalling:
                    budget -= seconds
                    if budget <= 0:
                        break
            elif isinstance(step, Disconnect):
                if stalling:
                    break
                # Close with the chunked body unterminated: the client sees a truncated stream.
                writer.close()
                raise _Dropped
            elif step:
                data = is_data_event(step)
                if stalling and data:
                    break  # the client gave up before this event; comments (pings) still go out
                writer.write(b"%x\r\n" % len(step) + step + b"\r\n")
                await writer.drain()
                if stall_at is not None and _is_item(step):
                    events += 1
        if events == stall_at:
            if budget > 0:
                # Part of the stall's wait lies past [DONE], which is no event of the in-process
                # transport: the client still waits out its whole stall timeout before it drops.
                await asyncio.sleep(budget * self.time_scale)
                self.waited[call] = self.waited.get(call, 0.0) + budget
            # The recorded stall: noted before the drop, so the client reading the truncated
            # stream already finds it here.
            self.stalled.add(call)
            writer.close()
            raise _Dropped
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return keep



def _is_item(event: bytes) -> bool:
    """Whether the in-process transport makes an item of this event, read as ``iter_sse_data``
    reads it: a data event whose payload is not ``[DONE]`` (parsed, or breaking the stream)."""
    lines = [line for line in event.decode("utf-8", errors="replace").splitlines() if line.startswith("data:")]
    payload = "\n".join(line[6:] if line.startswith("data: ") else line[5:] for line in lines)
    return bool(lines) and payload != "[DONE]"
