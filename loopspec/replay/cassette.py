"""Cassettes: everything the outside world said during one turn, as a versioned YAML file.

The one place callers import cassettes from: the model (:mod:`.cassette_model`), reading and
checking a file (:mod:`.cassette_reader`) and writing one (:mod:`.cassette_writer`).
"""

from __future__ import annotations

from .cassette_model import (
    CASSETTE_VERSION,
    TOP_KEYS,
    INTERACTION_FORMS,
    FAULT_KEYS,
    EXPECT_KEYS,
    PROPERTIES,
    ToolSpec,
    ToolOutcome,
    Bound,
    CancelPoint,
    RequestOptions,
    RequestExpectation,
    Expectations,
    RecordedStep,
    Cassette,
    CassetteError,
)
from .cassette_reader import find_cassettes, load_cassette, read_cassette, read_cassette_text
from .cassette_writer import cassette_to_data, dump_cassette, interaction_to_data, store_trace, write_cassette

__all__ = [
    "Bound",
    "CancelPoint",
    "RequestOptions",
    "CASSETTE_VERSION",
    "Cassette",
    "CassetteError",
    "EXPECT_KEYS",
    "Expectations",
    "FAULT_KEYS",
    "INTERACTION_FORMS",
    "PROPERTIES",
    "RecordedStep",
    "RequestExpectation",
    "TOP_KEYS",
    "ToolOutcome",
    "ToolSpec",
    "cassette_to_data",
    "dump_cassette",
    "find_cassettes",
    "interaction_to_data",
    "load_cassette",
    "read_cassette",
    "read_cassette_text",
    "store_trace",
    "write_cassette",
]
