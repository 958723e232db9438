"""Outbound calls end to end: POST /calls on the bridge under uvicorn, the fake Twilio REST
API placing the call against it (signed callbacks, the webhook, the stream played by an
emulated callee, the AMD result), the fake model answering."""

from __future__ import annotations

import httpx
import pytest

from tests.support.outbound import (
    ACCOUNT,
    AUTH_TOKEN,
    CALLEE,
    CALLER_ID,
    PUBLIC,
    outbound,
    post_call,
)
from tests.support.waiting import wait_until
from voicebridge.business_sim.backend import BusinessBackend, serving
from voicebridge.config import Secret, Settings
from voicebridge.demo import outbound_demo
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.callee import busy, no_answer, person, voicemail

EVENTS_SECRET = "outbound-events-secret-0123456789"


async def test_post_calls_is_refused_without_the_token(settings: Settings) -> None:
    """Outbound calling is off without API_TOKEN; with it, a missing or wrong bearer token is
    refused, and Twilio is never asked to place a call; unsigned callbacks are refused."""
    async with outbound(settings, lambda to: person(), api_token=Secret("")) as (bridge, api):
        off = await post_call(bridge, {"to": CALLEE})
    async with outbound(settings, lambda to: person()) as (bridge, api):
        missing = await post_call(bridge, {"to": CALLEE}, token=None)
        wrong = await post_call(bridge, {"to": CALLEE}, token="not-the-token")
        bad_number = await post_call(bridge, {"to": "4155550199"})
        unknown_profile = await post_call(bridge, {"to": CALLEE, "profile": "nope"})
        async with httpx.AsyncClient() as client:
            forged = [
                (await client.post(bridge.url + path, data={"CallSid": "CA1", **extra})).status_code
                for path, extra in (
                    ("/twilio/amd", {"AnsweredBy": "fax"}),
                    ("/twilio/call-status", {"CallStatus": "busy"}),
                )
            ]
    assert off.status_code == 403 and "API_TOKEN" in off.json()["error"]
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert bad_number.status_code == 400 and "E.164" in bad_number.json()["error"]
    assert unknown_profile.status_code == 400
    assert forged == [403, 403]  # callbacks without Twilio's signature
    assert api.requests == []


