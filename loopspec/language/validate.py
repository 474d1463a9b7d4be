"""Validate a loaded policy document and compile it into a :class:`~loopspec.language.model.Policy`.

All spec quality comes from here: ``transitions`` checks almost nothing at build time (a misspelt
target fails only when it fires), so every name is resolved now, every error is reported (not just
the first) with ``file:line:col``, and misspelt names get a did-you-mean hint.
"""

from __future__ import annotations

import string
from typing import Any, TypeGuard

from . import codes
from .alphabet import (
    ACTION_KEYS,
    ACTION_NAMES,
    ACTIONS_WITH_ARG,
    ATTR_OPS,
    BACKSTOP_KEYS,
    BACKSTOP_KIND,
    BACKSTOPS,
    CALL_FLAGS,
    COMPARATORS,
    COUNTER_KEYS,
    FLAG_KEYS,
    FLAG_SHORTHANDS,
    GUARD_FORMS,
    GUARDRAIL_CODES,
    GUARDRAIL_KEYS,
    KINDS,
    NAME_RE,
    OUTCOMES,
    SETTINGS_KEYS,
    STATE_KEYS,
    SUPPORTED_VERSION,
    TOP_KEYS,
    TRANSITION_KEYS,
    VERDICTS,
    template_variables,
)
from .diagnostics import Diagnostic, Position, article, did_you_mean
from .model import (
    POLICY_ERROR_MESSAGE,
    POLICY_ERROR_STATE,
    Action,
    AllOf,
    Always,
    AnyOf,
    Append,
    AttrTest,
    Backoff,
    Backstop,
    Compact,
    Counter,
    CounterCmp,
    DropToolCalls,
    FlagIs,
    Guard,
    Guardrail,
    Increment,
    Not,
    Policy,
    RefuseTools,
    Reset,
    SetFlag,
    Settings,
    State,
    Transition,
    frozen_map,
)
from .reader import DocumentReader, type_name
from .yamlsource import LoadError, YList, YMap, load_yaml_file, load_yaml_text



