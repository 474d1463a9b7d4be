"""``loopspec check``: prove that every path of a policy halts, bound its cost, check its properties.

Entry points: :func:`check_policy` (a compiled :class:`~loopspec.language.model.Policy`) and
:func:`check_file`. Both return a :class:`~loopspec.verify.report.CheckResult`.

The route (docs/design.md, "What is proven, and how"):

1. :mod:`.abstraction` builds the reachable abstract graph by calling the model's own
   :meth:`Policy.step` on representative configurations and events (one semantics); the events
   come from :mod:`.cases` (the outcome search over :mod:`.selection`, with values from
   :mod:`.witnesses`, :mod:`.witness_numbers`, :mod:`.witness_strings` and :mod:`.atoms`);
2. :mod:`.structure` reads the structural findings off it;
3. :mod:`.termination` proves termination by counter elimination and bounds model calls and tool
   batches from the elimination order; it names the loops bounded only by a backstop;
4. :mod:`.properties` defines the monitor whose violations the abstract graph collects;
5. the concrete searches (:mod:`.explore` re-exports them all) look for the shortest
   counterexample of any finding (:mod:`.reach`, over the nodes of :mod:`.concrete`, with the one
   breadth-first search of :mod:`.search`), enumerate small policies completely and find lassos
   (:mod:`.enumeration`), and find runs that make the upper bounds exact (:mod:`.witness`);
   their results are :mod:`.counterexample` objects;
6. :mod:`.checker` puts them together, deciding each property in :mod:`.deciders` (choosing among
   counterexamples in :mod:`.choice`, with abstract fallbacks from :mod:`.abstract_runs`);
   :mod:`.report` renders the result;
7. :mod:`.to_cassette` turns a counterexample into a cassette (recordings of one event in
   :mod:`.event_options`, the :class:`~.realiser.Realiser` world model, tool scripts in
   :mod:`.tool_scripts`, planning in :mod:`.cassette_plan`).

Importing this package is cheap: the checker loads on first use, so ``loopspec validate`` and the
command-line parser never pay for it.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "check_policy": "checker",
    "check_file": "checker",
    "estimate_space": "checker",
    "CheckResult": "report",
    "PropertyResult": "report",
    "Figure": "report",
    "Counterexample": "counterexample",
    "CexStep": "counterexample",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loopspec.verify' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
