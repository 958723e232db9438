"""Connecting a business, end to end: the bridge under uvicorn, the fake model, the Twilio
emulator, the offline business backend on loopback and a fake Twilio REST API.

One wall-clock test per feature; their timings are tested in tests/shell.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tests.support.rest_fake import running_rest
from tests.support.servers import running_bridge
from tests.support.waiting import wait_until
from voicebridge.business_sim.backend import TOOLS_TOML, BusinessBackend, serving
from voicebridge.config import Secret, Settings
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.emulator import place_call
from voicebridge.twilio_sim.recordings import packaged_call

SECRET = "business-signing-secret-0123456789"
ACCOUNT = "AC" + "7" * 32
KEY_SID, KEY_SECRET = "SK" + "8" * 32, "api-key-secret-0123456789abcdef"


async def test_an_http_tool_and_the_call_events(
    fake: FakeRealtimeServer, settings: Settings, tmp_path: Path
) -> None:
    """The webhook's custom parameter, From and To reach the backend with the model's
    arguments, signed; the answer is the function output and the model speaks on; the
    backend then gets call.started and call.ended, signed."""
    backend = BusinessBackend(SECRET)
    fake.options = dataclasses.replace(
        fake.options,
        tool_call=("check_table", '{"party_size": 8, "time": "20:00"}'),
        tool_call_turn=1,
    )
    async with serving(backend) as url:
        tools = tmp_path / "tools.toml"
        tools.write_text(TOOLS_TOML.format(url=url, timeout_s=4))
        s = dataclasses.replace(
            settings,
            tools_file=str(tools),
            signing_secret=Secret(SECRET),
            call_events_url=url + "/events",
        )
        with running_bridge(s) as bridge:
            report = await place_call(
                bridge.webhook + "?tenant=roma",
                packaged_call("books_a_table"),
                speed=3.0,
                tail_ms=3000,
                timeout=60,
                from_="+14155550123",
                to="+18005550100",
            )
            await wait_until(lambda: len(backend.events) == 2, timeout=10)
    assert report.closed_by == "caller" and not report.violations
    [request] = backend.tool_requests
    assert request["arguments"] == {"party_size": 8, "time": "20:00"}
    assert request["call"] == {
        "call_sid": report.call_sid,
        "caller": "+14155550123",
        "called": "+18005550100",
        "profile": "default",
        "params": {"tenant": "roma"},
    }
    [session] = fake.sessions
    [output] = session.function_outputs
    assert json.loads(output["output"]) == {
        "available": False,
        "time": "20:00",
        "party_size": 8,
        "alternative": "two tables at 21:30",
    }
    kinds = [
        e["item"]["type"] if e["type"] == "conversation.item.create" else e["type"]
        for e in session.received
    ]
    # The model is asked to answer once the output is in (and it speaks: the call went on).
    assert "response.create" in kinds[kinds.index("function_call_output") :]
    started, ended = backend.events
    assert (started["type"], ended["type"]) == ("call.started", "call.ended")
    assert ended["call"]["call_sid"] == report.call_sid
    assert ended["outcome"] == "caller_hangup"
    assert "assistant" in {t["role"] for t in ended["transcript"]}
    assert backend.bad_signatures == 0


async def test_rest_endings_authenticate_with_an_api_key(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """With TWILIO_API_KEY_SID/SECRET the transfer's REST update goes through the async client
    with the key as Basic auth and the account SID in the URL; the fake refuses anything else."""
    fake.options = dataclasses.replace(
        fake.options, tool_call=("transfer_call", '{"destination": "sales"}')
    )
    with running_rest() as rest:
        rest.credentials = {f"{KEY_SID}:{KEY_SECRET}"}
        s = dataclasses.replace(
            settings,
            twilio_account_sid=ACCOUNT,
            twilio_api_key_sid=KEY_SID,
            twilio_api_key_secret=Secret(KEY_SECRET),
            twilio_api_base=rest.url,
            transfer_destinations="sales=+14155550100",
        )
        with running_bridge(s) as bridge:
            report = await place_call(
                bridge.webhook, packaged_call("books_a_table"), speed=3.0, tail_ms=8000, timeout=30
            )
            await wait_until(lambda: bridge.state.active_calls == 0)
            [result] = bridge.state.last_results
    [call] = rest.requests
    assert call.auth == f"{KEY_SID}:{KEY_SECRET}"
    assert call.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{report.call_sid}.json"
    assert call.form == {"Twiml": "<Response><Dial>+14155550100</Dial></Response>"}
    assert result.outcome == "transfer" and result.destination == "+14155550100"


async def test_a_number_with_a_profile_gets_its_own(
    fake: FakeRealtimeServer, settings: Settings, tmp_path: Path
) -> None:
    """The webhook and the session follow the number called: the profile's welcome in its
    language, its voice and instructions (the caller quoted); another number, the default."""
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        '[profiles.bistro]\nnumbers = ["+18005550100"]\nvoice = "cedar"\n'
        'welcome_say = "Bonjour"\nsay_language = "fr-FR"\n'
        'instructions = "You answer for the Bistro; the caller is {caller}."\n'
    )
    s = dataclasses.replace(settings, profiles_file=str(profiles))
    with running_bridge(s) as bridge:
        for to in ("+18005550100", "+18005550199"):
            await place_call(
                bridge.webhook,
                packaged_call("books_a_table"),
                speed=4.0,
                hangup_at_ms=2000,
                timeout=30,
                from_="+14155550123",
                to=to,
            )
        await wait_until(lambda: bridge.state.active_calls == 0)
    bistro, other = (session.received[0]["session"] for session in fake.sessions)
    assert bistro["audio"]["output"]["voice"] == "cedar"
    assert bistro["instructions"] == 'You answer for the Bistro; the caller is "+14155550123".'
    assert other["audio"]["output"]["voice"] == settings.voice
    assert other["instructions"] == settings.instructions
