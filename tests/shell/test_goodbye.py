"""The model's goodbye when the caller talks over it, on the virtual clock.

The real ``Call`` runs between the in-memory Twilio and the fake Realtime server, which
answers a caller's turn by calling ``end_call``; the bridge then asks for the goodbye.
"""

from __future__ import annotations

import asyncio

from tests.support.shell import bridged, until
from voicebridge.config import Settings
from voicebridge.fake_realtime.session import FakeRealtimeOptions
from voicebridge.twilio_sim.recordings import packaged_call

DEFAULTS = Settings()
# The first spoken turn of the packaged call (1.08-5.06 s), as Twilio's 20 ms frames.
TURN = packaged_call("books_a_table").payloads[54:253]


async def test_talking_over_the_models_goodbye_keeps_the_call_going() -> None:
    """The caller speaks over the goodbye: it is cut, the call goes on, and it ends only
    once the next goodbye has been heard in full."""
    hangs_up = FakeRealtimeOptions(tool_call=("end_call", "{}"))
    async with asyncio.timeout(120), bridged(hangs_up) as b:
        await until(lambda: b.call.core.session_ready)
        await b.twilio.speak(TURN, pause_after=0.2)
        await until(lambda: bool(b.twilio.events("media")))  # the goodbye is playing
        interrupted = b.now()
        await b.twilio.speak(TURN[:100])
        await until(lambda: b.call.core.closing is None)
        caller = asyncio.create_task(b.twilio.speak([], pause_after=30.0))
        result = await b.result()
        ended = b.now()
        caller.cancel()
    [pipe] = b.realtime.pipes
    lines = [e["response"].get("instructions") for _, e in pipe.events("client", "response.create")]
    assert lines == [DEFAULTS.goodbye_instructions] * 2  # the first was talked over
    assert len(b.twilio.events("clear")) == 1
    assert (result.reason, result.deliberate, result.failed) == ("end_call", True, False)
    [cleared_at] = b.twilio.player.clears
    last = [c for c in b.twilio.player.chunks if c.arrived > cleared_at]
    assert last and all(c.played == c.duration for c in last)  # the second goodbye, in full
    assert ended - interrupted > sum(c.duration for c in last) / 1000
