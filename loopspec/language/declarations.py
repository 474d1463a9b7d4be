"""Reading the declarations a policy's states refer to: templates, backoff schedules, flags, counters,
settings, guardrails and backstops.
"""

from __future__ import annotations

from typing import Any

import loopspec.language.codes as codes
from .alphabet import (
    BACKSTOP_KEYS,
    BACKSTOP_KIND,
    BACKSTOPS,
    CALL_FLAGS,
    COUNTER_KEYS,
    FLAG_KEYS,
    GUARDRAIL_CODES,
    GUARDRAIL_KEYS,
    MAX_SECONDS,
    MAX_WAIT,
    SECONDS_SETTINGS,
    SETTINGS_KEYS,
    VERDICTS,
)
from .diagnostics import article, did_you_mean
from .model import Backstop, Counter, Guardrail, Settings
from .reader import type_name
from .resolve import Resolver
from .yamlsource import YMap


class Declarations(Resolver):
    max_wait: float | None = None
    """``backoff.max_wait`` when the policy sets it."""

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

    def read_backoff(self, root: YMap) -> dict[str, tuple[float, ...]]:
        out: dict[str, tuple[float, ...]]= {}
        m = self.section(root, "backoff", "backoff")
        if m is None:
            return out
        for key, seq in m.items():
            path = f"backoff.{key}"
            n = len(self.diags)
            if key == MAX_WAIT:
                if isinstance(seq, bool) or not isinstance(seq, (int, float)) or not 0 < seq <= MAX_SECONDS:
                    self.error(codes.OUT_OF_RANGE, f"max_wait {seq!r} must be seconds, more than 0 and at most 86400", path, m.pos_of(key))
                else:
                    self.max_wait = float(seq)
                continue
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
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= MAX_SECONDS:  # NaN fails too
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
            if key in SECONDS_SETTINGS and isinstance(v, (int, float)) and not 0 < v <= MAX_SECONDS:  # NaN and inf fail too: no wait is endless
                self.error(
                    codes.OUT_OF_RANGE,
                    f"settings.{key} {v!r} must be seconds, more than 0 and at most {MAX_SECONDS}",
                    f"settings.{key}",
                    m.pos_of(key),
                )
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
                elif ek == "stream":
                    self.warn(
                        codes.STREAM_WITHOUT_RESPONSE,
                        f"{name}.exhausted is a stream state: the turn arrives there with no response open, and hears 'broken'",
                        f"{path}.exhausted",
                        b.pos_of("exhausted"),
                        "end in a halt state, or go to a call state",
                    )
            wrap_up = b.get("wrap_up")
            if wrap_up is not None:
                if name != "model_calls":
                    self.error(codes.UNKNOWN_KEY, "wrap_up applies to model_calls only", f"{path}.wrap_up", b.pos_of("wrap_up"))
                else:
                    self.check_wrap_up(wrap_up, f"{path}.wrap_up", b.pos_of("wrap_up"))
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
