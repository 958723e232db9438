"""Whole calls through a real uvicorn, the fake Realtime server and the Twilio emulator."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest

from tests.support.conformance import assert_protocol_clean
from tests.support.servers import running_bridge
from tests.support.waiting import wait_until
from voicebridge.config import Settings
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.emulator import Network, place_call
from voicebridge.twilio_sim.recordings import load_recording, packaged_call

FIXTURES = Path(__file__).parent.parent / "fixtures"
APOLOGY = Settings().failure_say


async def test_full_call(fake: FakeRealtimeServer, settings: Settings) -> None:
    """A call answered by the webhook is a conversation: audio up, speech back, no failure."""
    recording = packaged_call("books_a_table")
    with running_bridge(settings) as bridge:
        report = await place_call(bridge.webhook, recording, speed=4.0, tail_ms=3000)
        await wait_until(lambda: bridge.state.calls_total == 1 and bridge.state.active_calls == 0)
    assert report.twiml is not None and report.twiml.stream_url == bridge.ws_url
    assert set(report.twiml.parameters) == {"From", "To", "StreamToken"}
    assert report.violations == []
    assert report.closed_by == "caller" and report.after_stream == ()
    [session] = fake.sessions
    assert session.appended == [p for _, p in report.caller_audio]
    assert session.model == settings.realtime_model
    assert session.headers.get("authorization") is None  # no key configured, none sent
    update = session.received[0]
    assert update["type"] == "session.update"
    assert update["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert update["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert update["session"]["audio"]["output"]["voice"] == settings.voice
    # The caller heard the model: every delta of the first answer, in order, untouched.
    first = next(iter(session.items.values()))
    played = [c.payload for c in report.player.chunks]
    assert played[: len(first.deltas)] == first.deltas
    assert report.player.heard_ms() > 1000
    assert report.received_events("mark") and report.echoes_sent > 0
    assert_protocol_clean(fake)
    [result] = bridge.state.last_results
    assert not result.failed and result.reason == "caller_hangup"
    assert result.stats.frames_in == report.frames_sent


async def test_real_call_reaches_upstream_byte_identical(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """All 616 payloads of a real capture arrive upstream unchanged and in order."""
    recording = load_recording(FIXTURES / "real_call.jsonl")
    # As captured, `start` has no customParameters; the webhook's token is added to it.
    assert "customParameters" not in recording.messages[1]["start"]
    with running_bridge(settings) as bridge:
        report = await place_call(bridge.webhook, recording, speed=8.0)
        await wait_until(lambda: fake.active == 0)
    assert len(recording.payloads) == 616
    assert fake.sessions[0].appended == recording.payloads
    assert report.violations == []
    assert_protocol_clean(fake)


async def test_barge_in_on_a_slow_network(fake: FakeRealtimeServer, settings: Settings) -> None:
    """Talking over the model: clear at once, truncate at what was heard (±60 ms)."""
    net = Network(down_ms=60, up_ms=60, jitter_ms=20, playout_ms=60, seed=7)
    with running_bridge(settings) as bridge:
        report = await place_call(
            bridge.webhook, packaged_call("interrupts"), network=net, hangup_at_ms=7000
        )
        await wait_until(lambda: fake.active == 0)
    [session] = fake.sessions
    assert len(session.truncations) == 1, session.truncations
    truncate = session.truncations[0]
    item = session.items[truncate["item_id"]]
    heard = report.player.heard_ms(set(item.deltas))
    assert 300 < heard < item.audio_ms_sent - 100  # a real interruption, mid-answer
    assert abs(truncate["audio_end_ms"] - heard) <= 60, (truncate["audio_end_ms"], heard)
    assert session.truncated and not session.errors_sent
    # Nothing of the interrupted answer reached the caller after the clear.
    [clear_at] = report.player.clears
    assert not [
        c
        for c in report.player.chunks
        if c.payload in set(item.deltas) and c.played > 0 and c.start + c.played > clear_at + 0.5
    ]
    late = [
        c for c in report.player.chunks if c.payload in set(item.deltas) and c.arrived > clear_at
    ]
    assert late == []
    assert report.violations == []
    assert_protocol_clean(fake)
    [result] = bridge.state.last_results
    assert result.stats.barge_ins == 1 and result.stats.truncations == 1


async def test_hang_up_closes_upstream_within_a_second(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """Twilio's stop closes the upstream socket within 1 s."""
    with running_bridge(settings) as bridge:
        report = await place_call(bridge.webhook, packaged_call("interrupts"), hangup_at_ms=1500)
        await wait_until(lambda: fake.active == 0)
    [session] = fake.sessions
    assert report.stop_sent_at is not None and session.closed_at is not None
    assert session.closed_at - (report.t0 + report.stop_sent_at / 1000) < 1.0
    assert report.after_stream == ()