class _Validator(DocumentReader):
    def __init__(self, file: str) -> None:
        super().__init__(file)
        self.causes: set[int] = set()
        """Indices into ``diags`` of errors that made a declaration drop out of the policy."""
        self.dropped: dict[tuple[str, str], Position | None] = {}
        """(what, name) of each declaration left out because it is invalid, with where it is."""

    # -- reporting --------------------------------------------------------------------------

    def drop(self, since: int, what: str, name: Any, pos: Position | None) -> None:
        """The declaration ``name`` is left out because of the errors reported since ``since``.

        Those errors are root causes: every later use of the name fails too ("unknown state",
        "unknown counter"), so they are listed first, and the later errors' hints point back here.
        """
        self.causes.update(range(since, len(self.diags)))
        if isinstance(name, str):
            self.dropped.setdefault((what, name), pos)

    def unknown(self, what: str, name: Any, known: Any) -> str:
        """The hint for an unknown name: where it was declared if its declaration was left out."""
        if isinstance(name, str) and (what, name) in self.dropped:
            pos = self.dropped[(what, name)]
            where = f" (line {pos.line})" if pos is not None else ""
            return f"{what} '{name}'{where} is left out because its declaration is invalid; fix that error first"
        return did_you_mean(name, known)

    def ordered(self) -> list[Diagnostic]:
        """Root causes first, then the other errors, then warnings; by position within each."""

        def key(item: tuple[int, Diagnostic]) -> tuple[int, int, int, int]:
            i, d = item
            rank = 0 if i in self.causes else 1 if d.severity == "error" else 2
            line, col = (d.pos.line, d.pos.col) if d.pos is not None else (0, 0)
            return (rank, line, col, i)

        return [d for _, d in sorted(enumerate(self.diags), key=key)]

    def error(self, code: str, message: str, path: str, pos: Position | None, hint: str = "") -> None:
        self.report(code, message, path, pos, hint)

    def warn(self, code: str, message: str, path: str, pos: Position | None, hint: str = "") -> None:
        self.diags.append(Diagnostic(code, message, self.file, path, pos, hint, severity="warning"))

    def name_ok(self, name: Any, path: str, pos: Position | None, what: str) -> bool:
        if isinstance(name, str) and NAME_RE.match(name):
            return True
        self.error(
            codes.BAD_NAME,
            f"{what} name {name!r} is not a valid name",
            path,
            pos,
            "use lower_snake_case: a letter, then letters, digits or underscores",
        )
        return False

    def int_in(self, value: Any, path: str, pos: Position | None, what: str, lo: int, hi: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(codes.WRONG_TYPE, f"{what} must be an integer, got {type_name(value)}", path, pos)
            return None
        if not lo <= value <= hi:
            self.error(codes.OUT_OF_RANGE, f"{what} must be between {lo} and {hi}, got {value}", path, pos)
            return None
        return value

    # -- document ---------------------------------------------------------------------------

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
        self.guardrails = self.read_guardrails(root)

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
            guardrails=frozen_map(self.guardrails),
            settings=self.settings,
            doc=doc_text,
            _counter_index=frozen_map(index),
        )

    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diags)

    # -- sections -----------------------------------------------------------------------------

    def section(self, root: YMap, key: str, what: str) -> YMap | None:
        """An optional top-level mapping: None when absent (nothing to read) or not a mapping (reported)."""
        node = root.get(key)
        if node is None:
            return None
        return self.expect_map(node, key, root.pos_of(key), what)

    def read_templates(self, root: YMap) -> dict[str, str]:
        out: dict[str, str]= {}
        m = self.section(root, "templates", "templates")
        if m is None:
            return out
        for key, text in m.items():
            path = f"templates.{key}"
            n = len(self.diags)
            if not self.name_ok(key, path, m.key_pos[key], "template"):
                self.drop(n, "template", key, m.key_pos[key])
                continue
            if not isinstance(text, str):
                self.error(codes.WRONG_TYPE, "a template must be a string", path, m.pos_of(key))
                self.drop(n, "template", key, m.key_pos[key])
                continue
            self.check_template(text, path, m.pos_of(key))
            out[key] = text
        return out

    def check_template(self, text: str, path: str, pos: Position | None) -> None:
        known = template_variables()
        try:
            parts = list(string.Formatter().parse(text))
        except ValueError as exc:
            self.error(codes.BAD_TEMPLATE, f"bad template: {exc}", path, pos, "write a literal brace as {{ or }}")
            return
        for _lit, field, spec, conv in parts:
            if field is None:
                continue
            if not NAME_RE.match(field or "") or spec or conv:
                self.error(
                    codes.BAD_TEMPLATE,
                    f"template field '{{{field}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}' is not allowed",
                    path,
                    pos,
                    "templates substitute plain names only, e.g. {dropped_tools}; no attribute, index or format access",
                )
            elif field not in known:
                self.error(
                    codes.UNKNOWN_TEMPLATE_VARIABLE,
                    f"unknown template variable '{field}'",
                    path,
                    pos,
                    did_you_mean(field, known),
                )

    def read_backoff(self, root: YMap) -> dict[str, tuple[float, ...]]:
        out: dict[str, tuple[float, ...]]= {}
        m = self.section(root, "backoff", "backoff")
        if m is None:
            return out
        for key, seq in m.items():
            path = f"backoff.{key}"
            n = len(self.diags)
            if not self.name_ok(key, path, m.key_pos[key], "backoff schedule"):
                self.drop(n, "backoff schedule", key, m.key_pos[key])
                continue
            lst = self.expect_list(seq, path, m.pos_of(key), "a backoff schedule (seconds per attempt)")
            if lst is None:
                self.drop(n, "backoff schedule", key, m.key_pos[key])
                continue
            if not lst:
                self.error(codes.OUT_OF_RANGE, "a backoff schedule needs at least one delay", path, m.pos_of(key))
            delays: list[float] = []
            for i, v in enumerate(lst):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v > 86400:
                    self.error(codes.OUT_OF_RANGE, f"delay {v!r} must be seconds between 0 and 86400", f"{path}[{i}]", lst.pos_of(i))
                else:
                    delays.append(float(v))
            out[key] = tuple(delays)
        return out

    def read_flags(self, root: YMap) -> set[str]:
        out: set[str]= set()
        m = self.section(root, "flags", "flags (name: {doc: ...})")
        if m is None:
            return out
        for key, body in m.items():
            path = f"flags.{key}"
            n = len(self.diags)
            if not self.name_ok(key, path, m.key_pos[key], "flag"):
                self.drop(n, "flag", key, m.key_pos[key])
                continue
            if key in CALL_FLAGS:
                self.error(codes.RESERVED_NAME, f"flag '{key}' is built in; do not declare it", path, m.key_pos[key])
            if body is not None:
                b = self.expect_map(body, path, m.pos_of(key), "a flag")
                if b is not None:
                    self.unknown_keys(b, FLAG_KEYS, path, "a flag")
            out.add(key)
        return out

    def read_counters(self, root: YMap) -> list[Counter]:
        out: list[Counter] = []
        m = self.section(root, "counters", "counters")
        if m is not None:
            for key, body in m.items():
                path = f"counters.{key}"
                n = len(self.diags)
                if not self.name_ok(key, path, m.key_pos[key], "counter"):
                    self.drop(n, "counter", key, m.key_pos[key])
                    continue
                if key in BACKSTOPS:
                    self.error(
                        codes.RESERVED_NAME,
                        f"'{key}' is a backstop; configure it under 'backstops'",
                        path,
                        m.key_pos[key],
                    )
                    continue
                b = self.expect_map(body, path, m.pos_of(key), "a counter ({max: N})")
                if b is None:
                    self.drop(n, "counter", key, m.key_pos[key])
                    continue
                self.unknown_keys(b, COUNTER_KEYS, path, "a counter")
                if "max" not in b:
                    self.error(codes.MISSING_KEY, f"counter '{key}' needs a 'max'", path, b.pos, "every counter has a cap")
                    self.drop(n, "counter", key, m.key_pos[key])
                    continue
                cap = self.int_in(b["max"], f"{path}.max", b.pos_of("max"), "max", 1, 10_000)
                if cap is not None:
                    out.append(Counter(key, len(out), cap, str(b.get("doc", ""))))
                else:
                    self.drop(n, "counter", key, m.key_pos[key])
        return out

    def read_settings(self, root: YMap) -> Settings:
        m = self.section(root, "settings", "settings")
        if m is None:
            return Settings()
        self.unknown_keys(m, tuple(SETTINGS_KEYS), "settings", "settings")
        values: dict[str, Any] = {}
        for key, types in SETTINGS_KEYS.items():
            if key not in m or m[key] is None:
                continue
            v = m[key]
            if isinstance(v, bool) or not isinstance(v, types):
                self.error(codes.WRONG_TYPE, f"settings.{key} has the wrong type ({type_name(v)})", f"settings.{key}", m.pos_of(key))
                continue
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
                self.error(codes.OUT_OF_RANGE, f"settings.{key} must be positive", f"settings.{key}", m.pos_of(key))
                continue
            values[key] = v
        return Settings(**values)

    def read_guardrails(self, root: YMap) -> dict[str, Guardrail]:
        out: dict[str, Guardrail]= {}
        m = self.section(root, "guardrails", "guardrails")
        if m is None:
            return out
        for key, body in m.items():
            path = f"guardrails.{key}"
            if key not in GUARDRAIL_CODES:
                self.error(codes.UNKNOWN_NAME, f"unknown guardrail '{key}'", path, m.key_pos[key], did_you_mean(key, GUARDRAIL_CODES))
                continue
            b = self.expect_map(body, path, m.pos_of(key), "a guardrail")
            if b is None:
                continue
            self.unknown_keys(b, GUARDRAIL_KEYS, path, "a guardrail")
            threshold = self.int_in(b.get("threshold", 3), f"{path}.threshold", b.pos_of("threshold"), "threshold", 1, 1000)
            verdict = b.get("verdict", "halt")
            if verdict not in VERDICTS:
                self.error(codes.OUT_OF_RANGE, f"unknown verdict {verdict!r}", f"{path}.verdict", b.pos_of("verdict"), did_you_mean(verdict, VERDICTS))
                continue
            period = self.int_in(b.get("max_period", 5), f"{path}.max_period", b.pos_of("max_period"), "max_period", 1, 5)
            if threshold is not None and period is not None:
                out[key] = Guardrail(key, threshold, verdict, period)
        return out

    def read_backstops(self, root: YMap) -> dict[str, Backstop]:
        out: dict[str, Backstop] = {}
        node = root.get("backstops")
        if node is None:
            self.error(
                codes.MISSING_KEY,
                "missing 'backstops' (model_calls and tool_batches per turn)",
                "backstops",
                root.pos,
                "every policy declares both global backstops, e.g. model_calls: {max: 90, exhausted: halt_backstop}",
            )
            return out
        m = self.expect_map(node, "backstops", root.pos_of("backstops"), "backstops")
        if m is None:
            return out
        self.unknown_keys(m, tuple(BACKSTOPS), "backstops", "backstops")
        for name in BACKSTOPS:
            path = f"backstops.{name}"
            n = len(self.diags)
            if name not in m:
                self.error(codes.MISSING_KEY, f"missing backstop '{name}'", path, m.pos)
                continue
            b = self.expect_map(m[name], path, m.pos_of(name), "a backstop")
            if b is None:
                continue
            self.unknown_keys(b, BACKSTOP_KEYS, path, "a backstop")
            cap = self.int_in(b.get("max"), f"{path}.max", b.pos_of("max"), "max", 1, 100_000)
            exhausted = b.get("exhausted")
            kind = BACKSTOP_KIND[name]
            if exhausted is None:
                self.error(codes.MISSING_KEY, f"backstop '{name}' needs 'exhausted' (the state it ends in)", path, b.pos)
            elif self.ref_state(exhausted, f"{path}.exhausted", b.pos_of("exhausted")):
                ek = self.state_kinds[exhausted]
                if name == "model_calls" and ek != "halt":
                    self.error(
                        codes.WRONG_STATE_KIND,
                        f"model_calls.exhausted must be a halt state, '{exhausted}' is {article(ek)} state",
                        f"{path}.exhausted",
                        b.pos_of("exhausted"),
                        "use wrap_up for one last summary call, then halt",
                    )
                elif ek == kind:
                    self.error(
                        codes.WRONG_STATE_KIND,
                        f"{name}.exhausted cannot be {article(kind)} state: it would count against the spent backstop",
                        f"{path}.exhausted",
                        b.pos_of("exhausted"),
                    )
            wrap_up = b.get("wrap_up")
            if wrap_up is not None:
                if name != "model_calls":
                    self.error(codes.UNKNOWN_KEY, "wrap_up applies to model_calls only", f"{path}.wrap_up", b.pos_of("wrap_up"))
                elif self.ref_state(wrap_up, f"{path}.wrap_up", b.pos_of("wrap_up")):
                    if self.state_kinds[wrap_up] in ("call", "tool_exec", "halt"):
                        self.error(
                            codes.WRONG_STATE_KIND,
                            "wrap_up must be an escalate (or continue) state that prepares the last call",
                            f"{path}.wrap_up",
                            b.pos_of("wrap_up"),
                            "e.g. an escalate state with apply: [disable_tools, {append: summarize_now}]",
                        )
            warn_at = b.get("warn_at")
            warning = b.get("warning")
            if warn_at is not None and cap is not None:
                warn_at = self.int_in(warn_at, f"{path}.warn_at", b.pos_of("warn_at"), "warn_at", 1, cap)
                if warning is None:
                    self.error(codes.MISSING_KEY, "warn_at needs a 'warning' template", path, b.pos_of("warn_at"))
            if warning is not None:
                self.ref_template(warning, f"{path}.warning", b.pos_of("warning"))
            if cap is not None and isinstance(exhausted, str):
                out[name] = Backstop(name, cap, exhausted, wrap_up, warn_at, warning)
            else:
                self.drop(n, "counter", name, m.key_pos.get(name, m.pos))
        for name, bs in out.items():
            self.counters.append(Counter(name, len(self.counters), bs.max, BACKSTOPS[name], backstop=True))
        return out

    # -- references ---------------------------------------------------------------------------

    def ref_state(self, name: Any, path: str, pos: Position | None) -> bool:
        if isinstance(name, str) and name in self.state_kinds:
            return True
        self.error(codes.UNKNOWN_NAME, f"unknown state {name!r}", path, pos, self.unknown("state", name, self.state_kinds))
        return False

    def ref_template(self, name: Any, path: str, pos: Position | None) -> TypeGuard[str]:
        if isinstance(name, str) and name in self.templates:
            return True
        self.error(codes.UNKNOWN_NAME, f"unknown template {name!r}", path, pos, self.unknown("template", name, self.templates))
        return False

    def counter_names(self) -> list[str]:
        return [c.name for c in self.counters]

    def counter_by_name(self, name: Any, path: str, pos: Position | None) -> Counter | None:
        for c in self.counters:
            if c.name == name:
                return c
        self.error(codes.UNKNOWN_NAME, f"unknown counter {name!r}", path, pos, self.unknown("counter", name, self.counter_names()))
        return None

    def flag_ok(self, name: Any, path: str, pos: Position | None) -> TypeGuard[str]:
        known = self.flags | set(CALL_FLAGS)
        if isinstance(name, str) and name in known:
            return True
        self.error(codes.UNKNOWN_NAME, f"unknown flag {name!r}", path, pos, self.unknown("flag", name, known))
        return False

    # -- states -------------------------------------------------------------------------------

    def read_state(self, name: str, body: Any, parent: YMap) -> State | None:
        path = f"states.{name}"
        n = len(self.diags)
        b = self.expect_map(body, path, parent.pos_of(name), "a state")
        if b is None:
            self.drop(n, "state", name, parent.key_pos[name])
            return None
        kind = b.get("kind")
        if kind not in KINDS:
            if kind is None:
                self.error(codes.MISSING_KEY, f"state '{name}' needs a 'kind'", path, b.pos, f"one of: {', '.join(KINDS)}")
            else:
                self.error(codes.UNKNOWN_NAME, f"unknown state kind {kind!r}", f"{path}.kind", b.pos_of("kind"), did_you_mean(kind, KINDS))
            self.drop(n, "state", name, parent.key_pos[name])
            return None
        self.unknown_keys(b, STATE_KEYS[kind], path, f"{article(kind)} state")
        pos = parent.key_pos[name]
        doc = b.get("doc", "")
        if kind == "halt":
            outcome = b.get("outcome")
            if outcome not in OUTCOMES:
                self.error(
                    codes.UNKNOWN_NAME if outcome is not None else codes.MISSING_KEY,
                    f"halt state needs a known outcome, got {outcome!r}",
                    f"{path}.outcome",
                    b.pos_of("outcome"),
                    did_you_mean(outcome, OUTCOMES),
                )
            message = b.get("message")
            if not isinstance(message, str):
                self.error(
                    codes.MISSING_KEY,
                    "halt state needs a 'message' template (what every consumer is told)",
                    f"{path}.message",
                    b.pos_of("message"),
                    "e.g. message: \"{response}\" for a completed turn",
                )
            else:
                self.check_template(message, f"{path}.message", b.pos_of("message"))
                if not message.strip():
                    self.warn(
                        codes.EMPTY_HALT_MESSAGE,
                        f"halt '{name}' delivers an empty message",
                        f"{path}.message",
                        b.pos_of("message"),
                        "consumers would see nothing (hermes-agent #30770); say why the turn ended",
                    )
            return State(name, kind, frozen_map({}), doc=str(doc), outcome=outcome, message=message, pos=pos)

        prompt = None
        if kind == "continue":
            prompt = b.get("prompt")
            if prompt is None:
                self.error(codes.MISSING_KEY, "continue state needs a 'prompt' template", path, b.pos)
            else:
                self.ref_template(prompt, f"{path}.prompt", b.pos_of("prompt"))
        apply: tuple[Action, ...] = ()
        if kind == "escalate":
            raw = b.get("apply")
            if raw is None:
                self.error(codes.MISSING_KEY, "escalate state needs 'apply' (the actions it performs)", path, b.pos)
            else:
                lst = self.expect_list(raw, f"{path}.apply", b.pos_of("apply"), "apply")
                if lst is not None:
                    apply = self.read_actions(lst, f"{path}.apply")
                    for i, a in enumerate(apply):
                        if isinstance(a, Increment):
                            self.error(
                                codes.UNBOUNDED_INCREMENT,
                                "an escalate state's apply cannot increment a counter: no guard could stop it at its cap",
                                f"{path}.apply[{i}]",
                                lst.pos_of(i),
                                "increment on the transition into this state instead",
                            )

        on = b.get("on")
        transitions: dict[str, tuple[Transition, ...]] = {}
        spec = KINDS[kind]
        if on is None:
            self.error(codes.MISSING_KEY, f"{kind} state '{name}' needs 'on' (its transitions)", path, b.pos)
        else:
            om = self.expect_map(on, f"{path}.on", b.pos_of("on"), "on (event: transitions)")
            if om is not None:
                for event, tbody in om.items():
                    epath = f"{path}.on.{event}"
                    if spec.event(event) is None:
                        self.error(
                            codes.UNKNOWN_EVENT,
                            f"{article(kind)} state never receives event {event!r}",
                            epath,
                            om.key_pos[event],
                            did_you_mean(event, spec.event_names),
                        )
                        continue
                    ts = self.read_transitions(name, kind, event, tbody, om, epath)
                    transitions[event] = ts
        return State(
            name, kind, frozen_map(transitions), doc=str(doc), apply=apply, prompt=prompt, pos=pos
        )

    def read_transitions(
        self, source: str, kind: str, event: str, body: Any, parent: YMap, path: str
    ) -> tuple[Transition, ...]:
        items: list[tuple[Any, Position, str]]
        if isinstance(body, str):
            return (Transition(source, event, 0, Always(), (), body, pos=parent.pos_of(event)),) if self.ref_state(
                body, path, parent.pos_of(event)
            ) else ()
        if isinstance(body, YMap):
            items = [(body, body.pos, path)]
        elif isinstance(body, YList):
            items = [(t, body.pos_of(i), f"{path}[{i}]") for i, t in enumerate(body)]
        else:
            self.error(
                codes.WRONG_TYPE,
                f"transitions on '{event}' must be a state name, a mapping or a list, got {type_name(body)}",
                path,
                parent.pos_of(event),
            )
            return ()
        out: list[Transition] = []
        for order, (t, pos, tpath) in enumerate(items):
            if isinstance(t, str):
                if self.ref_state(t, tpath, pos):
                    out.append(Transition(source, event, order, Always(), (), t, pos=pos))
                continue
            tm = self.expect_map(t, tpath, pos, "a transition ({when, do, to})")
            if tm is None:
                continue
            self.unknown_keys(tm, TRANSITION_KEYS, tpath, "a transition")
            guard: Guard = Always()
            if "when" in tm:
                g = self.read_guard(tm["when"], f"{tpath}.when", tm.pos_of("when"), kind, event)
                guard = g if g is not None else Always()
            actions: tuple[Action, ...] = ()
            if "do" in tm:
                lst = self.expect_list(tm["do"], f"{tpath}.do", tm.pos_of("do"), "do (a list of actions)")
                if lst is not None:
                    actions = self.read_actions(lst, f"{tpath}.do")
            target = tm.get("to")
            if target is None:
                self.error(codes.MISSING_KEY, "transition needs 'to' (the target state)", tpath, tm.pos)
                continue
            if not self.ref_state(target, f"{tpath}.to", tm.pos_of("to")):
                continue
            bounded_by = tm.get("bounded_by")
            if bounded_by is not None and bounded_by not in BACKSTOPS:
                self.error(
                    codes.UNKNOWN_NAME,
                    f"bounded_by must name a backstop, got {bounded_by!r}",
                    f"{tpath}.bounded_by",
                    tm.pos_of("bounded_by"),
                    did_you_mean(bounded_by, BACKSTOPS),
                )
                bounded_by = None
            out.append(Transition(source, event, order, guard, actions, target, bounded_by, pos=pos))
        return tuple(out)

    # -- guards -------------------------------------------------------------------------------

    def read_guard(self, node: Any, path: str, pos: Position | None, kind: str, event: str) -> Guard | None:
        g = self.expect_map(node, path, pos, "a guard")
        if g is None:
            return None
        forms = [k for k in GUARD_FORMS if k in g]
        if len(forms) != 1:
            self.error(
                codes.BAD_GUARD,
                "a guard has exactly one of: all, any, not, counter, flag, attr",
                path,
                g.pos,
                "combine several tests with all: [...] or any: [...]",
            )
            return None
        form = forms[0]
        if form in ("all", "any"):
            self.unknown_keys(g, (form,), path, f"{article(form)} guard")
            lst = self.expect_list(g[form], f"{path}.{form}", g.pos_of(form), f"{form}")
            if lst is None:
                return None
            parts = [
                self.read_guard(item, f"{path}.{form}[{i}]", lst.pos_of(i), kind, event) for i, item in enumerate(lst)
            ]
            if any(p is None for p in parts):
                return None
            if not parts:
                self.error(codes.BAD_GUARD, f"{form} needs at least one guard", path, g.pos)
                return None
            return AllOf(tuple(parts)) if form == "all" else AnyOf(tuple(parts))  # type: ignore[arg-type]
        if form == "not":
            self.unknown_keys(g, ("not",), path, "a not guard")
            inner = self.read_guard(g["not"], f"{path}.not", g.pos_of("not"), kind, event)
            return Not(inner) if inner is not None else None
        if form == "counter":
            self.unknown_keys(g, ("counter", *COMPARATORS), path, "a counter guard")
            c = self.counter_by_name(g["counter"], f"{path}.counter", g.pos_of("counter"))
            ops = [op for op in COMPARATORS if op in g]
            if len(ops) != 1:
                self.error(codes.BAD_GUARD, "a counter guard needs exactly one of lt, le, eq, ne, ge, gt", path, g.pos)
                return None
            if c is None:
                return None
            raw = g[ops[0]]
            value = c.max if raw == "max" else raw
            if isinstance(value, bool) or not isinstance(value, int):
                self.error(codes.WRONG_TYPE, f"compare a counter with an integer or 'max', got {raw!r}", f"{path}.{ops[0]}", g.pos_of(ops[0]))
                return None
            return CounterCmp(c.name, c.index, ops[0], value)
        if form == "flag":
            self.unknown_keys(g, ("flag", "is"), path, "a flag guard")
            if not self.flag_ok(g["flag"], f"{path}.flag", g.pos_of("flag")):
                return None
            value = g.get("is", True)
            if not isinstance(value, bool):
                self.error(codes.WRONG_TYPE, "'is' must be true or false", f"{path}.is", g.pos_of("is"))
                return None
            return FlagIs(g["flag"], value)
        # attr
        ops_all = ATTR_OPS
        self.unknown_keys(g, ("attr", *ops_all), path, "an attr guard")
        attr_name = g["attr"]
        espec = KINDS[kind].event(event)
        attr = espec.attr(attr_name) if espec and isinstance(attr_name, str) else None
        if attr is None:
            names = [a.name for a in espec.attrs] if espec else []
            hint = did_you_mean(attr_name, names) if names else f"event '{event}' carries no attributes"
            self.error(codes.UNKNOWN_ATTRIBUTE, f"event '{event}' has no attribute {attr_name!r}", f"{path}.attr", g.pos_of("attr"), hint)
            return None
        ops = [op for op in ops_all if op in g]
        if len(ops) > 1:
            self.error(codes.BAD_GUARD, "an attr guard takes at most one comparison", path, g.pos)
            return None
        if not ops:
            return AttrTest(attr.name, "truthy")
        op = ops[0]
        value = g[op]
        vpath, vpos = f"{path}.{op}", g.pos_of(op)
        if op == "in":
            lst = self.expect_list(value, vpath, vpos, "in")
            if lst is None:
                return None
            for i, v in enumerate(lst):
                self.check_attr_value(attr, v, f"{vpath}[{i}]", lst.pos_of(i))
            return AttrTest(attr.name, "in", tuple(lst))
        if op == "contains":
            if attr.type not in ("str", "list"):
                self.error(codes.BAD_GUARD, f"contains applies to str or list attributes; '{attr.name}' is {attr.type}", vpath, vpos)
                return None
            if not isinstance(value, str):
                self.error(codes.WRONG_TYPE, "contains takes a string", vpath, vpos)
                return None
            return AttrTest(attr.name, "contains", value)
        if attr.type in ("list", "bool") and op not in ("eq", "ne"):
            self.error(codes.BAD_GUARD, f"'{op}' does not apply to {article(attr.type)} attribute", vpath, vpos)
            return None
        self.check_attr_value(attr, value, vpath, vpos)
        return AttrTest(attr.name, op, value)

    def check_attr_value(self, attr: Any, value: Any, path: str, pos: Position | None) -> None:
        ok = {
            "bool": lambda v: isinstance(v, bool),
            "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "str": lambda v: isinstance(v, str),
            "list": lambda v: isinstance(v, list),
        }[attr.type](value)
        if not ok:
            self.error(codes.WRONG_TYPE, f"attribute '{attr.name}' is {attr.type}; {value!r} never matches", path, pos)
        elif attr.values and value not in attr.values:
            self.error(
                codes.OUT_OF_RANGE,
                f"attribute '{attr.name}' is one of {', '.join(attr.values)}; {value!r} never matches",
                path,
                pos,
                did_you_mean(value, attr.values),
            )

    # -- actions ------------------------------------------------------------------------------

    def read_actions(self, lst: YList, path: str) -> tuple[Action, ...]:
        out: list[Action] = []
        incremented: set[str] = set()
        for i, item in enumerate(lst):
            apath, pos = f"{path}[{i}]", lst.pos_of(i)
            action = self.read_action(item, apath, pos)
            if action is None:
                continue
            if isinstance(action, Increment):
                if action.counter in incremented:
                    self.error(codes.UNBOUNDED_INCREMENT, f"counter '{action.counter}' is incremented twice in one transition", apath, pos)
                incremented.add(action.counter)
                if action.counter in BACKSTOPS:
                    self.error(
                        codes.RESERVED_NAME,
                        f"'{action.counter}' is a backstop: entering {article(BACKSTOP_KIND[action.counter])} state counts it",
                        apath,
                        pos,
                    )
            if isinstance(action, Reset) and action.counter in BACKSTOPS:
                self.error(codes.RESERVED_NAME, f"backstop '{action.counter}' can never be reset within a turn", apath, pos)
            out.append(action)
        return tuple(out)

    def read_action(self, item: Any, path: str, pos: Position | None) -> Action | None:
        if isinstance(item, str):
            name, arg, extra = item, None, None
        elif isinstance(item, YMap) and item:
            keys = list(item)
            name = keys[0]
            arg = item[name]
            extra = item
            allowed_extra = ACTION_KEYS.get(name, (name,))
            self.unknown_keys(item, allowed_extra, path, f"{article(repr(name))} action")
            pos = item.key_pos.get(name, pos)
        else:
            self.error(codes.WRONG_TYPE, f"an action is a name or a one-key mapping, got {type_name(item)}", path, pos)
            return None
        if name not in ACTION_NAMES:
            self.error(codes.UNKNOWN_NAME, f"unknown action {name!r}", path, pos, did_you_mean(name, ACTION_NAMES))
            return None
        needs_arg = name in ACTIONS_WITH_ARG
        if needs_arg and arg is None:
            self.error(codes.MISSING_KEY, f"action '{name}' needs an argument, e.g. {{{name}: NAME}}", path, pos)
            return None
        if not needs_arg and arg is not None and arg is not True:
            self.error(codes.WRONG_TYPE, f"action '{name}' takes no argument", path, pos)
            return None
        if name in ("increment", "reset"):
            c = self.counter_by_name(arg, path, pos)
            if c is None:
                return None
            if name == "reset":
                return Reset(c.name, c.index)
            amount = extra.get("by", 1) if isinstance(extra, YMap) else 1
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
                self.error(codes.WRONG_TYPE, "'by' must be a positive integer", path, pos)
                return None
            return Increment(c.name, c.index, amount)
        if name in ("set", "clear"):
            return SetFlag(arg, name == "set") if self.flag_ok(arg, path, pos) else None
        if name in FLAG_SHORTHANDS:
            flag, value = FLAG_SHORTHANDS[name]
            return SetFlag(flag, value)
        if name in ("append", "nudge"):
            return Append(arg) if self.ref_template(arg, path, pos) else None
        if name == "refuse_tools":
            return RefuseTools(arg) if self.ref_template(arg, path, pos) else None
        if name == "drop_tool_calls":
            return DropToolCalls()
        if name == "compact":
            return Compact()
        # backoff
        if arg not in self.backoff:
            self.error(codes.UNKNOWN_NAME, f"unknown backoff schedule {arg!r}", path, pos, self.unknown("backoff schedule", arg, self.backoff))
            return None
        attempt = extra.get("attempt") if isinstance(extra, YMap) else None
        if attempt is None:
            return Backoff(arg, None, None)
        c = self.counter_by_name(attempt, path, pos)
        return Backoff(arg, c.name, c.index) if c is not None else None


# ------------------------------------------------------------------------------- public entry points


def validate_document(doc: Any, file: str) -> tuple[Policy | None, list[Diagnostic]]:
    v = _Validator(file)
    policy = v.run(doc)
    return policy, v.ordered()


def validate_text(text: str, file: str = "<string>") -> tuple[Policy | None, list[Diagnostic]]:
    try:
        doc = load_yaml_text(text, file)
    except LoadError as exc:
        return None, [exc.diagnostic]
    return validate_document(doc, file)


def validate_file(path: str) -> tuple[Policy | None, list[Diagnostic]]:
    """Load, validate and compile one policy file; never raises for bad input."""
    try:
        doc = load_yaml_file(path)
    except LoadError as exc:
        return None, [exc.diagnostic]
    return validate_document(doc, path)


__all__ = ["validate_file", "validate_text", "validate_document"]
