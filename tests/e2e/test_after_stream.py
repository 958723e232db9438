"""The after-stream answer through real sockets: the emulator follows ``<Connect action>``
(signed, as Twilio signs it) and runs what the bridge answers. No REST credentials here."""

from __future__ import annotations

import dataclasses
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

from tests.support.servers import running_bridge
from tests.support.waiting import wait_until
from voicebridge.config import Secret, Settings
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.emulator import place_call
from voicebridge.twilio_sim.recordings import packaged_call
from voicebridge.twilio_sim.webhook_client import LocalProxy, call_params

PUBLIC = "https://voice.example.com"
AUTH = "after-stream-auth-token-0123456789"


async def test_end_call_without_rest_hangs_up_after_the_goodbye(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """end_call with no TWILIO_ACCOUNT_SID: the goodbye is heard, the stream closes (1000),
    and Twilio's signed action request gets a bare <Hangup/>: no apology."""
    fake.options = dataclasses.replace(fake.options, tool_call=("end_call", "{}"), tool_call_turn=2)
    signed = dataclasses.replace(settings, twilio_auth_token=Secret(AUTH), public_url=PUBLIC)
    with running_bridge(signed) as bridge:
        proxy = LocalProxy(bridge.url.removeprefix("http://"))
        report = await place_call(
            PUBLIC + "/twilio/stream",
            packaged_call("books_a_table"),
            auth_token=AUTH,
            proxy=proxy,
            speed=4.0,
            tail_ms=15000,
            timeout=40,
        )
        await wait_until(lambda: bridge.state.active_calls == 0)
        # Unsigned, the action is refused like any other forged Twilio request.
        request = urllib.request.Request(
            bridge.url + "/twilio/after-stream",
            data=urlencode(call_params(report.call_sid, "AC1", from_="+1", to="+2")).encode(),
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        refused.value.close()
    assert report.twiml is not None
    assert report.twiml.connect_action == PUBLIC + "/twilio/after-stream"
    assert (report.closed_by, report.close_code) == ("server", 1000)
    assert report.after_stream == (("Hangup", ""),)
    [session] = fake.sessions
    goodbye = list(session.items.values())[-1]
    heard = report.player.heard_ms(set(goodbye.deltas))
    assert heard > 1000 and heard == pytest.approx(goodbye.audio_ms_sent, abs=1)
    [result] = bridge.state.last_results
    assert (result.reason, result.outcome) == ("end_call", "deliberate")
    assert refused.value.code == 403
    assert bridge.state.metrics.after_stream == {"hangup": 1}


async def test_transfer_without_rest_reaches_dial(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """transfer_call with TRANSFER_DESTINATIONS and no REST credentials: <Dial> the number."""
    fake.options = dataclasses.replace(
        fake.options, tool_call=("transfer_call", '{"destination": "sales"}')
    )
    with running_bridge(settings, transfer_destinations="sales=+14155550100") as bridge:
        report = await place_call(
            bridge.webhook, packaged_call("books_a_table"), speed=3.0, tail_ms=8000, timeout=30
        )
        await wait_until(lambda: bridge.state.active_calls == 0)
    assert report.after_stream == (("Dial", "+14155550100"),)
    [result] = bridge.state.last_results
    assert result.outcome == "transfer"