async def test_upstream_failure_plays_the_failure_path(
    fake: FakeRealtimeServer, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """When the upstream drops mid-call, Twilio's socket is closed and the apology plays."""
    fake.options = dataclasses.replace(fake.options, close_after_ms=800)
    caplog.set_level(logging.INFO)
    with running_bridge(settings) as bridge:
        report = await place_call(bridge.webhook, packaged_call("interrupts"), timeout=10)
        await wait_until(lambda: bridge.state.active_calls == 0)
    assert report.closed_by == "server"
    assert report.after_stream == (("Say", APOLOGY), ("Hangup", ""))
    assert report.ended_at < 3000
    [result] = bridge.state.last_results
    assert result.failed and "upstream" in result.reason
    assert "outcome=failed" in caplog.text


async def test_wrong_session_format_plays_the_failure_path(
    fake: FakeRealtimeServer, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A session echoing PCM output is refused: noise must never reach the caller."""
    fake.options = dataclasses.replace(fake.options, echo_output_format="audio/pcm")
    with running_bridge(settings) as bridge:
        report = await place_call(bridge.webhook, packaged_call("interrupts"), timeout=10)
        await wait_until(lambda: bridge.state.active_calls == 0)
    assert report.after_stream == (("Say", APOLOGY), ("Hangup", ""))
    assert report.player.heard_ms() == 0
    assert "session_format_mismatch" in caplog.text


async def test_unreachable_upstream_plays_the_failure_path(settings: Settings) -> None:
    """No upstream at all: retried until the connect deadline, then the apology."""
    broken = dataclasses.replace(
        settings, realtime_url="ws://127.0.0.1:9/v1/realtime", upstream_connect_timeout_s=1.0
    )
    with running_bridge(broken) as bridge:
        report = await place_call(bridge.webhook, packaged_call("interrupts"), timeout=10)
        [result] = bridge.state.last_results
    assert report.after_stream == (("Say", APOLOGY), ("Hangup", ""))
    assert 900 < report.ended_at < 2500
    assert "attempts" in result.reason


async def test_tasks_return_to_baseline_after_mixed_calls(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """After 24 calls of every kind, the server's loop holds no leftover tasks."""
    net = Network(down_ms=20, up_ms=20, jitter_ms=5, playout_ms=20, seed=3)
    healthy = fake.options
    with running_bridge(settings, upstream_reconnect=False) as bridge:
        baseline = bridge.task_count()
        # Six calls whose upstream fails mid-call, all at once...
        fake.options = dataclasses.replace(healthy, close_after_ms=300)
        failing = await asyncio.gather(
            *(
                place_call(
                    bridge.webhook, packaged_call("interrupts"), network=net, speed=4.0, timeout=20
                )
                for _ in range(6)
            )
        )
        # ...then eighteen more together: normal, barge-in, caller hang-up.
        fake.options = healthy
        calls = []
        for _ in range(6):
            calls += [
                place_call(
                    bridge.webhook,
                    packaged_call("books_a_table"),
                    speed=8.0,
                    tail_ms=500,
                    timeout=20,
                ),
                place_call(
                    bridge.webhook,
                    packaged_call("interrupts"),
                    network=net,
                    hangup_at_ms=6500,
                    timeout=20,
                ),
                place_call(
                    bridge.webhook,
                    packaged_call("interrupts"),
                    network=net,
                    hangup_at_ms=300,
                    timeout=20,
                ),
            ]
        others = await asyncio.gather(*calls)
        await wait_until(lambda: bridge.state.active_calls == 0 and fake.active == 0)
        await wait_until(lambda: bridge.task_count() <= baseline, timeout=5)
        assert bridge.state.calls_total == 24
    assert all(r.violations == [] for r in failing + others)
    assert [r.closed_by for r in failing] == ["server"] * 6
    assert [r.closed_by for r in others] == ["caller"] * 18
    results = bridge.state.last_results
    assert sum(r.failed for r in results) == 6
    assert sum(r.stats.barge_ins for r in results) >= 6
