"""Talking over an answer the model is still generating, through real sockets."""

from __future__ import annotations

import dataclasses

from tests.support.conformance import assert_protocol_clean
from tests.support.recordings import trimmed
from tests.support.servers import running_bridge, running_fake
from tests.support.waiting import wait_until
from voicebridge.config import Settings
from voicebridge.fake_realtime.server import FakeRealtimeOptions
from voicebridge.twilio_sim.emulator import Network, place_call
from voicebridge.twilio_sim.recordings import packaged_call, speech_segments

# The model says the first half of its answer, then takes 8 s for the rest: the caller has
# heard all it was sent when they speak again (books_a_table's second turn, 11.4-14.6 s of
# audio, played at 3x: 3.8-4.9 s after the start; the recording's silence after it is cut).
CALLER = trimmed(packaged_call("books_a_table"), 16000)
SLOW_MODEL = FakeRealtimeOptions(speed=10.0, response_delay_ms=50, pause_midway_ms=8000)


async def test_speech_over_an_answer_still_generating_silences_the_rest(
    settings: Settings,
) -> None:
    """INTERRUPT_RESPONSE=false, everything received already played when the caller speaks:
    the bridge still barges in (truncate at what was heard, cancel), and none of the answer's
    later audio is played over the caller."""
    net = Network(down_ms=30, up_ms=30, jitter_ms=5, playout_ms=60, seed=3)
    with running_fake(SLOW_MODEL) as (fake, _):
        wired = dataclasses.replace(settings, realtime_url=fake.url)
        with running_bridge(wired, interrupt_response=False) as bridge:
            report = await place_call(bridge.webhook, CALLER, network=net, speed=3.0, tail_ms=1500)
            await wait_until(lambda: fake.active == 0)
        [session] = fake.sessions
        assert_protocol_clean(fake)
    _, (spoke, stopped) = speech_segments(p for _, p in report.caller_audio)
    over_caller = [
        c for c in report.player.chunks if c.played > 0 and spoke < c.start + c.played < stopped
    ]
    assert over_caller == []  # nothing from the model while the caller had the floor
    [truncate] = session.truncations
    answer = session.items[truncate["item_id"]]
    heard = report.player.heard_ms(set(answer.deltas))
    assert truncate["audio_end_ms"] == int(answer.audio_ms_sent) == heard  # all heard, no more
    cancelled = [e for e in session.sent if e["type"] == "response.done"][0]["response"]
    assert cancelled["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert report.player.heard_ms() > heard  # the caller's second turn was answered
    assert report.violations == [] and not session.errors_sent


async def test_talking_over_the_goodbye_keeps_the_call(settings: Settings) -> None:
    """The model answers the first turn with end_call and says goodbye; the caller talks over
    it: the goodbye is cut, the stream stays open, and the call ends only after the goodbye
    that follows the caller's next turn has been heard in full."""
    hangs_up = FakeRealtimeOptions(speed=10.0, response_delay_ms=50, tool_call=("end_call", "{}"))
    net = Network(down_ms=30, up_ms=30, jitter_ms=5, playout_ms=60, seed=4)
    with running_fake(hangs_up) as (fake, _):
        wired = dataclasses.replace(settings, realtime_url=fake.url)
        with running_bridge(wired) as bridge:
            report = await place_call(bridge.webhook, packaged_call("interrupts"), network=net)
            await wait_until(lambda: fake.active == 0)
        [session] = fake.sessions
        assert_protocol_clean(fake)
    _, (spoke, stopped) = speech_segments(p for _, p in report.caller_audio)
    [cleared] = report.player.clears  # the first goodbye, talked over
    assert spoke < cleared < stopped
    goodbyes = [e for e in session.response_creates if e.get("response", {}).get("instructions")]
    assert len(goodbyes) == 2
    second = [c for c in report.player.chunks if c.arrived > cleared]
    assert second and all(c.played == c.duration for c in second)  # heard to the end
    assert report.closed_by == "server" and report.ended_at > stopped
    assert report.violations == [] and not session.errors_sent
