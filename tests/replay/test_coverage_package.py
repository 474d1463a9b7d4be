"""``loopspec.replay`` loads the loopback server only when one of its names is asked for, and an
unknown name is an AttributeError naming it (what ``hasattr`` and ``from ... import`` rely on)."""

from __future__ import annotations

import pytest

import loopspec.replay as replay_pkg


def test_server_names_resolve_lazily_and_unknown_names_raise() -> None:
    from loopspec.replay import server

    assert replay_pkg.LoopbackServer is server.LoopbackServer
    with pytest.raises(AttributeError, match="module 'loopspec.replay' has no attribute 'nothing_here'"):
        getattr(replay_pkg, "nothing_here")
    assert not hasattr(replay_pkg, "nothing_here")
