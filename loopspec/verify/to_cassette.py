"""Turn a checker counterexample (an event path) into a cassette that replays to the same failure.

The checker's adversary answers with events of the closed alphabet and picks their attributes
from the guards' constants. A cassette can only hold what the outside world says: HTTP errors,
model replies (chunks, stalls, dropped connections), tool results. This module goes from one to
the other, faithfully:

- :class:`Realiser` knows, for every event, the recordings that make loopspec's classifier emit
  it (an HTTP status, a body carrying a message and a code, a Retry-After header; text of a given
  length; tool calls with given names; a stall inside a tool call's arguments; an in-band provider
  error; a guardrail's detector fed the batches that make it fire) and what each recording makes
  the classifier say, observed through the same code the in-process transport runs. For each step
  it picks a recording whose attributes give the same truth value to every guard atom the policy
  reads on that state and event (:func:`~loopspec.verify.abstraction.guard_atoms`), with natural
  values for the attributes no guard reads. It is also a
  :class:`~loopspec.verify.explore.WorldModel`: the checker's searches use it to prefer runs the
  outside world can produce.
- :func:`cassette_from_counterexample` builds the cassette, closes a path that stops short of a
  halt with the shortest clean way to one, replays it in-process and compares the decision path
  with the counterexample's steps. A counterexample that cannot be reproduced (the adversary chose
  attributes the classifier never emits, e.g. a rate_limit with status 200) raises
  :class:`NotReplayable`; :func:`counterexample_cassettes` then tries the checker's other
  candidates, and otherwise marks the counterexample ``concrete=False`` with the reason instead of
  writing a cassette that lies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from loopspec.wire.assemble import ReplyAssembler
from loopspec.wire.classify import broken_cause, classify_exception, classify_reply
from loopspec.engine.guardrails import GuardrailState
from loopspec.engine.tools import ToolCall, ToolResult
from loopspec.replay.cassette import Cassette, Expectations, RecordedStep, ToolOutcome, ToolSpec
from loopspec.replay.inproc import RecordedHTTPError, _items_for
from loopspec.replay.interactions import ErrorResponse, Interaction, StreamResponse
from loopspec.replay.synth import inside_tool_arguments, reply, reply_chunks
from loopspec.language.alphabet import Event
from loopspec.language.model import FATE_RUN, AttrTest, Compact, Config, Policy, Step
from loopspec.language.properties import RUN_PROPERTIES, Watch, continuation_counters
from loopspec.language.properties import advance as advance_properties

from .abstraction import guard_atoms
from .counterexample import CexStep, Counterexample
from .properties import EmptyWhen, empty_when

DEFAULT_TOOL = "tool_a"
_OBJECT = {"type": "object", "properties": {}}
_USER = {"role": "user", "content": "Reproduce the checker's counterexample."}

# Attributes the semantics itself reads (Policy.step's calls_of), split even when no guard does.
_SEMANTIC_ATTRS: dict[tuple[str, str], tuple[str, ...]] = {
    ("stream", "length"): ("has_tool_calls",),
    ("stream", "stalled"): ("mid_tool_call",),
}

# What a provider says to make the classifier emit each call error: the statuses that map to it on
# both transports (litellm turns a 504 into a timeout, the in-process replay into transient), and
# two natural messages (the second for when a guard needs the first one's words absent).
_CALL_ERRORS: dict[str, tuple[tuple[int, ...], Callable[[int], bool], tuple[str, str], str]] = {
    "rate_limit": ((429,), lambda s: s == 429, ("Rate limit reached for requests", "Too many requests"), "requests"),
    "transient": (
        (503, 500, 502, 529),
        lambda s: 500 <= s <= 599 and s != 504,
        ("The engine is currently overloaded, please try again later", "Internal server error"),
        "server_error",
    ),
    "timeout": ((408,), lambda s: s == 408, ("Request timed out", "The request took too long"), "timeout"),
    "context_overflow": (
        (400, 413),
        lambda s: s in (400, 413),
        ("This model's maximum context length is 128000 tokens.", "The prompt is too long for this model"),
        "invalid_request_error",
    ),
    "auth": ((401, 403), lambda s: s in (401, 403), ("Incorrect API key provided", "Permission denied"), "invalid_request_error"),
    "bad_request": ((400, 404, 422), lambda s: _client_status(s), ("Invalid value for 'temperature'", "Malformed request"), "invalid_request_error"),
    "effort_unsupported": (
        (400, 422),
        lambda s: _client_status(s),
        ("Unsupported parameter: 'reasoning_effort' is not supported with this model.", "This model does not support reasoning effort"),
        "invalid_request_error",
    ),
    "thinking_signature_invalid": (
        (400, 422),
        lambda s: _client_status(s),
        ("Invalid signature in thinking block", "The thinking block signature is invalid"),
        "invalid_request_error",
    ),
}


def _client_status(s: int) -> bool:
    return 400 <= s <= 499 and s not in (401, 403, 408, 409, 429)


# What litellm prefixes to a provider's message (the HTTP transport); guards are judged on both.
_HTTP_CALL_PREFIX = "litellm.APIError: APIError: OpenAIException - "
_HTTP_STREAM_PREFIX = "litellm.MidStreamFallbackError: litellm.APIConnectionError: APIConnectionError: OpenAIException - "
_HTTP_DISCONNECT = (
    _HTTP_STREAM_PREFIX + "Response payload is not completed: <TransferEncodingError: 400, message='Not enough data "
    "to satisfy transfer length header.'>"
)
_SAFE_WORD = re.compile(r"^[ -!#-\[\]-~]+$")  # printable ASCII without quotes or backslashes: JSON leaves it alone
_CODE = re.compile(r"^[A-Za-z0-9_.-]+$")


class NotReplayable(Exception):
    """The counterexample cannot be recorded as a cassette that reproduces it; says why."""


# --------------------------------------------------------------------------- options


def _freeze(attrs: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in attrs.items()))


def _thaw(frozen: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in frozen}


@dataclass(frozen=True)
class Result:
    """One tool call's recorded answer (``content`` None: a unique one is made up), and the
    arguments of the call it answers."""

    tool: str
    ok: bool
    content: str | None = None
    args: str = "{}"


@dataclass(frozen=True)
class Option:
    """One way the outside world can make a step happen: the attributes the classifier (or the
    interpreter) then reports, and what the cassette records for it."""

    attrs: Mapping[str, Any]
    alt: Mapping[str, Any] | None = None
    """The attributes as the HTTP transport reports them, when they differ (litellm's messages)."""
    interaction: Interaction | None = None
    text: bool | None = None
    """After this step, the reply ``response`` holds has visible text (None: unchanged)."""
    stub: tuple[Any, ...] | None = None
    """What a stub state built after this reply emits: (event, frozen attrs, has visible text)."""
    calls: tuple[str, ...] = ()
    """The complete tool calls of this reply."""
    tools: tuple[str, ...] = ()
    """Tool names the cassette must register for this reply."""
    results: tuple[Result, ...] = ()
    guard: str | None = None
    """tool_exec: the guardrail code this option makes fire (with the batches before it)."""
    approval: str | None = None
    """tool_exec: the tool that needs approval."""


@dataclass(frozen=True)
class Facts:
    """What the run so far leaves behind that later events depend on."""

    text: bool = False
    """The reply ``response`` holds has visible text."""
    stub: tuple[Any, ...] = ("mid_text", (("chars", 0),), False)
    """What a stub state would emit now (the last stream's assembler)."""
    calls: tuple[str, ...] = ()
    """Complete tool calls pending for the next tool_exec state."""
    escalation: str = "done"
    """What the escalate state just entered reports: done, failed:<message>, or either (compaction)."""


def _text(n: int, natural: str) -> str:
    if n == len(natural):
        return natural
    return ("Done and more. " * (n // 15 + 1))[:n]


def _lengths(consts: list[Any], natural: int, lo: int) -> list[int]:
    out = [natural]
    for c in consts:
        if isinstance(c, (int, float)) and not isinstance(c, bool):
            for v in (math.floor(c) - 1, math.floor(c), math.ceil(c), math.ceil(c) + 1):
                out.append(int(v))
    return [v for v in dict.fromkeys(out) if lo <= v <= 4000]


def _consts(atoms: Sequence[AttrTest], name: str) -> list[Any]:
    out: list[Any] = []
    for a in atoms:
        if a.attr != name:
            continue
        if a.op == "in":
            out.extend(a.value or ())
        elif a.value is not None:
            out.append(a.value)
    return out


def _words(atoms: Sequence[AttrTest], name: str) -> list[str]:
    return [c for c in dict.fromkeys(_consts(atoms, name)) if isinstance(c, str) and c and _SAFE_WORD.match(c)]


def _name_lists(atoms: Sequence[AttrTest], natural: str) -> list[list[str]]:
    """Tool-name lists for a reply's calls: the natural one, the guards' names, the guards' counts."""
    lists: list[list[str]] = [[natural]]
    for c in _consts(atoms, "tools"):
        if isinstance(c, str) and c:
            lists += [[c], [natural, c]]
        elif isinstance(c, (list, tuple)) and c and all(isinstance(x, str) and x for x in c):
            lists.append(list(c))
    pool = [natural] + [f"{natural}_{i}" for i in range(2, 9)]
    for n in _lengths(_consts(atoms, "count"), 1, 1):
        lists.append(pool[: min(n, len(pool))])
    out: list[list[str]] = []
    for lst in lists:
        if lst not in out:
            out.append(lst)
    return out


def observe_error(resp: ErrorResponse) -> Event:
    """The call event the classifier makes of a recorded HTTP error (as in-process replay does)."""
    return classify_exception(RecordedHTTPError(resp.status, resp.body, resp.headers), phase="call")


@dataclass(frozen=True)
class Observed:
    event: Event
    text: bool
    stub: tuple[Any, ...]
    calls: tuple[str, ...]


def observe_stream(resp: StreamResponse, schemas: Mapping[str, Any], stall_timeout: float) -> Observed:
    """The stream event the interpreter makes of a recorded response, and what a stub built right
    after it would say (the ``stream`` and ``stub`` effects, in virtual time)."""
    asm = ReplyAssembler()
    event: Event | None = None
    for item in _items_for(resp):
        if item.pause >= stall_timeout:
            event = Event("stalled", {"chars": asm.chars, "mid_tool_call": asm.in_tool_call})
            break
        if item.broken is not None:
            event = item.broken.with_chars(asm.chars).event
            break
        asm.feed(item.delta)
    got = asm.result()
    if event is None:
        event = classify_reply(got, schemas)
    if asm.in_tool_call or got.tool_calls:
        stub = ("mid_tool_call", _freeze({"chars": asm.chars, "cut_tools": asm.cut_tool_names()}))
    else:
        stub = ("mid_text", _freeze({"chars": asm.chars}))
    text = bool(got.text.strip())
    return Observed(event, text, (stub[0], stub[1], text), tuple(c.name or "" for c in got.tool_calls))


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
            for name in _SEMANTIC_ATTRS.get((s.kind, event), ()):
                probe = AttrTest(name, "truthy")
                if probe not in found:
                    found.append(probe)
            got = self._atoms[key] = tuple(found)
        return got

    def vector(self, state: str, event: str, attrs: Mapping[str, Any]) -> tuple[bool, ...]:
        ev = Event(event, attrs)
        return tuple(a.evaluate(self.policy, _DUMMY, ev) for a in self.atoms(state, event))

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
                cands = self._fixed(state, name, kind)
            elif kind == "stub":
                cands = [Option(_thaw(facts.stub[1]), text=facts.stub[2])] if facts.stub[0] == name else []
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
                out += self._fixed(s.name, "stalled", "stream") + self._fixed(s.name, "text", "stream")
                out += self._fixed(s.name, "tool_calls", "stream")
        return out

    def _matches(self, state: str, name: str, target: tuple[bool, ...], o: Option) -> bool:
        if self.vector(state, name, o.attrs) != target:
            return False
        return o.alt is None or self.vector(state, name, o.alt) == target

    def _fixed(self, state: str, name: str, kind: str) -> list[Option]:
        key = (state, name)
        got = self._options.get(key)
        if got is None:
            atoms = self.atoms(state, name)
            if kind == "call":
                got = [Option({}, text=False)] if name == "opened" else list(self._call_errors(name, atoms))
            else:
                got = list(self._stream(name, atoms))
            self._options[key] = got
        return got

    def _call_errors(self, name: str, atoms: Sequence[AttrTest]) -> Iterator[Option]:
        spec = _CALL_ERRORS.get(name)
        if spec is None:  # cancelled: only the caller can do that, and a cassette cannot record it
            return
        preferred, allowed, naturals, etype = spec
        statuses = list(preferred) + [int(c) + d for c in _consts(atoms, "status") if isinstance(c, (int, float)) and not isinstance(c, bool) for d in (-1, 0, 1)]
        statuses = [s for s in dict.fromkeys(statuses) if allowed(s)]
        words = _words(atoms, "message")
        messages = list(naturals) + [f"{naturals[0]} ({w})" for w in words] + [f"{naturals[1]} ({w})" for w in words]
        if len(words) > 1:
            messages.append(f"{naturals[0]} ({', '.join(words)})")
        codes = [""] + [c for c in _words(atoms, "code") if _CODE.match(c)]
        retries = [0.0]
        if name == "rate_limit":  # only a 429 reads Retry-After
            for c in _consts(atoms, "retry_after"):
                if isinstance(c, (int, float)) and not isinstance(c, bool):
                    retries += [v for v in (float(c), float(c) + 0.5, float(c) - 0.5) if v >= 0]
        seen: set[tuple[Any, ...]] = set()
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
                        ev = observe_error(resp)
                        if ev.name != name:
                            continue
                        key = _freeze(ev.attrs)
                        if key in seen:
                            continue
                        seen.add(key)
                        yield Option(dict(ev.attrs), alt=dict(ev.attrs, message=_HTTP_CALL_PREFIX + said), interaction=resp, text=False)

    def _stream(self, name: str, atoms: Sequence[AttrTest]) -> Iterator[Option]:
        timeout = self.policy.settings.stall_timeout
        chars = _consts(atoms, "chars")
        finishes = ("stop", "content_filter")
        cands: list[tuple[StreamResponse, dict[str, Any], tuple[str, ...], Mapping[str, Any] | None]] = []

        def add(resp: StreamResponse, schemas: Mapping[str, Any] | None = None, tools: tuple[str, ...] = (), alt: Mapping[str, Any] | None = None) -> None:
            cands.append((resp, dict(schemas or {}), tools, alt))

        if name == "text":
            for n in _lengths(chars, 5, 1):
                for f in finishes:
                    add(reply(_text(n, "Done."), finish=f))
        elif name == "tool_calls":
            for names in _name_lists(atoms, DEFAULT_TOOL):
                for n in _lengths(chars, 0, 0):
                    add(reply(_text(n, ""), tool_calls=[(t, {}) for t in names]), {t: _OBJECT for t in names}, tuple(names))
        elif name == "length":
            for n in _lengths(chars, 26, 1):
                add(reply(_text(n, "A reply cut off at the tok"), finish="length"))
            as_tools = [AttrTest("tools", a.op, a.value) for a in atoms if a.attr == "dropped_tools"]
            for names in _name_lists([*atoms, *as_tools], DEFAULT_TOOL):
                for n in _lengths(chars, 0, 0):
                    add(reply(_text(n, ""), tool_calls=[(t, '{"content": "cut') for t in names], finish="length"))
            add(reply(reasoning="Thinking until the budget runs out", finish="length"))
            add(reply(finish="length"))
        elif name == "empty":
            for f in finishes:
                add(reply(finish=f))
        elif name == "thinking_only":
            for f in finishes:
                add(reply(reasoning="Still thinking...", finish=f))
        elif name == "malformed_args":
            for names in _name_lists(atoms, DEFAULT_TOOL):
                add(reply(tool_calls=[(t, '{"path": ') for t in names]), {t: _OBJECT for t in names}, tuple(names))
        elif name == "unknown_tool":
            for names in _name_lists(atoms, "no_such_tool"):  # never registered in the cassette
                add(reply(tool_calls=[(t, {}) for t in names]))
        elif name == "stalled":
            stall = timeout * 2
            for n in _lengths(chars, 19, 0):
                chunks = reply_chunks(_text(n, "A reply that stalls"))
                k = 1 + sum(1 for c in chunks if c["choices"][0]["delta"].get("content"))
                add(StreamResponse(chunks=tuple(chunks), stall_after=k, stall_seconds=stall))
            for n in _lengths(chars, 0, 0):
                chunks = reply_chunks(_text(n, ""), tool_calls=[(DEFAULT_TOOL, {"content": "a long argument"})])
                k = inside_tool_arguments(chunks)[1]
                add(StreamResponse(chunks=tuple(chunks), stall_after=k, stall_seconds=stall), {DEFAULT_TOOL: _OBJECT})
        elif name == "broken":
            words = _words(atoms, "message")
            for n in _lengths(chars, 7, 0):
                text = _text(n, "Partial")
                head = reply_chunks(text)
                head = head[: 1 + sum(1 for c in head if c["choices"][0]["delta"].get("content"))]
                for natural, code in (("upstream provider error", 502), ("maximum context length exceeded", 400)):
                    for said in [natural] + [f"{natural} ({w})" for w in words]:
                        resp = StreamResponse(chunks=tuple(head + [{"error": {"message": said, "code": code}}]))
                        http = _HTTP_STREAM_PREFIX + said
                        add(resp, alt={"cause": broken_cause(http), "chars": n, "message": http})
                add(StreamResponse(chunks=tuple(reply_chunks(text or "A reply that is cut")), disconnect_after=len(head)),
                    alt={"cause": broken_cause(_HTTP_DISCONNECT), "chars": n, "message": _HTTP_DISCONNECT})
        seen: set[tuple[Any, ...]] = set()
        for resp, schemas, tools, alt in cands:
            got = observe_stream(resp, schemas, timeout)
            if got.event.name != name:
                continue
            key = (_freeze(got.event.attrs), got.stub, got.text)
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
        mine = _last_index(calls, tool) if tool in calls else -1
        for inserted, final in _scripts(tool, g.threshold, g.max_period) if mine >= 0 else ():
            state = GuardrailState(
                base.config, list(base.signatures), dict(base.failures), dict(base.tool_fail_streak), dict(base.repeats)
            )
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


_DUMMY = Config("", (), frozenset())


def _last_index(calls: Sequence[str], tool: str) -> int:
    return max(i for i, t in enumerate(calls) if t == tool)


def tool_result(r: Result) -> ToolResult:
    """A result as the interpreter builds it from a recorded one (errors are raised as RuntimeError)."""
    content = r.content or ""
    return ToolResult(ToolCall("call", r.tool, r.args), content if r.ok else f"Error: RuntimeError: {content}", r.ok)


def _scripts(tool: str, threshold: int, max_period: int) -> Iterator[tuple[list[Result], Result]]:
    """Candidate (inserted calls of ``tool``, its call in the final batch), shortest first."""
    same_fail = Result(tool, False, "the same failure")
    same_ok = Result(tool, True, "the same result")
    for k in range(threshold + 1):
        yield [same_fail] * k, same_fail  # repeated_exact_failure
        streak = [Result(tool, False, f"scripted failure {i}", json.dumps({"attempt": i})) for i in range(k)]
        yield streak, Result(tool, False, "the last failure")  # same_tool_failure
        yield [same_ok] * k, same_ok  # no_progress, doom_loop of period 1
        mixed: list[Result] = []
        for i in range(k):
            mixed += [same_ok, Result(tool, True, f"scripted result {i}", json.dumps({"other": i}))]
        yield mixed, same_ok  # no_progress without a cycle
        mixed = []
        for i in range(k):
            mixed += [same_fail, Result(tool, True, f"scripted result {i}", json.dumps({"other": i}))]
        yield mixed, same_fail  # repeated_exact_failure without a cycle or a failure streak
    for p in range(2, max_period + 1):
        cycle = [Result(tool, True, f"cycle result {j}", json.dumps({"step": j})) for j in range(p - 1)] + [same_ok]
        for r in range(1, threshold + 2):
            seq = cycle * r
            yield seq[:-1], seq[-1]  # doom_loop of period p


# --------------------------------------------------------------------------- building cassettes


@dataclass
class _Planned:
    """One step of the planned run: the event, the recording chosen for it, where it must lead."""

    state: str
    event: Event
    option: Option
    to: str
    transition: str | None
    inserted: bool = False


@dataclass
class _Build:
    interactions: list[Interaction] = field(default_factory=list)
    results: list[ToolOutcome] = field(default_factory=list)
    tools: dict[str, bool] = field(default_factory=dict)


def _run(coro: Any) -> Any:
    """Run a coroutine to completion from synchronous code, also when an event loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _simulate(policy: Policy, steps: Sequence[CexStep]) -> list[Step]:
    """The counterexample's steps as the policy takes them (the adversary's attributes)."""
    cfg = policy.initial_config()
    out: list[Step] = []
    for i, s in enumerate(steps):
        if cfg.state != s.state:
            raise NotReplayable(f"step {i + 1} starts in '{s.state}' but the run is in '{cfg.state}' (an abstract path)")
        st = policy.step(cfg, Event(s.event, dict(s.attrs)))
        label = st.transition.label if st.transition else None
        if st.after.state != s.to or label != s.transition:
            raise NotReplayable(f"step {i + 1} ({s.state}: {s.event}) leads to '{st.after.state}', not '{s.to}' (an abstract path)")
        out.append(st)
        cfg = st.after
    return out


def _choose(
    realiser: Realiser, steps: Sequence[Step], start: Facts, want: EmptyWhen | None
) -> tuple[list[Option], Facts] | None:
    """A recording for every step, consistent from one to the next (depth-first, natural first);
    with ``want``, the last one leaves the halt's message empty."""
    failed: set[tuple[int, Facts]] = set()
    # each level: the facts before step i, its options, the next one to try
    stack: list[tuple[Facts, list[Option], int]] = []

    def options(i: int, facts: Facts) -> list[Option]:
        if (i, facts) in failed:
            return []
        got = realiser.options(facts, steps[i])
        if want is not None and i == len(steps) - 1:
            got = [o for o in got if realiser.leaves_empty(want, facts, steps[i], o)]
        return got

    if not steps:
        return [], start
    stack.append((start, options(0, start), 0))
    while stack:
        facts, opts, k = stack[-1]
        i = len(stack) - 1
        if k >= len(opts):
            failed.add((i, facts))
            stack.pop()
            continue
        stack[-1] = (facts, opts, k + 1)
        nxt = realiser.after(facts, steps[i], opts[k])
        if i + 1 == len(steps):
            return [o for _f, os, j in stack for o in [os[j - 1]]], nxt
        stack.append((nxt, options(i + 1, nxt), 0))
    return None


class _Closing:
    """The world model of a closing search: realisable steps that break no property."""

    def __init__(self, realiser: Realiser) -> None:
        self.realiser = realiser
        self.cont = continuation_counters(realiser.policy)

    def start(self) -> Any:  # pragma: no cover - the closing search always passes its start
        return self.realiser.start()

    def advance(self, world: Any, step: Step) -> Any:
        _w, violations = advance_properties(self.realiser.policy, Watch(), step, self.cont)
        if violations or step.transition is None or step.event.name in self.realiser.policy.guardrails:
            return None  # a guardrail would need more tool batches played before it
        return self.realiser.advance(world, step)


def _closing_path(policy: Policy, realiser: Realiser, cfg: Config, facts: Facts) -> list[Step]:
    """The shortest realisable, clean way from ``cfg`` to a halt (to end a path that stops short)."""
    from .abstraction import build_analysis
    from .reach import shortest_counterexample

    an = build_analysis(policy)
    path, _n = shortest_counterexample(
        an,
        lambda step, child, viol: policy.states[step.after.state].kind == "halt",
        limit=5_000,
        start=(cfg, 0, False),
        world=_Closing(realiser),
        world_start=(frozenset({facts}), False),
    )
    if path is None:
        raise NotReplayable(f"no recordable way from '{cfg.state}' to a halt")
    out: list[Step] = []
    for s in path:
        st = policy.step(cfg, Event(s.event, dict(s.attrs)))
        out.append(st)
        cfg = st.after
    return out


def _plan(policy: Policy, realiser: Realiser, steps: Sequence[Step], options: Sequence[Option], notes: list[str]) -> list[_Planned]:
    """The run to record: the steps with their recordings, and before each guardrail the tool
    batches that make its detector fire (each one more model call and tool batch)."""
    planned: list[_Planned] = []
    batches: list[list[ToolResult]] = []
    serial = 0
    for i, (st, o) in enumerate(zip(steps, options)):
        kind = policy.states[st.before.state].kind
        if kind == "tool_exec" and o.guard is not None:
            o = _with_script(policy, realiser, steps, options, i, o, batches, planned, notes)
        elif kind == "tool_exec" and o.results:
            rs = []
            for r in o.results:  # every answer differs, so no detector fires where the path says it does not
                serial += 1
                rs.append(dataclasses.replace(r, content=f"result {serial}" if r.ok else f"failure {serial}"))
            o = dataclasses.replace(o, results=tuple(rs))
        if kind == "tool_exec" and o.results:
            batches.append([tool_result(r) for r in o.results])
        label = st.transition.label if st.transition else None
        planned.append(_Planned(st.before.state, Event(st.event.name, dict(o.attrs)), o, st.after.state, label))
    return planned


def _separate_approvals(planned: list[_Planned]) -> None:
    """A tool needs approval in every batch once the cassette says so; when the tool that waits
    for approval also runs elsewhere in the run, the waiting batch calls it under its own name."""
    ran = {r.tool for p in planned for r in p.option.results}
    for i, p in enumerate(planned):
        tool = p.option.approval
        if tool is None or tool not in ran or i == 0 or tool not in planned[i - 1].option.calls:
            continue
        fresh = f"{tool}_awaiting_approval"
        before = planned[i - 1]
        names = [fresh if n == tool else n for n in before.option.calls]
        attrs = dict(before.option.attrs, tools=names, count=len(names))
        resp = reply(_text(int(attrs.get("chars", 0) or 0), ""), tool_calls=[(n, {}) for n in names])
        before.option = dataclasses.replace(before.option, attrs=attrs, interaction=resp, calls=tuple(names), tools=tuple(names))
        before.event = Event(before.event.name, attrs)
        p.option = dataclasses.replace(p.option, attrs=dict(p.option.attrs, tool=fresh), approval=fresh)
        p.event = Event(p.event.name, dict(p.option.attrs))


def _with_script(
    policy: Policy,
    realiser: Realiser,
    steps: Sequence[Step],
    options: Sequence[Option],
    i: int,
    o: Option,
    batches: list[list[ToolResult]],
    planned: list[_Planned],
    notes: list[str],
) -> Option:
    """Insert, before the round that ends in guardrail step ``i``, the batches its detector needs."""
    code, tool = o.guard or "", str(o.attrs.get("tool"))
    period = int(o.attrs.get("period", 0) or 0)
    calls = options[i - 1].calls if i >= 1 else ()
    if i < 2 or policy.states[steps[i - 1].before.state].kind != "stream" or steps[i - 2].event.name != "opened" or not calls:
        raise NotReplayable(f"'{code}' fires on a tool batch, and step {i + 1} does not follow one")
    script = realiser.guard_script(code, tool, period, calls, batches)
    if script is None:
        raise NotReplayable(f"no sequence of tool batches makes '{code}' fire on '{tool}' first")
    inserted, final = script
    call_state, stream_state, exec_state = steps[i - 2].before.state, steps[i - 1].before.state, steps[i].before.state
    rounds: list[_Planned] = []
    for r in inserted:
        resp = reply(tool_calls=[(tool, json.loads(r.args))])
        tc = Option({"tools": [tool], "count": 1, "chars": 0}, interaction=resp, text=False, calls=(tool,), tools=(tool,))
        rounds += [
            _Planned(call_state, Event("opened", {}), Option({}, text=False), stream_state, None, True),
            _Planned(stream_state, Event("tool_calls", dict(tc.attrs)), tc, exec_state, None, True),
            _Planned(exec_state, Event("ok" if r.ok else "failed", {"tools": [tool]}), Option({"tools": [tool]}, results=(r,)), call_state, None, True),
        ]
        batches.append([tool_result(r)])
    at = len(planned) - 2  # before the round's own (call: opened) step, whose reply makes the final calls
    planned[at:at] = rounds
    if inserted:
        notes.append(f"{code}: {len(inserted)} tool batch(es) of '{tool}' are played before step {i + 1} so that the detector fires there")
    return dataclasses.replace(o, results=tuple(final))


def _check_plan(policy: Policy, planned: Sequence[_Planned]) -> None:
    """The planned run, with the recordings' own attributes, takes the counterexample's decisions."""
    cfg = policy.initial_config()
    for i, p in enumerate(planned):
        if cfg.state != p.state:
            raise NotReplayable(f"the recorded run is in '{cfg.state}' at step {i + 1}, not in '{p.state}'")
        st = policy.step(cfg, p.event)
        label = st.transition.label if st.transition else None
        if st.after.state != p.to or (not p.inserted and label != p.transition):
            raise NotReplayable(
                f"with the attributes the classifier reports, step {i + 1} ({p.state}: {p.event.name}) leads to "
                f"'{st.after.state}', not '{p.to}'"
            )
        cfg = st.after


def _record(planned: Sequence[_Planned]) -> _Build:
    b = _Build()
    for p in planned:
        o = p.option
        if o.interaction is not None:
            b.interactions.append(o.interaction)
        for t in o.tools:
            b.tools.setdefault(t, False)
        if o.approval is not None:
            b.tools[o.approval] = True
        for r in o.results:
            b.tools.setdefault(r.tool, False)
            if r.ok:
                b.results.append(ToolOutcome(r.tool, result=r.content or "result"))
            else:
                b.results.append(ToolOutcome(r.tool, error=r.content or "failure"))
    return b


def _reproduces(report: Any, planned: Sequence[_Planned], prop: str, cex: Counterexample, policy: Policy) -> str:
    """'' when the replay shows the counterexample: its decisions, and the failure it states."""
    from loopspec.replay.harness import halted

    if report.verdict == "diverged":
        return report.failures[0]
    want = [(p.state, p.event.name, p.to) for p in planned]
    got = [(s.state, s.event, s.target) for s in report.result.trace]
    if cex.loop_start is not None:
        if got[: len(want)] != want:
            return f"the replay's decisions {got[: len(want)]} differ from the counterexample's {want}"
        if halted(report.result, policy):
            return "the replayed turn halted"
    elif got != want:
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        return f"the replay parts from the counterexample at step {first + 1}: {got[first:first + 1]} instead of {want[first:first + 1]}"
    if prop in RUN_PROPERTIES:
        if not any(f.startswith(f"property {prop} fails") for f in report.failures):
            return f"the replay does not fail {prop}"
    elif cex.fires is not None:
        if not any(cex.fires[0] in f and "fired" in f for f in report.failures):
            return f"the replay does not fire {cex.fires[0]} more than {cex.fires[1]} times"
    return ""


def cassette_from_counterexample(
    policy: Policy,
    cex: Counterexample,
    prop: str,
    *,
    name: str | None = None,
    max_fires: tuple[tuple[str, int], ...] = (),
) -> Cassette:
    """A cassette reproducing ``cex`` under ``policy``; its expectations state ``prop``.

    Raises :class:`NotReplayable` when no recording reproduces the counterexample's decisions and
    failure in-process. A path that stops short of a halt is closed by the shortest way to one
    that breaks nothing; a ``halts`` lasso is left open (the replay's step limit ends it).
    """
    steps = _simulate(policy, cex.steps)
    if not steps and policy.states[policy.initial].kind != "halt":
        raise NotReplayable("the counterexample has no steps")
    want = None
    if prop == "halt_message" and steps:
        last = steps[-1]
        want = empty_when(policy.states[last.after.state].message, policy.states[last.before.state].kind, last.event.name)
        if want is None:
            raise NotReplayable(f"'{last.after.state}' cannot render an empty message when entered on {last.event.name}")
    realiser = Realiser(policy)
    chosen = _choose(realiser, steps, Facts(), want)
    if chosen is None:
        raise NotReplayable(_why_not(realiser, steps))
    options, facts = chosen
    ends_in_halt = not steps or policy.states[steps[-1].after.state].kind == "halt"
    if not ends_in_halt and cex.loop_start is None:
        closing = _closing_path(policy, realiser, steps[-1].after, facts)
        steps = steps + closing
        chosen = _choose(realiser, steps, Facts(), want)
        if chosen is None:
            raise NotReplayable("no recording reproduces the counterexample and the way from its end to a halt")
        options, facts = chosen
    notes: list[str] = []
    planned = _plan(policy, realiser, steps, options, notes)
    _separate_approvals(planned)
    _check_plan(policy, planned)
    b = _record(planned)
    if prop == "stub_not_silent":
        b.interactions.append(reply("The answer."))  # what a policy that recovers would go on to use
    if cex.fires is not None:
        max_fires = max_fires or (cex.fires,)
    expect = Expectations(
        properties=tuple(dict.fromkeys(p for p in ("history_valid", prop) if p in RUN_PROPERTIES)),
        all_played=prop == "stub_not_silent",
        max_fires=max_fires,
    )
    doc = f"Counterexample for property '{prop}' of policy '{policy.name}': {cex.note}".strip()
    if notes:
        doc += " Notes: " + "; ".join(notes)
    cassette = Cassette(
        name=name or f"{policy.name}-{prop}",
        file=f"{policy.name}-{prop}.cassette.yaml",
        doc=doc,
        source={"checker": "loopspec check", "policy": policy.file, "property": prop},
        messages=(_USER,),
        interactions=tuple(b.interactions),
        tools=tuple(ToolSpec(n, dict(_OBJECT), needs_approval=a) for n, a in b.tools.items()),
        tool_results=tuple(b.results),
        expect=expect,
    )
    from loopspec.replay.harness import replay

    compacts = any(isinstance(d.action, Compact) for st in steps for d in st.directives)
    problem = ""
    for padding in (0, 6, 12, 24) if compacts else (0,):
        attempt = dataclasses.replace(cassette, messages=(_USER, *_padding(padding)))
        report = _run(replay(attempt, policy))
        problem = _reproduces(report, planned, prop, cex, policy)
        if not problem:
            trace = tuple(RecordedStep(s.state, s.event, s.target, s.transition) for s in report.result.trace)
            return dataclasses.replace(attempt, trace=trace)
    raise NotReplayable(problem)


def _padding(n: int) -> list[dict[str, Any]]:
    """Earlier conversation, so that compaction has something to compact."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append({"role": "assistant" if i % 2 == 0 else "user", "content": f"Earlier message {i + 1}."})
    if out and out[-1]["role"] == "assistant":
        out.append({"role": "user", "content": "Go on."})
    return out


def _why_not(realiser: Realiser, steps: Sequence[Step]) -> str:
    """Which step no recording reproduces (the first one the classifier cannot say)."""
    worlds: Any = realiser.start()
    for i, st in enumerate(steps):
        nxt = realiser.advance(worlds, st)
        if nxt is None:
            attrs = ", ".join(f"{k}={v!r}" for k, v in st.event.attrs.items())
            kind = realiser.policy.states[st.before.state].kind
            why = "which no recording makes the classifier (or the interpreter) report there"
            if kind == "tool_exec" and not any(f.calls for f in worlds[0]):
                why = "but no tool call is pending there (the reply's calls were not sent to run), so the batch is empty and 'ok'"
            elif kind == "stub":
                why = "which the stream before it did not leave behind"
            elif kind == "escalate":
                why = "which the escalation does not report after the way it was entered"
            return f"step {i + 1} asks for {st.event.name}({attrs}) in '{st.before.state}', {why}"
        worlds = nxt
    return "no recording leaves the halt's message empty"


def counterexample_cassettes(policy: Policy, result: Any) -> dict[str, Cassette]:
    """One cassette per failed property of a :class:`CheckResult`, in the report's order.

    Each property's counterexample is tried first, then the checker's other candidates. When none
    can be recorded so that it replays to the same failure, no cassette is made for it and the
    counterexample is marked ``concrete=False`` with the reason in its note."""
    out: dict[str, Cassette] = {}
    for prop, cex in result.counterexamples().items():
        reasons: list[str] = []
        for cand in [cex, *cex.alternatives]:
            max_fires: tuple[tuple[str, int], ...] = ()
            if prop == "no_backstop_only_loops" and cand.fires is None:
                max_fires = tuple(
                    (loop.edge, policy.counters[policy.counter_index(loop.counter)].max)
                    for loop in result.backstop_only_loops
                    if loop.counter and loop.edge in {s.transition for s in cand.steps}
                )
            try:
                out[prop] = cassette_from_counterexample(policy, cand, prop, max_fires=max_fires)
            except NotReplayable as exc:
                reasons.append(str(exc))
                continue
            if cand is not cex:
                result.properties[prop].counterexample = cand
            break
        else:
            cex.concrete = False
            cex.note = (cex.note + " " if cex.note else "") + f"(no cassette reproduces it: {reasons[0]})"
    return out


def write_counterexamples(policy: Policy, result: Any, out: str) -> list[str]:
    """Write the counterexample cassettes: into ``out`` when it is a folder, else the first to
    ``out`` and each further one beside it with its property in the name. Returns the paths."""
    import os

    from loopspec.replay.cassette import write_cassette

    cassettes = counterexample_cassettes(policy, result)
    paths: list[str] = []
    for i, (prop, c) in enumerate(cassettes.items()):
        if os.path.isdir(out) or out.endswith(os.sep):
            os.makedirs(out, exist_ok=True)
            path = os.path.join(out, f"{policy.name}-{prop}.cassette.yaml")
        elif i == 0:
            path = out
        else:
            stem = out.removesuffix(".yaml").removesuffix(".cassette")
            path = f"{stem}-{prop}.cassette.yaml"
        write_cassette(dataclasses.replace(c, file=path), path)
        paths.append(path)
    return paths
