"""The reader's limits hold to the node, whichever way a node is read: the 64-level nesting limit
(LS104) and the 50,000-node limit (LS105) count a plain string key, value or item taken in place
exactly as any other node."""

from __future__ import annotations

import pytest

from loopspec.language import codes
from loopspec.language.diagnostics import Position
from loopspec.language.yamlsource import MAX_DEPTH, MAX_NODES, LoadError, load_yaml_text


def nested(levels: int, leaf: str) -> str:
    """``levels`` mappings one inside the next (the root is level 0), the innermost holding
    ``k: leaf``: the leaf string stands at depth ``levels``."""
    return "".join("  " * i + "k:\n" for i in range(levels - 1)) + "  " * (levels - 1) + f"k: {leaf}\n"


def load_code(text: str) -> str | None:
    try:
        load_yaml_text(text, "limits.yaml")
    except LoadError as exc:
        return exc.diagnostic.code
    return None


def test_a_string_at_the_deepest_allowed_level_loads_and_one_level_deeper_is_ls104() -> None:
    """A string value at depth 64 is read; at depth 65 it is refused as too deep."""
    assert load_code(nested(MAX_DEPTH, "leaf")) is None
    assert load_code(nested(MAX_DEPTH + 1, "leaf")) == codes.TOO_DEEP


def test_a_string_item_one_level_too_deep_is_ls104() -> None:
    """The same limit for a list item: ``[leaf]`` as the innermost value puts the item one deeper."""
    assert load_code(nested(MAX_DEPTH - 1, "[leaf]")) is None
    assert load_code(nested(MAX_DEPTH, "[leaf]")) == codes.TOO_DEEP


@pytest.mark.parametrize("extra", [0, 1])
def test_string_keys_and_values_count_toward_the_node_limit(extra: int) -> None:
    """A flat mapping of string pairs is 1 + 2n nodes: 49,999 load, 50,001 are LS105."""
    pairs = (MAX_NODES - 1) // 2 + extra
    text = "".join(f"k{i}: v\n" for i in range(pairs))
    assert load_code(text) == (codes.TOO_MANY_NODES if extra else None)


@pytest.mark.parametrize("extra", [0, 1])
def test_string_items_count_toward_the_node_limit(extra: int) -> None:
    """A list of n strings is 1 + n nodes: 50,000 load, 50,001 are LS105."""
    text = "".join("- v\n" for _ in range(MAX_NODES - 1 + extra))
    assert load_code(text) == (codes.TOO_MANY_NODES if extra else None)


def test_a_last_string_key_past_the_node_limit_is_ls105() -> None:
    """The key itself is the node past the limit: the root and 24,998 string pairs (49,997 nodes),
    ``last: [x]`` (50,000), then the key ``more`` is node 50,001."""
    pairs = (MAX_NODES - 1) // 2
    text = "".join(f"k{i}: v\n" for i in range(pairs - 1)) + "last: [x]\n"
    assert load_code(text) is None
    with pytest.raises(LoadError) as raised:
        load_yaml_text(text + "more: {}\n", "limits.yaml")
    assert raised.value.diagnostic.code == codes.TOO_MANY_NODES
    assert raised.value.diagnostic.pos == Position(pairs + 1, 1)  # the key, not its value at col 7
