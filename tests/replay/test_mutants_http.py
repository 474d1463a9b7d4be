"""The HTTP transport's time scaling, on known recordings (docs/quality.md, `replay/http.py`).

The transport tests replay whole cassettes at one scale, where a stall served ten times too long or
not at all still ends as a stall. Here `scaled` is held to exact pauses.
"""

from __future__ import annotations

from loopspec.replay.http import scaled
from loopspec.replay.interactions import ErrorResponse, StreamResponse

CHUNKS = ({"choices": [{"index": 0, "delta": {"content": "hi"}}]},)


def test_a_stall_is_scaled_by_the_factor() -> None:
    stall = StreamResponse(chunks=CHUNKS, stall_after=1, stall_seconds=20.0)
    (out,) = scaled([stall], 0.01)
    assert out == StreamResponse(chunks=CHUNKS, stall_after=1, stall_seconds=0.2)


def test_everything_else_is_served_as_recorded() -> None:
    plain = StreamResponse(chunks=CHUNKS, stall_seconds=20.0)  # no stall_after: the pause is never served
    error = ErrorResponse(status=429, body={"error": {"message": "slow down"}})
    assert scaled([plain, error], 0.01) == [plain, error]
