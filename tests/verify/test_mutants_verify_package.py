"""The checker package's lazy names: each is the object its module defines, loaded on first use.

Written against the mutation run's survivors in ``loopspec/verify/__init__.py``: the first access
of a name happens when some test's import runs, before mutmut maps tests to functions, so these
tests forget the loaded names and read every one afresh."""

from __future__ import annotations

import importlib

import pytest

import loopspec.verify as verify


@pytest.fixture()
def fresh() -> object:
    """The package as a fresh import sees it: no lazy name loaded yet (they load again, the same
    objects, from the modules already imported)."""
    for name in verify.__all__:
        vars(verify).pop(name, None)
    return verify


def test_every_lazy_name_is_its_modules_object_and_is_kept(fresh: object) -> None:
    expected = {
        "check_policy": "checker", "check_file": "checker", "estimate_space": "checker",
        "CheckResult": "report", "PropertyResult": "report", "Figure": "report",
        "Counterexample": "counterexample", "CexStep": "counterexample",
    }
    assert verify.__all__ == sorted(expected)
    for name, module in expected.items():
        assert name not in vars(verify)
        value = getattr(verify, name)
        assert value is getattr(importlib.import_module(f"loopspec.verify.{module}"), name)
        assert vars(verify)[name] is value  # kept: the next access does not import again


def test_an_unknown_name_is_an_attribute_error_naming_it(fresh: object) -> None:
    with pytest.raises(AttributeError, match=r"^module 'loopspec.verify' has no attribute 'nope'$"):
        verify.nope  # noqa: B018
    assert not hasattr(verify, "check_nothing")
