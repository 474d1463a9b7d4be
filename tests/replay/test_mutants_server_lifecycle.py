"""The loopback replay server's life: construction, start, and a shutdown that ends every handler
(docs/quality.md, `replay/server.py`, the whole-module analysis). Each test was written against
planted mutations the server's other tests let through, and fails on them.

A shutdown that goes wrong on the server's own thread never reaches the caller: the connection is
dropped either way. So the tests watch that thread (its uncaught exceptions, through
``threading.excepthook``) and the handler tasks it leaves (asyncio reports a task destroyed while
still pending when it is collected).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import threading
from typing import Any

import pytest

from loopspec.replay.interactions import StreamResponse
from loopspec.replay.server import LoopbackServer

from test_mutants_server import CHUNKS, STREAM, post, read_events, server_threads


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """Exceptions that escape any thread while the test runs."""
    caught: list[BaseException] = []

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            caught.append(args.exc_value)

    monkeypatch.setattr(threading, "excepthook", hook)
    return caught


def test_a_new_server_plays_pauses_as_recorded_and_has_no_port_until_it_starts() -> None:
    """Pauses are served as long as recorded unless a scale is given, and ``port`` (so
    ``api_base``) is 0 until ``start`` binds an ephemeral one."""
    srv = LoopbackServer([])
    assert srv.time_scale == 1.0
    assert (srv.port, srv.api_base) == (0, "http://127.0.0.1:0/v1")
    with srv:
        assert srv.port > 0


@pytest.mark.parametrize("scale", [0, -1.0, float("nan")])
def test_a_scale_that_is_not_positive_is_refused_in_plain_words(scale: float) -> None:
    with pytest.raises(ValueError, match=r"^time_scale must be positive$"):
        LoopbackServer([], time_scale=scale)


def test_starting_twice_is_refused_in_plain_words() -> None:
    with LoopbackServer([]) as srv:
        with pytest.raises(RuntimeError, match=r"^LoopbackServer already started$"):
            srv.start()


def test_the_server_thread_is_a_daemon_so_a_server_left_open_never_keeps_a_process_alive() -> None:
    before = server_threads()
    with LoopbackServer([]):
        started = [t for t in server_threads() if t not in before]
        assert len(started) == 1 and started[0].daemon
    assert not started[0].is_alive(), "close ends the thread"


def test_two_servers_at_once_each_bind_a_port_of_their_own() -> None:
    with LoopbackServer([]) as a, LoopbackServer([]) as b:
        assert a.port != b.port and a.port > 0 and b.port > 0


def test_closing_ends_a_handler_held_in_a_stall_on_the_servers_own_thread_without_error(
        thread_errors: list[BaseException], caplog: pytest.LogCaptureFixture) -> None:
    """A client waits in a 30 s pause when the server closes: its handler is cancelled and ends
    (no task is left pending for asyncio to destroy), the shutdown raises nothing on the server's
    thread, and the thread is gone when ``close`` returns."""
    resp = StreamResponse(chunks=tuple(CHUNKS), stall_after=2, stall_seconds=30.0)
    before = server_threads()
    srv = LoopbackServer([resp]).start()
    (thread,) = [t for t in server_threads() if t not in before]
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        s.sendall(post(STREAM))
        read_events(s, 2)
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            srv.close()
            assert not thread.is_alive()
            gc.collect()
        assert thread_errors == []
        assert not [r for r in caplog.records if "pending" in r.getMessage()], "every handler ended before the loop closed"
    finally:
        s.close()


def test_a_bind_that_never_finishes_fails_start_within_seconds_and_leaves_nothing_running(
        monkeypatch: pytest.MonkeyPatch, thread_errors: list[BaseException], caplog: pytest.LogCaptureFixture) -> None:
    """``start`` waits a bounded time for the port: a bind that hangs raises a timeout, the bind
    is cancelled rather than left pending, the server's thread is stopped, and its shutdown copes
    with a server that never bound."""
    async def hangs(self: Any) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(LoopbackServer, "_bind", hangs)
    before = server_threads()
    srv = LoopbackServer([])
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        with pytest.raises(TimeoutError):
            srv.start()
        gc.collect()
    assert not server_threads() - before
    assert thread_errors == []
    assert not [r for r in caplog.records if "pending" in r.getMessage()], "the bind was cancelled"
