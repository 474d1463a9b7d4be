"""The live path prices each reply with litellm's local cost map; a model missing from it leaves the
cost unknown, and a cost the provider reported itself is kept."""

from __future__ import annotations

import pytest

from loopspec.providers.litellm_provider import priced
from loopspec.wire.deltas import Delta, Usage


def test_a_known_model_is_priced_from_the_local_cost_map() -> None:
    import litellm

    want = sum(litellm.cost_per_token(model="openai/gpt-4o-mini", prompt_tokens=1000, completion_tokens=100))
    got = priced(Delta(usage=Usage(1000, 100)), "openai/gpt-4o-mini").usage
    assert got is not None and got.cost == pytest.approx(want) and want > 0


def test_a_model_missing_from_the_map_has_unknown_cost() -> None:
    got = priced(Delta(usage=Usage(1000, 100)), "openai/no-such-model-anywhere").usage
    assert got is not None and got.cost is None and got.prompt_tokens == 1000


def test_a_cost_the_provider_reported_is_kept() -> None:
    got = priced(Delta(usage=Usage(1000, 100, 0, 0.5)), "openai/gpt-4o-mini").usage
    assert got is not None and got.cost == 0.5


def test_a_delta_without_usage_is_left_alone() -> None:
    d = Delta(text="hi")
    assert priced(d, "openai/gpt-4o-mini") is d


def test_the_recorder_writes_the_live_price_into_the_usage_chunk() -> None:
    """So that replay charges what the live run was charged, without litellm's cost map."""
    from loopspec.replay.recorder import priced_chunk

    chunk = {"choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}
    live = priced(Delta(usage=Usage(1000, 100)), "openai/gpt-4o-mini").usage
    assert live is not None
    assert priced_chunk(chunk, "openai/gpt-4o-mini")["usage"]["cost"] == live.cost
    assert "cost" not in priced_chunk(chunk, "openai/no-such-model-anywhere")["usage"]
    assert priced_chunk({"usage": {"prompt_tokens": 1, "cost": 0.25}}, "openai/gpt-4o-mini")["usage"]["cost"] == 0.25
    assert "cost" not in chunk["usage"], "the chunk the turn saw is not changed"


def test_a_recording_slot_keeps_the_priced_chunk() -> None:
    from loopspec.replay.recorder import _Slot

    slot = _Slot(lambda: 0.0, model="openai/gpt-4o-mini")
    slot.add({"choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 100}})
    slot.finish()
    assert slot.chunks[0]["usage"]["cost"] > 0


def test_an_unknown_model_is_looked_up_once_and_stays_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cost map is local and fixed while the process runs: a model it does not know is not
    asked about again (each lookup raises inside litellm), and a known one is still priced."""
    import loopspec.providers.litellm_provider as lp

    asked: list[str] = []
    real = lp.import_litellm().cost_per_token

    def counting(**kw: object) -> object:
        asked.append(str(kw["model"]))
        return real(**kw)

    monkeypatch.setattr(lp.import_litellm(), "cost_per_token", counting)
    monkeypatch.setattr(lp, "_UNPRICED", set())
    d = Delta(usage=Usage(prompt_tokens=10, completion_tokens=5))
    assert [priced(d, "openai/no-such-model-xyz").usage.cost for _ in range(3)] == [None, None, None]
    assert asked == ["openai/no-such-model-xyz"]
    assert priced(d, "openai/gpt-4o-mini").usage.cost is not None
