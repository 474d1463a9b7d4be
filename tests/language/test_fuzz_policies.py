"""Fuzzing the loader and validator with mutated policies: no input ever raises."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loopspec import validate_text

from _paths import DEFAULT_POLICY

LINES = DEFAULT_POLICY.read_text().splitlines(keepends=True)


@st.composite
def mutated_policy(draw: st.DrawFn) -> str:
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "splice", "indent", "dedent"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "splice":
            junk = draw(st.text(alphabet=st.sampled_from(list("{}[]:-&*!|>'\"#\t x0_\\")), max_size=6))
            pos = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:pos] + junk + lines[i][pos:]
        elif op == "indent":
            lines[i] = "  " + lines[i]
        else:
            lines[i] = lines[i][2:] if lines[i].startswith("  ") else lines[i]
        if not lines:
            break
    return "".join(lines)


@given(mutated_policy())
def test_validator_never_raises_on_mutated_policies(text: str) -> None:
    """Property: for any mutation of default.yaml, validation returns a policy or diagnostics that
    name the file, never an exception; an invalid result always carries at least one error."""
    policy, diags = validate_text(text, "mutant.yaml")
    assert all(d.file == "mutant.yaml" for d in diags)
    if policy is None:
        assert any(d.severity == "error" for d in diags)
    for d in diags:
        assert d.format().startswith("mutant.yaml")


@given(st.binary(max_size=300))
def test_validator_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    """Property: arbitrary bytes decoded leniently never make the validator raise."""
    policy, diags = validate_text(raw.decode("latin-1"), "noise.yaml")
    assert policy is None and diags
