"""A turn's configuration: the one value the step rules read and produce."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    """Where a turn is: its state, every counter's value (by :attr:`Policy.counter_names`) and set flags."""

    state: str
    counters: tuple[int, ...]
    flags: frozenset[str]
