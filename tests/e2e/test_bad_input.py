"""Garbage from Twilio's side never crashes the bridge, leaks, or touches another call."""

from __future__ import annotations

import asyncio
from collections import Counter
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import connect

from tests.support.bad_twilio_input import BAD_INPUTS, FRAME, writer
from tests.support.servers import Bridge, running_bridge
from tests.support.waiting import wait_until
from voicebridge.config import Settings
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.emulator import place_call
from voicebridge.twilio_sim.recordings import packaged_call
from voicebridge.twilio_sim.webhook_client import call_params, new_sid, post_webhook


async def bad_call(bridge: Bridge) -> Counter[str]:
    """A call that sends every bad input once, between good media; the reasons it sent."""
    call_sid = new_sid("CA")
    answer = await post_webhook(bridge.webhook, call_params(call_sid, "AC1", from_="+1", to="+2"))
    assert answer.twiml is not None
    w = writer(new_sid("MZ"), call_sid, answer.twiml.parameters)
    async with connect(bridge.ws_url) as ws:
        await ws.send(w.connected())
        for bad in BAD_INPUTS:
            if bad.before_start:
                await ws.send(bad.frame(w))
        await ws.send(w.start())
        for _ in range(10):
            await ws.send(w.media(FRAME, w.chunk * 20))
        for bad in BAD_INPUTS:
            if not bad.before_start:
                await ws.send(bad.frame(w))
                await ws.send(w.media(FRAME, w.chunk * 20))
        for _ in range(18):
            await ws.send(w.media(FRAME, w.chunk * 20))
            await asyncio.sleep(0.005)
        await ws.send(w.stop())
    return Counter(bad.reason for bad in BAD_INPUTS)


async def test_bad_twilio_input_is_counted_and_survived(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """Every kind of bad input is counted; the call goes on; a concurrent call and the next
    call are fine. (Each kind's own checks: tests/unit/test_twilio_bad_input.py.)"""
    with running_bridge(settings) as bridge:
        async with asyncio.TaskGroup() as tg:
            healthy = tg.create_task(
                place_call(bridge.webhook, packaged_call("books_a_table"), speed=6.0, tail_ms=1500)
            )
            await asyncio.sleep(0.2)
            sent = tg.create_task(bad_call(bridge))
        await wait_until(lambda: bridge.state.active_calls == 0)
        results = {r.call_sid: r for r in bridge.state.last_results}
        report = healthy.result()
        bad = [r for sid, r in results.items() if sid != report.call_sid]
        assert len(bad) == 1
        assert bad[0].stats.ignored == sent.result(), bad[0].stats.ignored
        assert not bad[0].failed and bad[0].reason == "caller_hangup"
        good_frames = 10 + sum(not b.before_start for b in BAD_INPUTS) + 18
        assert bad[0].stats.frames_in == good_frames  # the call went on around the bad input
        # The healthy call was untouched.
        assert report.violations == [] and report.closed_by == "caller"
        assert results[report.call_sid].stats.ignored == {}
        assert report.player.heard_ms() > 500
        # And the process serves the next call.
        after = await place_call(bridge.webhook, packaged_call("books_a_table"), speed=8.0)
        assert after.closed_by == "caller" and after.violations == []


async def test_vanished_socket_closes_upstream(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """A Twilio socket that disappears without `stop` ends the call and its upstream."""
    with running_bridge(settings) as bridge:
        call_sid = new_sid("CA")
        answer = await post_webhook(
            bridge.webhook, call_params(call_sid, "AC1", from_="+1", to="+2")
        )
        assert answer.twiml is not None
        w = writer(new_sid("MZ"), call_sid, answer.twiml.parameters)
        ws = await connect(bridge.ws_url)
        await ws.send(w.start())
        for n in range(20):
            await ws.send(w.media(FRAME, n * 20))
        await wait_until(lambda: fake.active == 1)
        ws.transport.abort()  # no stop, no close frame
        await wait_until(lambda: fake.active == 0, timeout=3)
        await wait_until(lambda: bridge.state.active_calls == 0)
        await ws.wait_closed()
        [result] = bridge.state.last_results
        assert result.reason == "caller_disconnected" and not result.failed


def test_webhook_without_call_sid_is_refused(settings: Settings) -> None:
    """A webhook without CallSid is a 400, not a slot."""
    import urllib.error
    import urllib.request

    with running_bridge(settings) as bridge:
        req = urllib.request.Request(bridge.webhook, data=urlencode({"From": "+1"}).encode())
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=5)
        assert info.value.code == 400
        info.value.close()
        assert bridge.state.guard.rejected == {"no_call_sid": 1}
