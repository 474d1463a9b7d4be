"""A tiny scripted OpenAI-compatible HTTP server on 127.0.0.1 for provider tests.

A test double, not the product's replay server (that is ``loopspec.replay.server``): each request
pops the next scripted :class:`Reply` and the server records what it was sent, so a test can
assert how many requests litellm really made. Raw sockets rather than ``http.server`` so a reply
can drop the connection mid-body or stall between events exactly like a failing upstream.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections import deque
from dataclasses import dataclass, field

__all__ = ["Reply", "LoopbackServer"]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable", 529: "Overloaded"}


@dataclass
class Reply:
    """One scripted response.

    ``sse`` set: a 200 ``text/event-stream`` body sent event by event (chunked encoding);
    ``drop_after=N`` closes the socket after N events with no terminating chunk;
    ``stall_after=N`` sleeps ``stall_seconds`` after N events. Otherwise ``status`` + ``body``.
    ``delay`` sleeps before the status line (a stall before the headers).
    """

    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    sse: bytes | str | None = None
    drop_after: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 0.0
    delay: float = 0.0


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]
    body: dict


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        sock: socket.socket = self.request
        f = sock.makefile("rb")
        try:
            while self._one(sock, f):
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            f.close()

    def _one(self, sock: socket.socket, f) -> bool:
        line = f.readline()
        if not line:
            return False
        _method, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            h = f.readline().decode("latin-1")
            if h in ("\r\n", "\n", ""):
                break
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        raw = f.read(int(headers.get("content-length", "0") or 0))
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        owner = self.server.owner
        owner.requests.append(SeenRequest(path, headers, body))
        reply = owner.script.popleft() if owner.script else Reply(500, b'{"error":{"message":"no scripted reply"}}')
        if reply.delay:
            time.sleep(reply.delay)
        if reply.sse is None:
            data = reply.body.encode() if isinstance(reply.body, str) else reply.body
            hdrs = {"Content-Type": "application/json", "Content-Length": str(len(data)), **reply.headers}
            sock.sendall(self._head(reply.status, hdrs) + data)
            return True
        sse = reply.sse.encode() if isinstance(reply.sse, str) else reply.sse
        hdrs = {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked", **reply.headers}
        sock.sendall(self._head(200, hdrs))
        events = [e + b"\n\n" for e in sse.replace(b"\r\n", b"\n").split(b"\n\n") if e.strip()]
        for n, ev in enumerate(events):
            if reply.drop_after is not None and n == reply.drop_after:
                sock.shutdown(socket.SHUT_RDWR)
                return False
            if reply.stall_after is not None and n == reply.stall_after:
                time.sleep(reply.stall_seconds)
            sock.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
        sock.sendall(b"0\r\n\r\n")
        return True

    @staticmethod
    def _head(status: int, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    owner: "LoopbackServer"


class LoopbackServer:
    """Context manager: ``with LoopbackServer() as srv: srv.push(Reply(...)); srv.base_url``."""

    def __init__(self) -> None:
        self.requests: list[SeenRequest] = []
        self.script: deque[Reply] = deque()
        self._srv = _Server(("127.0.0.1", 0), _Handler)
        self._srv.owner = self
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._srv.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def reset(self) -> None:
        self.requests.clear()
        self.script.clear()

    def __enter__(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._srv.shutdown()
        self._srv.server_close()
