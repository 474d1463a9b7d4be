"""Compatibility: the turn loop lives in :mod:`.turn`, its result types in :mod:`.results`."""

from __future__ import annotations

from .requests import build_request, record_of
from .results import RequestRecord, TraceStep, TurnResult, TurnUsage
from .turn import DEFAULT_MAX_STEPS, STEP_LIMIT_MESSAGE, Turn, run_turn, run_turn_sync

__all__ = [
    "DEFAULT_MAX_STEPS",
    "STEP_LIMIT_MESSAGE",
    "RequestRecord",
    "TraceStep",
    "Turn",
    "TurnResult",
    "TurnUsage",
    "build_request",
    "record_of",
    "run_turn",
    "run_turn_sync",
]
