"""What ``loopspec validate`` prints for default.yaml's size, computed, so tests don't pin it."""

from loopspec import load_policy

from _paths import DEFAULT_POLICY

_policy = load_policy(str(DEFAULT_POLICY))
SIZE = f"{len([s for s in _policy.states if not s.startswith('__')])} states, {len(_policy.counters)} counters"
