"""``voicebridge demo``'s summary of a real call: what the caller heard, in every audio mode."""

from __future__ import annotations

import dataclasses
import re

import pytest

from tests.support.servers import running_bridge
from tests.support.waiting import wait_until
from voicebridge.config import Settings
from voicebridge.demo import ended_well, summarize
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.emulator import Network, place_call
from voicebridge.twilio_sim.recordings import packaged_call


@pytest.mark.parametrize("audio", ["pcmu", "pcm24k"])
async def test_the_summary_reports_what_the_caller_heard(
    fake: FakeRealtimeServer, settings: Settings, audio: str
) -> None:
    """The answer the caller talked over is counted as heard, and its truncation line says
    how much the caller actually heard (with pcm24k both read 0: the converted audio was
    looked for byte for byte among the model's PCM deltas)."""
    net = Network(down_ms=60, up_ms=60, jitter_ms=15, playout_ms=60, seed=5)
    with running_bridge(settings, upstream_audio=audio) as bridge:
        report = await place_call(
            bridge.webhook, packaged_call("interrupts"), network=net, hangup_at_ms=7000
        )
        await wait_until(lambda: fake.active == 0)
    [session] = fake.sessions
    lines = summarize(report, session)
    assert "assistant turns heard: 1" in lines, lines
    [truncate] = session.truncations
    [line] = [line for line in lines if line.startswith("truncation:")]
    found = re.search(r"caller actually heard (\d+) ms", line)
    assert found is not None
    actually = int(found.group(1))
    assert actually == pytest.approx(report.player.heard_ms(), abs=1)  # the only answer heard
    assert abs(actually - truncate["audio_end_ms"]) <= 60, line


async def test_the_summary_says_what_the_caller_heard_after_the_stream(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """The model ends the call: the summary names what Twilio ran after the stream (the
    action's <Hangup/>), and the demo counts it as a call that ended well."""
    fake.options = dataclasses.replace(fake.options, tool_call=("end_call", "{}"))
    with running_bridge(settings) as bridge:
        report = await place_call(
            bridge.webhook, packaged_call("books_a_table"), speed=2.0, tail_ms=15000, timeout=40
        )
        await wait_until(lambda: fake.active == 0)
    lines = summarize(report, fake.sessions[0])
    assert "after the stream, Twilio ran: <Hangup>" in lines, lines
    assert ended_well(report)
