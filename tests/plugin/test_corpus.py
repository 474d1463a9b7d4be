"""The incident corpus through the pytest plugin: one test per cassette, decisions snapshotted.

The snapshot (tests/plugin/__snapshots__/test_corpus.ambr) is the reviewed decision path of every incident
under machines/default.yaml; a policy edit that changes a path shows up as a snapshot diff.
"""

from __future__ import annotations


def test_cassette_passes_under_default_policy(loopspec_replay, snapshot) -> None:  # type: ignore[no-untyped-def]
    assert loopspec_replay.verdict == "pass", loopspec_replay.explain()
    assert loopspec_replay.decisions == snapshot
