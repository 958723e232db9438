"""Garbage from Twilio's side never crashes the bridge, leaks, or touches another call."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import connect

from tests.e2e.test_calls import wait_until
from tests.support.servers import Bridge, running_bridge
from voicebridge.config import Settings
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.emulator import place_call
from voicebridge.twilio_sim.recordings import packaged_call
from voicebridge.twilio_sim.webhook_client import call_params, new_sid, post_webhook

FRAME = base64.b64encode(b"\x7f" * 160).decode()


async def eventually(predicate: Any, timeout: float = 5.0) -> None:
    """Like wait_until, but lets this loop run (for sockets owned by the test)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def media(sid: str, n: int, payload: str = FRAME) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(n + 2),
            "streamSid": sid,
            "media": {
                "track": "inbound",
                "chunk": str(n + 1),
                "timestamp": str(n * 20),
                "payload": payload,
            },
        }
    )


def start(sid: str, call_sid: str, params: dict[str, str]) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": sid,
            "start": {
                "streamSid": sid,
                "callSid": call_sid,
                "accountSid": "AC1",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": params,
            },
        }
    )


BAD: dict[str, tuple[str, Any]] = {
    # name: (counter reason, what to send after a valid start)
    "not_json": ("not_json", "{this is not json"),
    "binary": ("binary_frame", b"\x00\x01\x02"),
    "unknown_event": ("unknown_event:bogus", json.dumps({"event": "bogus", "streamSid": "x"})),
    "second_start": ("second_start", None),
    "invalid_base64": ("invalid_base64", "media:!!!not base64!!!"),
    "wrong_stream": ("wrong_stream_sid", "media-wrong-sid"),
    "oversized_payload": ("oversized_payload", "media:" + "A" * 12_000),
    "unknown_mark": ("unknown_mark", "mark:never-sent"),
    "bad_shape": ("bad_shape", json.dumps({"event": "media", "streamSid": "x"})),
    "media_before_start": ("media_before_start", None),
}


async def bad_call(bridge: Bridge, case: str) -> None:
    call_sid = new_sid("CA")
    answer = await post_webhook(bridge.webhook, call_params(call_sid, "AC1", from_="+1", to="+2"))
    assert answer.twiml is not None
    sid = new_sid("MZ")
    reason, payload = BAD[case]
    async with connect(bridge.ws_url) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        if case == "media_before_start":
            await ws.send(media(sid, 0))
        await ws.send(start(sid, call_sid, answer.twiml.parameters))
        for n in range(10):
            await ws.send(media(sid, n))
        if case == "second_start":
            await ws.send(start(sid, call_sid, answer.twiml.parameters))
        elif isinstance(payload, bytes):
            await ws.send(payload)
        elif payload == "media-wrong-sid":
            await ws.send(media("MZ" + "9" * 32, 11))
        elif isinstance(payload, str) and payload.startswith("media:"):
            await ws.send(media(sid, 11, payload.removeprefix("media:")))
        elif isinstance(payload, str) and payload.startswith("mark:"):
            await ws.send(
                json.dumps(
                    {
                        "event": "mark",
                        "streamSid": sid,
                        "sequenceNumber": "13",
                        "mark": {"name": payload.removeprefix("mark:")},
                    }
                )
            )
        elif payload is not None:
            await ws.send(payload)
        for n in range(12, 30):
            await ws.send(media(sid, n))
            await asyncio.sleep(0.005)
        await ws.send(
            json.dumps(
                {
                    "event": "stop",
                    "sequenceNumber": "99",
                    "streamSid": sid,
                    "stop": {"accountSid": "AC1", "callSid": call_sid},
                }
            )
        )


@pytest.mark.parametrize("case", sorted(BAD))
async def test_bad_twilio_input_is_counted_and_survived(
    fake: FakeRealtimeServer, settings: Settings, case: str
) -> None:
    """Each bad input is counted; the call goes on; a concurrent call and the next call are fine."""
    with running_bridge(settings) as bridge:
        async with asyncio.TaskGroup() as tg:
            healthy = tg.create_task(
                place_call(bridge.webhook, packaged_call("books_a_table"), speed=6.0, tail_ms=1500)
            )
            await asyncio.sleep(0.2)
            tg.create_task(bad_call(bridge, case))
        wait_until(lambda: bridge.state.active_calls == 0)
        results = {r.call_sid: r for r in bridge.state.last_results}
        report = healthy.result()
        bad = [r for sid, r in results.items() if sid != report.call_sid]
        assert len(bad) == 1
        assert bad[0].stats.ignored[BAD[case][0]] >= 1, bad[0].stats.ignored
        assert not bad[0].failed and bad[0].reason == "caller_hangup"
        assert bad[0].stats.frames_in >= 28  # the call went on around the bad input
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
        sid = new_sid("MZ")
        ws = await connect(bridge.ws_url)
        await ws.send(start(sid, call_sid, answer.twiml.parameters))
        for n in range(20):
            await ws.send(media(sid, n))
        await eventually(lambda: fake.active == 1)
        ws.transport.abort()  # no stop, no close frame
        await eventually(lambda: fake.active == 0, timeout=3)
        await eventually(lambda: bridge.state.active_calls == 0)
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
