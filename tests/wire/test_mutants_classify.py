"""Tests against the mutants of ``wire/classify.py`` that the suite let live (a mutation analysis by
hand: each bug planted in the classifier, seen to survive the wire, engine and replay tests, and
killed by a test here). The classifier is pure, so these call it directly, on real litellm, openai
and httpx exception objects where the input is one a provider raises. Each test names the plant it
kills in its docstring."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx  # noqa: E402
import litellm  # noqa: E402
import openai  # noqa: E402
from litellm.exceptions import MidStreamFallbackError  # noqa: E402

from loopspec.language.alphabet import Event  # noqa: E402
from loopspec.wire.assemble import AssembledReply, AssembledToolCall  # noqa: E402
from loopspec.wire.classify import classify_exception, classify_reply, parse_tool_arguments, validate_tool_arguments  # noqa: E402

litellm.suppress_debug_info = True
M, P = "x", "openai"


def call(exc: BaseException, secrets: tuple[str, ...] = ()) -> Event:
    return classify_exception(exc, phase="call", secrets=secrets)


def calls_reply(*calls: tuple[str | None, str], text: str = "") -> AssembledReply:
    return AssembledReply(text=text, tool_calls=[AssembledToolCall(i, f"call_{i}", n, a) for i, (n, a) in enumerate(calls)],
                          finish_reason="tool_calls")


def request() -> httpx.Request:
    return httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")


# -- tool arguments ------------------------------------------------------------------------------


def test_whitespace_arguments_are_a_call_without_arguments() -> None:
    """Plant C06: ``if not arguments:`` (whitespace no longer counts as ``{}``), so a no-argument
    call streamed as a blank (Anthropic's ``partial_json`` of spaces) became malformed_args."""
    assert parse_tool_arguments(" \n") == {}
    assert validate_tool_arguments("  ", {"type": "object", "properties": {}}) is None
    assert classify_reply(calls_reply(("noop", "  ")), {"noop": None}).name == "tool_calls"


def test_arguments_that_are_json_but_not_an_object_are_malformed() -> None:
    """Plant C08: ``parse_tool_arguments`` returned any JSON value, so a list, a string or a number
    passed for arguments to a tool with no schema and reached the tool as ``**[1]``."""
    for raw in ("[1]", '"city"', "3", "null"):
        assert parse_tool_arguments(raw) is None, raw
        assert validate_tool_arguments(raw, None) == "arguments are not a JSON object", raw
        assert classify_reply(calls_reply(("noop", raw)), {"noop": None}).name == "malformed_args", raw


NUMBER = {"type": "object", "properties": {"n": {"type": "number"}}}


def test_a_number_property_takes_integers_and_floats_but_not_booleans() -> None:
    """Plants C10 (a boolean passes for a number: ``True`` is an int in Python) and C11 (an integer
    no longer passes for a number, which JSON Schema says it is)."""
    assert validate_tool_arguments('{"n": 3}', NUMBER) is None
    assert validate_tool_arguments('{"n": 2.5}', NUMBER) is None
    assert validate_tool_arguments('{"n": true}', NUMBER) == "property 'n' is not number"


def test_a_whole_tool_dict_is_read_only_when_its_function_is_a_dict() -> None:
    """Plant C13: ``"function" in spec or ...``: a bare schema with a top-level ``function`` key
    that is not a dict (a description field) was taken for an OpenAI tool and crashed the check."""
    schema = {"type": "object", "function": "looks a city up", "properties": {"n": {"type": "integer"}}}
    assert validate_tool_arguments('{"n": 1}', schema) is None
    assert validate_tool_arguments('{"n": "one"}', schema) == "property 'n' is not integer"


def test_only_additional_properties_false_rejects_an_undeclared_key() -> None:
    """Plant C16 (``or props``): a schema that declares properties without ``additionalProperties:
    false`` rejected every other key, which JSON Schema allows."""
    open_schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert validate_tool_arguments('{"a": 1, "b": 2}', open_schema) is None
    closed = {**open_schema, "additionalProperties": False}
    assert validate_tool_arguments('{"a": 1, "b": 2}', closed) == "unexpected property 'b'"


def test_every_argument_is_checked_after_an_unknown_or_untyped_one() -> None:
    """Plants C18 and C19: ``continue`` → ``return None`` after an undeclared key or a property
    without a type, so a wrongly typed argument after it went unchecked."""
    schema = {"type": "object", "properties": {"free": {"description": "anything"}, "n": {"type": "integer"}}}
    assert validate_tool_arguments('{"extra": 1, "n": "x"}', schema) == "property 'n' is not integer"
    assert validate_tool_arguments('{"free": [1], "n": "x"}', schema) == "property 'n' is not integer"


def test_an_unknown_type_name_is_not_checked() -> None:
    """Plant C21: a type name this small checker does not know (``"any"``, a typo, a format) fails
    every value instead of passing it to the tool, which does the deeper checks."""
    assert validate_tool_arguments('{"x": 1}', {"type": "object", "properties": {"x": {"type": "any"}}}) is None
    assert validate_tool_arguments('{"x": 1}', {"type": "object", "properties": {"x": {"type": ["any", "null"]}}}) is None


# -- replies ---------------------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_length_reports_the_cut_tool_calls_and_thinking_only_apart_from_the_text() -> None:
    """Plants C26 (``has_tool_calls`` read from the text: a cut reply of only tool calls said it had
    none) and C27 (``not calls`` dropped from ``thinking_only``: a cut reply with calls and
    reasoning but no text said it was only thinking)."""
    cut = AssembledReply(reasoning="plan", tool_calls=[AssembledToolCall(0, "c0", "noop", '{"a')], finish_reason="length")
    ev = classify_reply(cut, {"noop": None})
    assert ev.name == "length"
    assert (ev.attrs["has_tool_calls"], ev.attrs["dropped_tools"], ev.attrs["thinking_only"]) == (True, ["noop"], False)
    ev = classify_reply(AssembledReply(text="Half an ans", finish_reason="length"), {})
    assert (ev.attrs["has_tool_calls"], ev.attrs["thinking_only"], ev.attrs["chars"]) == (False, False, 11)


def test_malformed_args_names_only_the_calls_that_are_malformed() -> None:
    """Plant C30: the event named every call of the reply, so a policy message or guard on
    ``tools`` blamed the well-formed call too."""
    ev = classify_reply(calls_reply(("noop", "{}"), ("weather", '{"town": "Oslo"}')), {"weather": SCHEMA, "noop": None})
    assert (ev.name, ev.attrs) == ("malformed_args", {"tools": ["weather"]})


def test_a_call_without_a_name_is_an_unknown_tool() -> None:
    """Plant C31: a call whose name never arrived was left out of the unknown ones and reached
    execution as ``tool_calls``."""
    ev = classify_reply(calls_reply((None, "{}")), {"noop": None})
    assert (ev.name, ev.attrs) == ("unknown_tool", {"tools": [""]})


def test_tool_calls_counts_every_call_and_the_text_before_them() -> None:
    """Plants C32 (``count`` of distinct names: two calls of one tool counted once) and C33
    (``chars`` 0: the text that came with the calls not counted)."""
    ev = classify_reply(calls_reply(("noop", "{}"), ("noop", "{}"), text="Checking."), {"noop": None})
    assert (ev.name, ev.attrs) == ("tool_calls", {"tools": ["noop", "noop"], "count": 2, "chars": 9})


def test_a_reply_with_only_signed_thinking_blocks_is_thinking_only() -> None:
    """Plant C35: thinking blocks without reasoning text (Anthropic's redacted thinking) made the
    reply ``empty`` instead of ``thinking_only``."""
    r = AssembledReply(thinking_blocks=[{"type": "redacted_thinking", "data": "abc"}], finish_reason="stop")
    assert classify_reply(r, {}).name == "thinking_only"


# -- exceptions --------------------------------------------------------------------------------


class Wrapper(Exception):
    """An error that carries the one it wraps as ``original_exception`` (as litellm's do) and
    words itself without it."""

    def __init__(self, message: str, original: BaseException) -> None:
        super().__init__(message)
        self.original_exception = original


def test_a_stream_failure_is_read_from_the_wrapped_error_too() -> None:
    """Plants C38 and C79: the broken cause was read from the wrapper's message alone, so a
    disconnect that only the wrapped error names became ``provider_error``. (litellm's
    MidStreamFallbackError repeats the original in its own message; a wrapper need not.)"""
    ev = classify_exception(Wrapper("stream failed", ConnectionResetError("Connection reset by peer")), phase="stream")
    assert (ev.name, ev.attrs["cause"], ev.attrs["message"]) == ("broken", "disconnect", "stream failed")
    ev = classify_exception(Wrapper("stream failed", ValueError("maximum context length is 8192 tokens")), phase="stream")
    assert ev.attrs["cause"] == "overflow"


def test_a_stream_that_failed_before_its_first_chunk_is_classified_by_the_error_it_wraps() -> None:
    """Plant C40: the MidStreamFallbackError wrapper was classified itself (its class is a
    ServiceUnavailableError, its status the wrapped one's), so an overflow litellm names only by the
    wrapped class became a bad_request and was never compacted."""
    original = litellm.ContextWindowExceededError("Input validation error: inputs tokens + max_new_tokens must be <= 4096", M, P)
    wrapper = MidStreamFallbackError(message=str(original), model=M, llm_provider=P, original_exception=original)
    assert call(wrapper).name == "context_overflow"


def test_a_missing_package_is_a_configuration_error_however_it_is_worded() -> None:
    """Plant C42: only "no module named" recognised, so litellm's "tenacity import failed" without
    it was retried as a 500 would be; the message says what to install."""
    ev = call(Exception("tenacity import failed please run `pip install tenacity`"))
    assert ev.name == "bad_request" and ev.attrs["message"].startswith("configuration error")


def test_openai_missing_api_key_is_auth() -> None:
    """Plant C44: the OpenAI client's "api_key client option must be set" fell through to
    ``bad_request`` (or transient when litellm wraps it as a 500); no retry finds a key."""
    msg = "The api_key client option must be set either by passing api_key to the client or by setting the OPENAI_API_KEY environment variable"
    assert call(openai.OpenAIError(msg)).name == "auth"
    assert call(litellm.InternalServerError(msg, P, M)).name == "auth"


def test_class_named_errors_without_a_status_get_their_status() -> None:
    """Plants C45, C49 and C59: an error recognised by class name but carrying no status code (httpx's
    ReadTimeout, a wrapper's own ContextWindowExceededError/BadRequestError) reported status 0; the
    events promise 400, 408 and 400."""

    class ContextWindowExceededError(Exception):
        pass

    class BadRequestError(Exception):
        pass

    assert (call(ContextWindowExceededError("too long")).name, call(ContextWindowExceededError("too long")).attrs["status"]) == ("context_overflow", 400)
    ev = call(httpx.ReadTimeout("read timed out"))
    assert (ev.name, ev.attrs["status"]) == ("timeout", 408)
    ev = call(BadRequestError("bad"))
    assert (ev.name, ev.attrs["status"]) == ("bad_request", 400)


def test_statuses_alone_decide_when_the_class_says_nothing() -> None:
    """Plants C48 (408), C50 (403), C51 (413 with an overflow message), C58 (400), C60 (499) and C61
    (500): a bare ``litellm.APIError`` (or a recorded reply) carries only its status, and each status
    has its event."""
    rows = [(408, "request timeout", "timeout"), (403, "forbidden", "auth"), (413, "prompt is too long", "context_overflow"),
            (400, "bad", "bad_request"), (499, "client closed request", "bad_request"), (500, "oops", "transient")]
    for status, message, name in rows:
        ev = call(litellm.APIError(status, message, P, M))
        assert (ev.name, ev.attrs["status"]) == (name, status), (status, ev)
    ev = call(httpx.HTTPStatusError("Server error", request=request(), response=httpx.Response(500, request=request())))
    assert (ev.name, ev.attrs["status"]) == ("transient", 500)


def test_an_overflow_phrase_in_another_client_error_is_not_an_overflow() -> None:
    """Plant C52: any 4xx whose message mentions the context window became context_overflow, so a
    404 for a missing model was answered by compacting the history."""
    ev = call(litellm.NotFoundError("The model `x` with a 128k context window does not exist", M, P))
    assert (ev.name, ev.attrs["status"]) == ("bad_request", 404)


def test_every_wording_of_an_unsupported_effort_is_effort_unsupported() -> None:
    """Plants C53-C55: each wording the effort rule knows, dropped in turn ("reasoning effort",
    "effort level", "unsupported parameter ... effort")."""
    for message in ("Reasoning effort 'max' is invalid for this model", "Invalid effort level for this model",
                    "Unsupported parameter: 'output_config.effort'"):
        assert call(litellm.BadRequestError(message, M, P)).name == "effort_unsupported", message


def test_other_unsupported_features_and_signatures_are_plain_bad_requests() -> None:
    """Plants C56 ("does not support" without "effort") and C57 (``signature`` or ``thinking``): a
    model that does not support tools, or a request signature, is not about effort or thinking."""
    for message in ("This model does not support tools", "Invalid request signature", "thinking is not enabled"):
        assert call(litellm.BadRequestError(message, M, P)).name == "bad_request", message


def test_an_openai_api_error_without_status_is_transient() -> None:
    """Plant C62: ``"APIError" in names`` dropped, so the OpenAI SDK's bare APIError (a stream the
    server ended, no status) became a bad_request that no retry is tried for."""
    ev = call(openai.APIError("stream ended unexpectedly", request(), body=None))
    assert (ev.name, ev.attrs["status"]) == ("transient", 0)


def test_a_network_oserror_is_transient_and_an_unknown_error_names_its_class() -> None:
    """Plants C64 (only ConnectionError transient: "Network is unreachable" is a plain OSError) and
    C65 (an unknown error's message lost its class name, the only clue left in the halt message)."""
    assert call(OSError(101, "Network is unreachable")).name == "transient"
    ev = call(ValueError("weird"))
    assert (ev.name, ev.attrs["message"]) == ("bad_request", "ValueError: weird")


def test_an_error_without_a_message_is_named_by_its_class() -> None:
    """Plant C77: an exception with an empty message left the event's message empty."""
    assert call(TimeoutError()).attrs["message"] == "TimeoutError"


def test_the_status_is_read_from_the_response_when_the_error_has_none() -> None:
    """Plant C66: only the exception's own ``status_code`` read; httpx's HTTPStatusError carries it
    on ``response``."""
    ev = call(httpx.HTTPStatusError("Service Unavailable", request=request(), response=httpx.Response(503, request=request())))
    assert (ev.name, ev.attrs["status"]) == ("transient", 503)


def rate_limited(headers: dict[str, str] | None = None, message: str = "slow down") -> Event:
    return call(litellm.RateLimitError(message, P, M, headers=headers))


def test_retry_after_in_every_form_providers_send() -> None:
    """Plants C67 (a negative Retry-After waited negative time), C68 (an HTTP date not taken
    relative to now: a date in the past asked for 46 years), C70 and C73 (the capitalised header
    names a plain dict carries), C72 ("try again in 500ms" read as 500 s)."""
    assert rate_limited({"retry-after": "-5"}).attrs["retry_after"] == 0.0
    assert rate_limited({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}).attrs["retry_after"] == 0.0
    assert rate_limited({"Retry-After-Ms": "1500"}).attrs["retry_after"] == 1.5
    assert rate_limited({"Retry-After": "7"}).attrs["retry_after"] == 7.0
    assert rate_limited(message="Rate limit reached. Please try again in 500ms.").attrs["retry_after"] == 0.5


def test_the_classifier_leaves_judging_the_wait_to_the_policy() -> None:
    """Plant C75: the classifier set ``wait_too_long`` itself; it cannot know the policy's
    ``max_wait``, so every consumer that reads its event unjudged (the recorder, a caller of
    ``classify_exception``) saw a wait too long that the policy would take."""
    ev = rate_limited({"retry-after": "1"})
    assert (ev.attrs["retry_after"], ev.attrs["wait_too_long"]) == (1.0, False)
    assert call(litellm.InternalServerError("oops", P, M)).attrs["wait_too_long"] is False


def test_the_providers_error_code_is_kept() -> None:
    """Plants C74 and C80: the event's ``code`` always empty, so a policy could not tell a 429 for
    an exhausted quota (no retry fixes it) from a rate limit."""
    msg = "{'error': {'message': 'You exceeded your current quota', 'type': 'insufficient_quota', 'code': 'insufficient_quota'}}"
    assert rate_limited(message=msg).attrs["code"] == "insufficient_quota"


def test_the_callers_secrets_are_redacted_from_the_message() -> None:
    """Plant C78: ``secrets`` not passed on, so a key the patterns do not know (a proxy's) was
    echoed into the halt message."""
    key = "plainkey0123456789abcdef"
    ev = call(litellm.AuthenticationError(f"Incorrect API key provided: {key}", P, M), secrets=(key,))
    assert key not in ev.attrs["message"] and "Incorrect API key provided" in ev.attrs["message"]


def test_a_tool_without_arguments_that_forbids_extra_ones_rejects_any() -> None:
    """A no-argument tool declared ``{properties: {}, additionalProperties: false}`` (or without
    ``properties``) accepts ``{}`` and rejects any key, as JSON Schema says: the call is malformed,
    not a tool run that fails on an unexpected keyword (the open C17 of the hand analysis, fixed)."""
    for schema in ({"type": "object", "properties": {}, "additionalProperties": False},
                   {"type": "object", "additionalProperties": False}):
        assert validate_tool_arguments("{}", schema) is None
        assert validate_tool_arguments('{"x": 1}', schema) == "unexpected property 'x'"


# -- mutmut's own mutants of the module, planted one at a time (2026-12-03) --------------------


def test_the_canonical_form_of_arguments_is_fixed_text() -> None:
    """mutmut ``canonical_json_10`` (another item separator): the canonical text feeds the loop
    detectors' signatures, which a journal's checkpoint keeps across a crash and a resume reads
    back, possibly in a newer loopspec. The form is keys sorted, no whitespace, non-ASCII as
    written, so a signature written before an upgrade still matches the same call after it."""
    from loopspec.wire.classify import canonical_arguments, canonical_json

    assert canonical_json({"b": [1, 2], "a": {"y": "Zürich", "x": None}}) == '{"a":{"x":null,"y":"Zürich"},"b":[1,2]}'
    assert canonical_arguments(' { "b" : [1, 2] , "a" : 1 } ') == '{"a":1,"b":[1,2]}'


def test_a_cut_call_whose_name_never_arrived_is_dropped_as_an_empty_name() -> None:
    """mutmut ``_names_2``: a truncated reply's call whose name had not streamed yet was reported
    under a made-up name in ``dropped_tools``. A policy message or guard reads that list; the
    nameless call is ``''`` there as everywhere else (``unknown_tool``'s list, a pending call)."""
    cut = AssembledReply(tool_calls=[AssembledToolCall(0, "c0", None, '{"a')], finish_reason="length")
    assert classify_reply(cut, {"noop": None}).attrs["dropped_tools"] == [""]


def test_a_reply_that_ended_without_a_finish_reason_reports_none() -> None:
    """mutmut ``classify_reply_3``: a stream that ended without a finish reason (a proxy that never
    sends one) got a made-up one in the event, which a guard on ``finish_reason`` would match
    as if the provider had sent it."""
    assert classify_reply(AssembledReply(text="Paris."), {}).attrs["finish_reason"] == ""
    assert classify_reply(AssembledReply(), {}).attrs == {"finish_reason": ""}
    assert classify_reply(AssembledReply(reasoning="hm"), {}).attrs == {"finish_reason": ""}


def test_an_error_whose_text_is_only_in_its_message_attribute_keeps_that_text() -> None:
    """mutmut ``_message_of_7``, ``_8``, ``_14`` and ``_15``: an exception with no arguments but a
    ``message`` attribute (as some SDKs set it) lost the text and was named by its class only."""

    class QuietError(Exception):
        def __init__(self, message: str) -> None:
            super().__init__()
            self.message = message

    ev = call(QuietError("upstream said no"))
    assert (ev.name, ev.attrs["message"]) == ("bad_request", "QuietError: upstream said no")


def test_a_retry_after_http_date_in_the_future_is_waited_for() -> None:
    """mutmut ``_parse_retry_after_11``: an HTTP-date Retry-After was never parsed, so a provider
    asking for a minute's pause got none (the date in the past above waits 0 either way)."""
    import email.utils
    import time

    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55.0 <= rate_limited({"retry-after": when}).attrs["retry_after"] <= 60.0


def test_malformed_args_names_each_call_by_its_own_name_even_an_empty_one() -> None:
    """mutmut ``classify_reply_38``: a malformed call was named by ``name or 'XXXX'``. A registry
    never names a tool ``''`` (it falls back to the function's name), but ``classify_reply`` takes
    any mapping (a cassette's tools), and the list must name exactly the calls that were sent."""
    ev = classify_reply(calls_reply(("", '{"n": "x"}')), {"": NUMBER})
    assert (ev.name, ev.attrs) == ("malformed_args", {"tools": [""]})


def test_the_two_remaining_wordings_of_an_unsupported_effort_and_one_that_is_not() -> None:
    """mutmut ``_is_effort_message_5``, ``_6`` and ``_22`` to ``_25``: the wordings the test above
    leaves out, each alone in its message (OpenAI names the parameter; a model "does not support"
    an effort), were not recognised; and an effort message that is no refusal of the parameter
    (a bad value) must stay a plain bad request rather than lower the effort."""
    for message in ("Unrecognized request argument supplied: reasoning_effort",
                    "This model does not support the 'effort' setting"):
        assert call(litellm.BadRequestError(message, M, P)).name == "effort_unsupported", message
    assert call(litellm.BadRequestError("Invalid value for effort: 'ultra'", M, P)).name == "bad_request"


def test_an_event_without_a_wait_or_a_code_says_so() -> None:
    """mutmut ``_call_event_1`` (a default wait of 1 s) and ``error_code_7`` (a made-up code): a
    500 asks for no wait beyond the policy's backoff, and a message without a provider code has
    the code '' that a policy's ``code`` guard compares against."""
    ev = call(litellm.InternalServerError("oops", P, M))
    assert (ev.name, ev.attrs["retry_after"], ev.attrs["code"]) == ("transient", 0.0, "")
    assert rate_limited(message="slow down").attrs["code"] == ""


def test_retry_after_is_read_from_the_response_when_the_error_has_no_headers() -> None:
    """mutmut ``_retry_after_6`` and ``_33``: an error without a ``headers`` attribute (httpx's
    HTTPStatusError) raised while its wait was read, and headers that are not a mapping (a list of
    pairs) stopped the search before the response's own headers."""
    response = httpx.Response(429, headers={"Retry-After": "7"}, request=request())
    ev = call(httpx.HTTPStatusError("Too Many Requests", request=request(), response=response))
    assert (ev.name, ev.attrs["retry_after"]) == ("rate_limit", 7.0)
    listed = httpx.HTTPStatusError("Too Many Requests", request=request(), response=response)
    listed.headers = [("retry-after", "3")]  # type: ignore[attr-defined]
    assert call(listed).attrs["retry_after"] == 7.0


def test_a_stream_failure_without_a_wrapped_error_is_read_from_its_own_message() -> None:
    """mutmut ``_classify_exception_30``: a mid-stream error that wraps nothing (a socket reset
    raised as it is) lost its text before the cause was read, and the classifier raised."""
    ev = classify_exception(ConnectionResetError("Connection reset by peer"), phase="stream")
    assert (ev.name, ev.attrs["cause"], ev.attrs["chars"]) == ("broken", "disconnect", 0)
    ev = classify_exception(ValueError("prompt is too long"), phase="stream")
    assert (ev.name, ev.attrs["cause"]) == ("broken", "overflow")


def test_only_a_mid_stream_fallback_is_classified_by_the_error_it_wraps() -> None:
    """mutmut ``_classify_exception_57`` (``and`` read as ``or``): every litellm error carrying an
    ``original_exception`` was classified by that one, so a rejected key whose cause was recorded
    as a timeout was retried as a timeout instead of halting as auth."""
    exc = litellm.AuthenticationError("Incorrect API key provided", P, M)
    exc.original_exception = TimeoutError("timed out")  # type: ignore[attr-defined]
    assert call(exc).name == "auth"


def test_errors_named_by_their_class_alone_are_what_the_class_says() -> None:
    """mutmut ``_classify_exception_117`` to ``_119`` and ``_180``: an SDK error named
    RateLimitError without a status was not a rate limit, and one named BadRequestError without a
    status that says the prompt is too long was not an overflow (litellm's own carry a status,
    which hid both)."""

    class RateLimitError(Exception):
        pass

    class BadRequestError(Exception):
        pass

    ev = call(RateLimitError("slow down"))
    assert (ev.name, ev.attrs["status"]) == ("rate_limit", 429)
    ev = call(BadRequestError("prompt is too long: 210000 tokens"))
    assert (ev.name, ev.attrs["status"]) == ("context_overflow", 0)


def test_a_server_error_that_mentions_effort_is_retried_not_an_effort_refusal() -> None:
    """mutmut ``_classify_exception_167``, ``_175`` and ``_176``: a 500 (or any status but 400)
    entered the client-error rules, so a server fault whose text mentions the reasoning effort
    lowered the effort instead of being retried."""
    ev = call(litellm.InternalServerError("upstream crashed while applying reasoning_effort", P, M))
    assert ev.name == "transient"
    assert call(Exception("reasoning_effort could not be read")).name == "bad_request"


def test_errors_without_a_status_report_status_zero() -> None:
    """mutmut ``_classify_exception_260`` and ``_268``: an OS error or an unknown exception
    carried no status at all (None), where the alphabet promises an int (0: none)."""
    for exc in (OSError(101, "Network is unreachable"), ValueError("weird")):
        assert call(exc).attrs["status"] == 0, exc
