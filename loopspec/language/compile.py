"""Compiling a policy document: read every section, resolve every name, and build the immutable
:class:`~loopspec.language.model.Policy`, or None with every diagnostic when the document is invalid.
"""

from __future__ import annotations

import dataclasses

from typing import Any

import loopspec.language.codes as codes
from .alphabet import CALL_FLAGS, KINDS, SUPPORTED_VERSION, TOP_KEYS
from .declarations import Declarations
from .diagnostics import Diagnostic, Position
from .model import POLICY_ERROR_MESSAGE, POLICY_ERROR_STATE, Policy, State, frozen_map
from .read_approvals import ApprovalReader
from .read_budgets import BudgetReader
from .read_states import StateReader
from .reader import type_name
from .yamlsource import YMap


class Compiler(Declarations, StateReader, ApprovalReader, BudgetReader):
    """Reads a whole policy document, section by section, into a :class:`Policy`."""

    def run(self, doc: Any) -> Policy | None:
        root = self.expect_map(doc, "", Position(1, 1), "a policy file's top level")
        if root is None:
            self.diags[-1] = Diagnostic(
                codes.WRONG_TYPE,
                f"a policy must be a mapping at the top level, got {type_name(doc)}",
                self.file,
                "",
                Position(1, 1),
                "start from machines/default.yaml: keys loopspec, name, initial, counters, states, ...",
            )
            return None
        self.unknown_keys(root, TOP_KEYS, "", "the policy")
        version = root.get("loopspec")
        if version is None:
            self.error(codes.MISSING_KEY, "missing 'loopspec: 1' (the language version)", "loopspec", root.pos)
        elif version != SUPPORTED_VERSION:
            self.error(
                codes.OUT_OF_RANGE,
                f"unsupported language version {version!r}",
                "loopspec",
                root.pos_of("loopspec"),
                f"this loopspec reads version {SUPPORTED_VERSION}",
            )
        name = root.get("name", "policy")
        if not isinstance(name, str):
            self.error(codes.WRONG_TYPE, "name must be a string", "name", root.pos_of("name"))
            name = "policy"
        doc_text = root.get("doc", "")
        if not isinstance(doc_text, str):
            self.error(codes.WRONG_TYPE, "doc must be a string", "doc", root.pos_of("doc"))
            doc_text = ""

        self.templates = self.read_templates(root)
        self.backoff = self.read_backoff(root)
        self.flags = self.read_flags(root)
        self.counters = self.read_counters(root)
        self.settings = self.read_settings(root)
        if self.max_wait is not None:
            self.settings = dataclasses.replace(self.settings, max_wait=self.max_wait)
        self.guardrails = self.read_guardrails(root)
        approvals = self.read_approvals(root)

        states_node = root.get("states")
        if states_node is None:
            self.error(codes.MISSING_KEY, "missing 'states'", "states", root.pos, "a policy needs states")
            return None
        states_map = self.expect_map(states_node, "states", root.pos_of("states"), "states")
        if states_map is None:
            return None
        self.state_kinds: dict[str, str] = {}
        for sname, sbody in states_map.items():
            self.name_ok(sname, f"states.{sname}", states_map.key_pos[sname], "state")
            kind = sbody.get("kind") if isinstance(sbody, YMap) else None
            if isinstance(kind, str) and kind in KINDS:
                self.state_kinds[str(sname)] = kind
            else:  # read_state reports why; references to it, even earlier ones, point there
                self.dropped.setdefault(("state", str(sname)), states_map.key_pos[sname])
        self.backstops = self.read_backstops(root)
        self.budgets = self.read_budgets(root)

        initial = root.get("initial")
        if initial is None:
            self.error(codes.MISSING_KEY, "missing 'initial' (the state a turn starts in)", "initial", root.pos)
        elif initial not in self.state_kinds:
            self.error(
                codes.UNKNOWN_NAME,
                f"initial state '{initial}' is not defined",
                "initial",
                root.pos_of("initial"),
                self.unknown("state", initial, self.state_kinds),
            )
        elif self.state_kinds[initial] == "stream":
            self.warn(
                codes.STREAM_WITHOUT_RESPONSE,
                f"initial state '{initial}' is a stream state, and a turn starts with no response open: it hears 'broken'",
                "initial",
                root.pos_of("initial"),
                "start the turn in a call state",
            )

        states: dict[str, State] = {}
        for sname, sbody in states_map.items():
            state = self.read_state(str(sname), sbody, states_map)
            if state is not None:
                states[state.name] = state
        if self.has_errors():
            return None
        states.setdefault(
            POLICY_ERROR_STATE,
            State(POLICY_ERROR_STATE, "halt", frozen_map({}), outcome="policy_error", message=POLICY_ERROR_MESSAGE),
        )
        index = {c.name: c.index for c in self.counters}
        return Policy(
            name=name,
            file=self.file,
            initial=str(initial),
            states=frozen_map(states),
            counters=tuple(self.counters),
            flags=frozenset(self.flags) | frozenset(CALL_FLAGS),
            templates=frozen_map(self.templates),
            backoff=frozen_map(self.backoff),
            backstops=frozen_map(self.backstops),
            budgets=frozen_map(self.budgets),
            guardrails=frozen_map(self.guardrails),
            settings=self.settings,
            doc=doc_text,
            _counter_index=frozen_map(index),
            approvals=approvals,
        )


def compile_document(doc: Any, file: str) -> tuple[Policy | None, list[Diagnostic]]:
    """Check and compile a loaded YAML document; diagnostics root causes first."""
    v = Compiler(file)
    policy = v.run(doc)
    return policy, v.ordered()
