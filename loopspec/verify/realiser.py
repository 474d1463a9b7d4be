"""The :class:`Realiser`: for every event, the recordings that make loopspec's classifier emit it,
chosen so every guard atom the policy reads keeps its truth value; it is also the world model
(:class:`~loopspec.verify.concrete.WorldModel`) that keeps a run's steps consistent with one
outside world. Plus the tool results and scripts that realise tool events."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from loopspec.wire.classify import broken_cause
from loopspec.engine.guardrails import GuardrailState
from loopspec.engine.tools import ToolResult
from loopspec.replay.interactions import ErrorResponse, StreamResponse
from loopspec.replay.synth import inside_tool_arguments, reply, reply_chunks
from loopspec.language.alphabet import judge_wait
from loopspec.language.model import FATE_RUN, AttrTest, Compact, Policy, Step

from .atoms import guard_atoms
from .properties import EmptyWhen, empty_when
from .tool_scripts import guard_scripts, last_index, tool_result
from .event_options import (
    CALL_ERRORS,
    CODE_RE,
    DEFAULT_TOOL,
    EMPTY_PARAMETERS,
    HTTP_CALL_PREFIX,
    HTTP_DISCONNECT,
    HTTP_STREAM_PREFIX,
    SEMANTIC_ATTRS,
    Facts,
    Option,
    Result,
    attr_constants,
    attr_words,
    candidate_lengths,
    filler_text,
    freeze_attrs,
    observe_error,
    observe_stream,
    thaw_attrs,
    tool_name_lists,
)


# --------------------------------------------------------------------------- the realiser


class Realiser:
    """Which recordings make each step of a run happen; a world model for the checker's searches.

    ``halts`` maps halt states to their message templates: on entering one of them the world
    records whether some recording leaves the message empty (``world[1]``), which is what a
    ``halt_message`` counterexample must end with.
    """

    def __init__(self, policy: Policy, halts: Mapping[str, str | None] | None = None) -> None:
        self.policy = policy
        self.halts = dict(halts or {})
        self._atoms: dict[tuple[str, str], tuple[AttrTest, ...]] = {}
        self._options: dict[tuple[str, str], list[Option]] = {}
        self._matching: dict[tuple[Any, ...], list[Option]] = {}
        self._scripts: dict[tuple[Any, ...], Any] = {}

    # -- the world model ---------------------------------------------------------------------

    def start(self) -> tuple[frozenset[Facts], bool]:
        return (frozenset({Facts()}), False)

    def advance(self, world: Any, step: Step) -> tuple[frozenset[Facts], bool] | None:
        facts, _empty = world
        out: set[Facts] = set()
        want = self._wanted(step)
        empty = False
        for f in facts:
            for o in self.options(f, step):
                out.add(self.after(f, step, o))
                if want is not None and not empty and self.leaves_empty(want, f, step, o):
                    empty = True
        if not out:
            return None
        return (frozenset(out), empty)

    def _wanted(self, step: Step) -> EmptyWhen | None:
        halt = step.after.state
        if halt not in self.halts or self.policy.states[halt].kind != "halt":
            return None
        return empty_when(self.halts[halt], self.policy.states[step.before.state].kind, step.event.name)

    # -- options -----------------------------------------------------------------------------

    def atoms(self, state: str, event: str) -> tuple[AttrTest, ...]:
        key = (state, event)
        got = self._atoms.get(key)
        if got is None:
            s = self.policy.states[state]
            found: list[AttrTest] = []
            for t in s.transitions.get(event, ()):
                for a in guard_atoms(t.guard):
                    if isinstance(a, AttrTest) and a not in found:
                        found.append(a)
            for name in SEMANTIC_ATTRS.get((s.kind, event), ()):
                probe = AttrTest(name, "truthy")
                if probe not in found:
                    found.append(probe)
            got = self._atoms[key] = tuple(found)
        return got

    def vector(self, state: str, event: str, attrs: Mapping[str, Any]) -> tuple[bool, ...]:
        """The truth of each guard atom of ``state`` on ``event`` for these attributes (an
        attribute test reads the event's attributes alone)."""
        return tuple(a.holds(attrs.get(a.attr)) for a in self.atoms(state, event))

    def options(self, facts: Facts, step: Step) -> list[Option]:
        """The recordings that make ``step`` happen after ``facts``, natural ones first."""
        state, name = step.before.state, step.event.name
        kind = self.policy.states[state].kind
        target = self.vector(state, name, step.event.attrs)
        # what the options depend on besides the state, the event and the guards' verdicts
        context: Any = None
        if kind == "stub":
            context = facts.stub
        elif kind == "escalate":
            context = facts.escalation
        elif kind == "tool_exec":
            context = facts.calls
        key = (state, name, target, context)
        got = self._matching.get(key)
        if got is None:
            if kind in ("call", "stream"):
                cands = self._fixed(state, name)
            elif kind == "stub":
                cands = [Option(thaw_attrs(facts.stub[1]), text=facts.stub[2])] if facts.stub[0] == name else []
            elif kind == "continue":
                cands = [Option({})]
            elif kind == "escalate":
                cands = self._escalation(facts, name)
            elif kind == "tool_exec":
                cands = self._tool_options(facts, name)
            else:
                cands = []
            got = self._matching[key] = [o for o in cands if self._matches(state, name, target, o)]
        return got

    def possible(self, step: Step) -> bool:
        """Some run could make ``step`` happen (its event and attributes, whatever came before)."""
        probes = [Facts(), Facts(calls=(DEFAULT_TOOL,)), Facts(escalation="either"), Facts(escalation="failed:no fallback_model in settings")]
        probes += [Facts(stub=o.stub) for o in self._fixed_all() if o.stub is not None]
        return any(self.options(f, step) for f in probes)

    def _fixed_all(self) -> list[Option]:
        out: list[Option] = []
        for s in self.policy.states.values():
            if s.kind == "stream":
                for event in ("stalled", "text", "tool_calls"):
                    out += self._fixed(s.name, event)
        return out

    def _matches(self, state: str, name: str, target: tuple[bool, ...], o: Option) -> bool:
        if self.vector(state, name, o.attrs) != target:
            return False
        return o.alt is None or self.vector(state, name, o.alt) == target

    def _fixed(self, state: str, name: str) -> list[Option]:
        """Every recording of event ``name`` in a call or stream ``state``, guards not yet matched
        (they depend on the state's guards alone, so they are made once)."""
        key = (state, name)
        got = self._options.get(key)
        if got is None:
            atoms = self.atoms(state, name)
            if self.policy.states[state].kind == "call":
                got = [Option({}, text=False)] if name == "opened" else list(self._call_errors(name, atoms))
            else:
                got = list(self._stream(name, atoms))
            self._options[key] = got
        return got

    def _call_errors(self, name: str, atoms: Sequence[AttrTest]) -> Iterator[Option]:
        spec = CALL_ERRORS.get(name)
        if spec is None:  # cancelled: only the caller can do that, and a cassette cannot record it
            return
        preferred, allowed, naturals, etype = spec
        statuses = list(preferred) + [int(c) + d for c in attr_constants(atoms, "status") if isinstance(c, (int, float)) and not isinstance(c, bool) for d in (-1, 0, 1)]
        statuses = [s for s in dict.fromkeys(statuses) if allowed(s)]
        words = attr_words(atoms, "message")
        messages = list(naturals) + [f"{naturals[0]} ({w})" for w in words] + [f"{naturals[1]} ({w})" for w in words]
        if len(words) > 1:
            messages.append(f"{naturals[0]} ({', '.join(words)})")
        codes = [""] + [c for c in attr_words(atoms, "code") if CODE_RE.match(c)]
        retries = [0.0]
        if name == "rate_limit":  # only a 429 reads Retry-After
            for c in attr_constants(atoms, "retry_after"):
                if isinstance(c, (int, float)) and not isinstance(c, bool):
                    retries += [v for v in (float(c), float(c) + 0.5, float(c) - 0.5) if v >= 0]
            if any(a.attr == "wait_too_long" for a in atoms):
                retries.append(self.policy.settings.max_wait + 1)
        for message in messages:
            for status in statuses:
                for code in codes:
                    for retry in dict.fromkeys(retries):
                        said = message + (f" {{'code': '{code}'}}" if code else "")
                        body: dict[str, Any] = {"error": {"message": said, "type": etype}}
                        if code:
                            body["error"]["code"] = code
                        headers = {"retry-after": f"{retry:g}"} if retry else {}
                        resp = ErrorResponse(status, body, headers)
                        ev = judge_wait(observe_error(resp), self.policy.settings.max_wait)
                        if ev.name != name:  # e.g. overflow words in a 400: not this error
                            continue
                        # every candidate says something of its own, so no two give the same event
                        yield Option(dict(ev.attrs), alt=dict(ev.attrs, message=HTTP_CALL_PREFIX + said), interaction=resp, text=False)

    def _stream(self, name: str, atoms: Sequence[AttrTest]) -> Iterator[Option]:
        timeout = self.policy.settings.stall_timeout
        chars = attr_constants(atoms, "chars")
        finishes = ("stop", "content_filter")
        cands: list[tuple[StreamResponse, dict[str, Any], tuple[str, ...], Mapping[str, Any] | None]] = []

        def add(resp: StreamResponse, schemas: Mapping[str, Any] | None = None, tools: tuple[str, ...] = (), alt: Mapping[str, Any] | None = None) -> None:
            cands.append((resp, dict(schemas or {}), tools, alt))

        if name == "text":
            for n in candidate_lengths(chars, 5, 1):
                for f in finishes:
                    add(reply(filler_text(n, "Done."), finish=f))
        elif name == "tool_calls":
            for names in tool_name_lists(atoms, DEFAULT_TOOL):
                for n in candidate_lengths(chars, 0, 0):
                    add(reply(filler_text(n, ""), tool_calls=[(t, {}) for t in names]), {t: EMPTY_PARAMETERS for t in names}, tuple(names))
        elif name == "length":
            for n in candidate_lengths(chars, 26, 1):
                add(reply(filler_text(n, "A reply cut off at the tok"), finish="length"))
            as_tools = [AttrTest("tools", a.op, a.value) for a in atoms if a.attr == "dropped_tools"]
            for names in tool_name_lists([*atoms, *as_tools], DEFAULT_TOOL):
                for n in candidate_lengths(chars, 0, 0):
                    add(reply(filler_text(n, ""), tool_calls=[(t, '{"content": "cut') for t in names], finish="length"))
            add(reply(reasoning="Thinking until the budget runs out", finish="length"))
            add(reply(finish="length"))
        elif name == "empty":
            for f in finishes:
                add(reply(finish=f))
        elif name == "thinking_only":
            for f in finishes:
                add(reply(reasoning="Still thinking...", finish=f))
        elif name == "malformed_args":
            for names in tool_name_lists(atoms, DEFAULT_TOOL):
                add(reply(tool_calls=[(t, '{"path": ') for t in names]), {t: EMPTY_PARAMETERS for t in names}, tuple(names))
        elif name == "unknown_tool":
            for names in tool_name_lists(atoms, "no_such_tool"):  # never registered in the cassette
                add(reply(tool_calls=[(t, {}) for t in names]))
        elif name == "stalled":
            stall = timeout * 2
            for n in candidate_lengths(chars, 19, 0):
                chunks = reply_chunks(filler_text(n, "A reply that stalls"))
                k = 1 + sum(1 for c in chunks if c["choices"][0]["delta"].get("content"))
                add(StreamResponse(chunks=tuple(chunks), stall_after=k, stall_seconds=stall))
            for n in candidate_lengths(chars, 0, 0):
                chunks = reply_chunks(filler_text(n, ""), tool_calls=[(DEFAULT_TOOL, {"content": "a long argument"})])
                k = inside_tool_arguments(chunks)[1]
                add(StreamResponse(chunks=tuple(chunks), stall_after=k, stall_seconds=stall), {DEFAULT_TOOL: EMPTY_PARAMETERS})
        elif name == "broken":
            words = attr_words(atoms, "message")
            for n in candidate_lengths(chars, 7, 0):
                text = filler_text(n, "Partial")
                head = reply_chunks(text)
                head = head[: 1 + sum(1 for c in head if c["choices"][0]["delta"].get("content"))]
                for natural, code in (("upstream provider error", 502), ("maximum context length exceeded", 400)):
                    for said in [natural] + [f"{natural} ({w})" for w in words]:
                        resp = StreamResponse(chunks=tuple(head + [{"error": {"message": said, "code": code}}]))
                        http = HTTP_STREAM_PREFIX + said
                        add(resp, alt={"cause": broken_cause(http), "chars": n, "message": http})
                add(StreamResponse(chunks=tuple(reply_chunks(text or "A reply that is cut")), disconnect_after=len(head)),
                    alt={"cause": broken_cause(HTTP_DISCONNECT), "chars": n, "message": HTTP_DISCONNECT})
        seen: set[tuple[Any, ...]] = set()
        for resp, schemas, tools, alt in cands:
            got = observe_stream(resp, schemas, timeout)
            if got.event.name != name:
                continue
            key = (freeze_attrs(got.event.attrs), got.stub, got.text)
            if key in seen:
                continue
            seen.add(key)
            attrs = dict(got.event.attrs)
            yield Option(attrs, alt=(dict(attrs, **alt) if alt else None), interaction=resp, text=got.text, stub=got.stub, calls=got.calls, tools=tools)

    def _escalation(self, facts: Facts, name: str) -> list[Option]:
        esc = facts.escalation
        if esc == "either":
            got = [Option({}), Option({"message": "nothing left to compact"})]
        elif esc.startswith("failed:"):
            got = [Option({"message": m}) for m in esc[len("failed:") :].split("|")]
        else:
            got = [Option({})]
        return [o for o in got if (name == "failed") == bool(o.attrs)]

    def _tool_options(self, facts: Facts, name: str) -> list[Option]:
        calls = facts.calls
        if not calls:  # nothing to run: the batch is empty and always 'ok'
            return [Option({"tools": []})] if name == "ok" else []
        uniq = list(dict.fromkeys(calls))
        if name == "ok":
            return [Option({"tools": list(calls)}, results=tuple(Result(t, True) for t in calls))]
        if name == "failed":
            out = [Option({"tools": list(calls)}, results=tuple(Result(t, False) for t in calls))]
            for i in range(len(calls)):
                out.append(Option({"tools": [calls[i]]}, results=tuple(Result(t, j != i) for j, t in enumerate(calls))))
            return out
        if name == "approval_required":
            return [Option({"tool": t}, approval=t) for t in uniq]
        g = self.policy.guardrails.get(name)
        if g is None or g.verdict == "allow":
            return []
        out = []
        for t in uniq:
            periods = range(1, g.max_period + 1) if name == "doom_loop" else (0,)
            for p in periods:
                attrs: dict[str, Any] = {"tool": t, "verdict": g.verdict}
                if name == "doom_loop":
                    attrs["period"] = p
                if self.guard_script(name, t, p, calls, ()) is not None:
                    out.append(Option(attrs, guard=name))
        return out

    # -- facts -----------------------------------------------------------------------------

    def after(self, facts: Facts, step: Step, o: Option) -> Facts:
        kind = self.policy.states[step.before.state].kind
        text, stub = facts.text, facts.stub
        if kind in ("call", "stream", "stub") and o.text is not None:
            text = o.text
        if o.stub is not None:
            stub = o.stub
        calls = o.calls if step.fate == FATE_RUN else ()
        escalation = "done"
        if self.policy.states[step.after.state].kind == "escalate":
            escalation = self._entering(step)
        return Facts(text, stub, calls, escalation)

    def _entering(self, step: Step) -> str:
        """What the escalate state ``step`` enters will report: the interpreter fails it when a
        compaction on the way in had nothing to compact, or when it asks for the fallback model
        and settings name none."""
        fallback = "fallback_model" in step.after.flags and not self.policy.settings.fallback_model
        compacts = any(isinstance(d.action, Compact) for d in step.directives)
        if compacts and fallback:
            return "failed:nothing left to compact|no fallback_model in settings"
        if compacts:
            return "either"
        if fallback:
            return "failed:no fallback_model in settings"
        return "done"

    def leaves_empty(self, want: EmptyWhen, facts: Facts, step: Step, o: Option) -> bool:
        """With recording ``o`` for ``step``, the halt's message renders empty."""
        if any(o.attrs.get(a) not in ("", [], None) for a in want.attrs):
            return False
        if want.response:
            text = o.text if self.policy.states[step.before.state].kind in ("call", "stream", "stub") and o.text is not None else facts.text
            if text:
                return False
        return True

    # -- guardrails -------------------------------------------------------------------------

    def guard_script(
        self, code: str, tool: str, period: int, calls: Sequence[str], before: Sequence[Sequence[ToolResult]]
    ) -> tuple[list[Result], list[Result]] | None:
        """The tool batches to run before a batch of ``calls`` so that detector ``code`` fires on it
        (naming ``tool``, with ``period`` for doom_loop) and nothing fires earlier, given the
        batches ``before``: (one call of ``tool`` per inserted batch, the final batch's results)."""
        key = (code, tool, period, tuple(calls), tuple(tuple((r.call.name, r.call.arguments, r.content, r.ok) for r in b) for b in before))
        if key in self._scripts:
            return self._scripts[key]  # type: ignore[no-any-return]
        g = self.policy.guardrails[code]
        base = GuardrailState(self.policy.guardrails)
        for batch in before:
            base.observe(list(batch))
        found = None
        mine = last_index(calls, tool) if tool in calls else -1
        for inserted, final in guard_scripts(tool, g.threshold, g.max_period) if mine >= 0 else ():
            state = base.copy()
            if any(state.observe([tool_result(r)]) is not None for r in inserted):
                continue
            last = [final if i == mine else Result(t, True, f"another result {i}") for i, t in enumerate(calls)]
            ev = state.observe([tool_result(r) for r in last])
            if ev is None or ev.name != code or ev.attrs.get("tool") != tool:
                continue
            if code == "doom_loop" and ev.attrs.get("period") != period:
                continue
            found = (inserted, last)
            break
        self._scripts[key] = found
        return found

