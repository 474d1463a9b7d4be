"""The loopback server as plain HTTP sees it: error bodies keep their content type (JSON or text),
an unknown status still gets a status line, HTTP/1.0 closes unless asked to keep alive, request
bodies that are not a JSON object are recorded as they came, and the server refuses what it cannot
serve or start twice."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from loopspec.replay.interactions import CompletionResponse, ErrorResponse
from loopspec.replay.server import LoopbackServer

PATH = "/v1/chat/completions"


def post(port: int, body: bytes, version: int = 11, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn._http_vsn, conn._http_vsn_str = (10, "HTTP/1.0") if version == 10 else (11, "HTTP/1.1")  # type: ignore[attr-defined]
    try:
        conn.request("POST", PATH, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, r.reason, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_error_bodies_keep_their_content_type_and_unknown_statuses_their_code() -> None:
    responses = [
        ErrorResponse(503, '{"error": {"message": "overloaded"}}'),
        ErrorResponse(502, "Bad gateway, try later"),
        ErrorResponse(599, {"error": {"message": "odd"}}, {"retry-after": "2"}),
    ]
    with LoopbackServer(responses) as srv:
        status, _, headers, body = post(srv.port, b'{"stream": false}')
        assert (status, headers["content-type"], json.loads(body)) == (503, "application/json", {"error": {"message": "overloaded"}})
        status, _, headers, body = post(srv.port, b'{"stream": false}')
        assert (status, headers["content-type"], body) == (502, "text/plain; charset=utf-8", b"Bad gateway, try later")
        status, reason, headers, body = post(srv.port, b'{"stream": false}')
        assert (status, reason, headers["retry-after"]) == (599, "Unknown", "2")


@pytest.mark.parametrize("headers, connection", [({}, "close"), ({"Connection": "keep-alive"}, "keep-alive")])
def test_http_1_0_closes_unless_asked_to_keep_alive(headers: dict[str, str], connection: str) -> None:
    with LoopbackServer([CompletionResponse({"choices": []})]) as srv:
        status, _, got, _ = post(srv.port, b"{}", version=10, headers=headers)
        assert status == 200 and got["connection"] == connection


def test_request_bodies_are_recorded_as_they_came() -> None:
    done: Any = {"choices": []}
    with LoopbackServer([CompletionResponse(done)] * 3) as srv:
        for body in (b"not json", b"[1, 2]", b'{"model": "m"}'):
            assert post(srv.port, body)[0] == 200
        assert [r.body for r in srv.requests] == [{"_unparsed": "not json"}, {"_json": [1, 2]}, {"model": "m"}]


def test_what_the_server_refuses() -> None:
    with pytest.raises(TypeError, match="not a replayable response"):
        LoopbackServer(["hello"])  # type: ignore[list-item]
    srv = LoopbackServer([]).start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            srv.start()
    finally:
        srv.close()
    srv.close()  # a second close does nothing
