"""The engine: runs one turn of a compiled policy by carrying out its Steps (the interpreter), with
the tools, history, clocks, guardrail detectors and consumers a turn needs, and the ``transitions``
machine that hosts each turn. The wire types it consumes live in :mod:`loopspec.wire`."""