async def test_a_person_answers_and_the_assistant_waits_for_hello(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """The fake REST gets a correct Calls create; the call runs through the bridge with the
    request's context in the instructions; the assistant is silent until the callee's
    "Hello?" and the AMD verdict, then answers it."""
    callee = person()
    async with outbound(
        settings,
        lambda to: callee,
        instructions="Remind {param.name} of the dentist at {param.time}.",
    ) as (bridge, api):
        answer = await post_call(bridge, {"to": CALLEE, "context": {"name": "Ada", "time": "3 pm"}})
        assert answer.status_code == 202, answer.text
        call_sid = answer.json()["call_sid"]
        placed = await api.wait_done(call_sid)
    [create] = api.requests
    assert create.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    assert create.auth == f"{ACCOUNT}:{AUTH_TOKEN}"
    assert (create.get("To"), create.get("From")) == (CALLEE, CALLER_ID)
    assert create.get("Url") == PUBLIC + "/twilio/stream"
    assert create.get("StatusCallback") == PUBLIC + "/twilio/call-status"
    assert create.all("StatusCallbackEvent") == ["initiated", "ringing", "answered", "completed"]
    assert create.get("MachineDetection") == "DetectMessageEnd"
    assert create.get("AsyncAmd") == "true"
    assert create.get("AsyncAmdStatusCallback") == PUBLIC + "/twilio/amd"
    # Every callback was signed and accepted (a bad signature is a 403).
    assert placed.callbacks and all(status == 204 for _, _, status in placed.callbacks)
    assert placed.statuses() == ["initiated", "ringing", "in-progress", "completed"]
    session = fake.sessions[-1]
    update = next(e for e in session.received if e["type"] == "session.update")
    assert update["session"]["instructions"] == 'Remind "Ada" of the dentist at "3 pm".'
    report = placed.report
    assert report is not None and not report.violations
    chunks = report.player.chunks
    assert chunks, "the assistant never spoke"
    assert min(c.start for c in chunks) >= callee.amd_at_ms  # after "Hello?" and the verdict
    assert report.closed_by == "caller"


async def test_a_voicemail_gets_the_message_after_the_beep(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """A voicemail greeting: the assistant speaks only after the beep, the message is heard
    whole, then the call ends deliberately (hung up through REST, never the apology)."""
    callee = voicemail()
    async with outbound(settings, lambda to: callee) as (bridge, api):
        answer = await post_call(
            bridge, {"to": CALLEE, "voicemail": "This is Bistro Roma: please call us back."}
        )
        assert answer.status_code == 202, answer.text
        placed = await api.wait_done(answer.json()["call_sid"])
        await wait_until(lambda: bridge.state.active_calls == 0)
        [result] = bridge.state.last_results
    report = placed.report
    assert report is not None and not report.violations
    chunks = report.player.chunks
    assert chunks, "no voicemail message"
    assert min(c.start for c in chunks) >= callee.speech_ends_ms  # after the beep
    assert all(c.played >= c.duration - 1 for c in chunks)  # heard whole, nothing cut
    assert (result.outcome, result.reason) == ("deliberate", "voicemail")
    hangup = [r for r in api.requests if r.get("Status") == "completed"]
    assert len(hangup) == 1 and placed.hung_up_by_rest
    assert placed.after_stream == ()  # hung up: no <Connect action>, no apology
    session = fake.sessions[-1]
    asked = [e for e in session.received if e["type"] == "response.create"]
    assert len(asked) == 1  # the greeting was never answered: only the message was asked for
    assert "please call us back" in asked[0]["response"]["instructions"]


async def test_busy_and_no_answer_are_reported(settings: Settings) -> None:
    """A busy line and one nobody answers: their status callbacks are verified and counted."""
    callees = {"+14155550001": busy(), "+14155550002": no_answer()}
    async with outbound(settings, lambda to: callees[to], outbound_calls_per_s=50.0) as (
        bridge,
        api,
    ):
        sids = []
        for number in callees:
            answer = await post_call(bridge, {"to": number})
            assert answer.status_code == 202
            sids.append(answer.json()["call_sid"])
        placed = [await api.wait_done(sid) for sid in sids]
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(bridge.url + "/metrics")).text
    assert [p.statuses()[-1] for p in placed] == ["busy", "no-answer"]
    assert 'voicebridge_outbound_call_status_total{status="busy"} 1.0' in metrics
    assert 'voicebridge_outbound_call_status_total{status="no-answer"} 1.0' in metrics
    assert 'voicebridge_outbound_requests_total{result="placed"} 2.0' in metrics


async def test_the_outbound_demo_shows_both_callees(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`voicebridge demo --outbound`: a person answered after their hello, a voicemail given
    the message after its beep and hung up, every callback signed."""
    assert await outbound_demo(settings) == 0
    out = capsys.readouterr().out
    assert out.count("HTTP 202") == 2 and "0 refused as unsigned" in out
    assert "AMD said 'human'" in out and "AMD said 'machine_end_beep'" in out
    assert "the bridge hung up through the REST API" in out and "heard whole" in out
    assert 'Call "Ada" to confirm the table at "7:30 pm".' in out


async def test_call_progress_is_sent_as_call_events(settings: Settings) -> None:
    """With CALL_EVENTS_URL, each status callback of an outbound call reaches the business
    backend as a signed call.status event."""
    backend = BusinessBackend(EVENTS_SECRET)
    async with serving(backend) as url:
        async with outbound(
            settings,
            lambda to: busy(),
            call_events_url=url + "/events",
            signing_secret=Secret(EVENTS_SECRET),
        ) as (bridge, api):
            answer = await post_call(bridge, {"to": CALLEE})
            await api.wait_done(answer.json()["call_sid"])
            await wait_until(lambda: len(backend.events) == 3, timeout=10)
    assert [(e["type"], e["status"]) for e in backend.events] == [
        ("call.status", "initiated"),
        ("call.status", "ringing"),
        ("call.status", "busy"),
    ]
    assert {e["call_sid"] for e in backend.events} == {answer.json()["call_sid"]}
    assert backend.bad_signatures == 0
