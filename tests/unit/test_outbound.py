"""Outbound calls, the pure part: the request's checks, Twilio's Calls create, pacing, AMD."""

from __future__ import annotations

import json

import pytest

from tests.support.call_core import ready_core, upstream
from voicebridge.core import realtime as rt
from voicebridge.core.outbound import (
    MAX_CONTEXT_BYTES,
    OUTBOUND_PARAMETER,
    OutboundRequest,
    Pacer,
    RequestError,
    amd_verdict,
    create_params,
    parse_request,
)

PROFILES = ("default", "reminders")


def parse(body: object, allow: tuple[str, ...] = ()) -> OutboundRequest:
    return parse_request(json.dumps(body).encode(), allow=allow, profiles=PROFILES)


def test_a_valid_request_keeps_its_profile_context_and_texts() -> None:
    """Numbers in the context become strings; the profile defaults to "default"."""
    request = parse(
        {
            "to": "+14155550199",
            "profile": "reminders",
            "context": {"name": "Ada", "slot": 15},
            "instructions": "Remind {param.name}.",
            "voicemail": "Call us back.",
        }
    )
    assert request == OutboundRequest(
        "+14155550199",
        "reminders",
        {"name": "Ada", "slot": "15"},
        "Remind {param.name}.",
        "Call us back.",
    )
    assert parse({"to": "+14155550199"}).profile == "default"
    assert OutboundRequest.decode(request.encode()) == request


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"to": "4155550199"}, 400, "E.164"),
        ({"to": "+0155550199"}, 400, "E.164"),
        ({"to": "+1415555019912345"}, 400, "E.164"),
        ({"to": "+14155550199", "profile": "sales"}, 400, "profile"),
        ({"to": "+14155550199", "context": ["a"]}, 400, "object"),
        ({"to": "+14155550199", "context": {"Name": "x"}}, 400, "lowercase"),
        ({"to": "+14155550199", "context": {"n": {"deep": 1}}}, 400, "string or a number"),
        ({"to": "+14155550199", "context": {"n": "x" * 101}}, 400, "100 characters"),
        ({"to": "+14155550199", "context": {"n": "x" * MAX_CONTEXT_BYTES}}, 413, "bytes"),
        ({"to": "+14155550199", "context": {f"k{i}": "v" for i in range(11)}}, 400, "keys"),
        ({"to": "+14155550199", "instructions": "Hi {who}"}, 400, "unknown field"),
        ({"to": "+14155550199", "from": "+1"}, 400, "unknown field"),
        ([1], 400, "JSON object"),
    ],
)
def test_a_bad_request_is_refused_in_one_sentence(body: object, status: int, words: str) -> None:
    """Each mistake gets its status and a message naming what is wrong."""
    with pytest.raises(RequestError, match=words) as caught:
        parse(body)
    assert caught.value.status == status


def test_outbound_allow_limits_destinations() -> None:
    """OUTBOUND_ALLOW's prefixes: other numbers are refused with 403."""
    assert parse({"to": "+14155550199"}, allow=("+1415", "+44")).to == "+14155550199"
    with pytest.raises(RequestError) as caught:
        parse({"to": "+33155550199"}, allow=("+1415", "+44"))
    assert caught.value.status == 403


def test_calls_create_asks_for_amd_and_signed_callbacks() -> None:
    """Url, StatusCallback and the AMD callback point at PUBLIC_URL; events repeat."""
    form = create_params(OutboundRequest("+14155550199"), "+14155550100", "https://v.example")
    assert ("To", "+14155550199") in form and ("From", "+14155550100") in form
    assert ("Url", "https://v.example/twilio/stream") in form
    assert [v for k, v in form if k == "StatusCallbackEvent"] == [
        "initiated",
        "ringing",
        "answered",
        "completed",
    ]
    assert ("MachineDetection", "DetectMessageEnd") in form and ("AsyncAmd", "true") in form
    assert ("AsyncAmdStatusCallback", "https://v.example/twilio/amd") in form


def test_the_context_travels_as_custom_parameters() -> None:
    """The stream's <Parameter>s: param_NAME for {param.NAME}, and the outbound mark."""
    request = OutboundRequest("+14155550199", "reminders", {"name": "Ada"})
    assert request.parameters() == {"param_name": "Ada", OUTBOUND_PARAMETER: "reminders"}


@pytest.mark.parametrize(
    ("answered_by", "verdict"),
    [
        ("human", "human"),
        ("machine_end_beep", "machine"),
        ("machine_end_silence", "machine"),
        ("machine_end_other", "machine"),
        ("machine_start", "end"),
        ("fax", "end"),
        ("unknown", "end"),
        ("", "end"),
    ],
)
def test_amd_verdicts(answered_by: str, verdict: str) -> None:
    """A person converses, a machine after its beep gets the message, the rest end."""
    assert amd_verdict(answered_by) == verdict


def test_a_burst_of_twenty_starts_one_a_second() -> None:
    """20 requests at once: the first starts now, the n-th n seconds later, never closer."""
    pacer = Pacer(1.0)
    delays = [pacer.reserve(100.0) for _ in range(20)]
    assert delays == [float(n) for n in range(20)]
    assert pacer.backlog(100.0) == 20.0


def test_pacing_resumes_after_a_pause() -> None:
    """After a quiet spell a request starts at once; the next waits the interval."""
    pacer = Pacer(2.0)
    assert pacer.reserve(0.0) == 0.0
    assert pacer.reserve(10.0) == 0.0
    assert pacer.reserve(10.1) == pytest.approx(0.4)
    assert pacer.backlog(20.0) == 0.0


def test_an_outbound_call_answers_nothing_until_the_verdict() -> None:
    """hold_answers: the callee's turn ("Hello?") is held, not answered; release_answers()
    (a person) answers it once; a call with nothing held asks for nothing."""
    core = ready_core(create=False)
    core.hold_answers = True
    assert core.receive_realtime(rt.Committed("u1"), 0.0) == []
    assert core.receive_realtime(rt.Committed("u2"), 10.0) == []
    [answer] = upstream(core.release_answers())
    assert answer["type"] == "response.create"
    quiet = ready_core(create=False)
    quiet.hold_answers = True
    assert quiet.release_answers() == []
    assert upstream(quiet.receive_realtime(rt.Committed("u1"), 0.0))[0]["type"] == (
        "response.create"
    )
