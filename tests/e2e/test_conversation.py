"""How a call feels, through real sockets: PCM upstreams, VAD modes, greeting, gaps, failures, idle."""

from __future__ import annotations

import base64
import dataclasses
import time

import pytest

from tests.support.audio import SILENCE_B64 as SILENCE
from tests.support.conformance import assert_protocol_clean
from tests.support.recordings import silent_call
from tests.support.servers import running_bridge
from tests.support.waiting import wait_until
from voicebridge.config import Settings
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.emulator import CallReport, Network, place_call
from voicebridge.twilio_sim.recordings import Recording, packaged_call, speech_segments


def first_heard_ms(report: CallReport) -> float:
    return min(c.start for c in report.player.chunks if c.played > 0)


def with_gap(recording: Recording, start_ms: int, end_ms: int) -> Recording:
    """The recording with its media frames between start_ms and end_ms removed."""
    media = recording.media
    t0 = int(media[0]["media"]["timestamp"])
    kept = tuple(
        m
        for m in recording.messages
        if m.get("event") != "media" or not start_ms <= int(m["media"]["timestamp"]) - t0 < end_ms
    )
    return Recording(recording.name + "-gap", kept)


async def test_pcm_call_with_an_exact_barge_in(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """An audio/pcm 24 kHz upstream: converted both ways, barge-in still within 60 ms."""
    net = Network(down_ms=60, up_ms=60, jitter_ms=20, playout_ms=60, seed=11)
    with running_bridge(settings, upstream_audio="pcm24k") as bridge:
        report = await place_call(
            bridge.webhook, packaged_call("interrupts"), network=net, hangup_at_ms=7000
        )
        await wait_until(lambda: fake.active == 0)
    [session] = fake.sessions
    update = session.received[0]["session"]["audio"]
    assert update["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert update["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    # Caller audio went up as PCM16 at 24 kHz: three samples of two bytes per μ-law byte.
    sent = sum(len(base64.b64decode(p)) for _, p in report.caller_audio)
    got = sum(len(base64.b64decode(a)) for a in session.appended)
    assert got == pytest.approx(sent * 6, rel=0.01)
    # Model audio came down as μ-law, one chunk per delta, in order.
    [truncate] = session.truncations
    items = list(session.items.values())
    index = [it.item_id for it in items].index(truncate["item_id"])
    before = sum(len(it.deltas) for it in items[:index])
    cut = items[index]
    chunks = report.player.chunks[before : before + len(cut.deltas)]
    assert all(len(base64.b64decode(c.payload)) == pytest.approx(800, abs=2) for c in chunks[:-1])
    heard = sum(c.played for c in chunks)
    assert 300 < heard < cut.audio_ms_sent - 100
    assert abs(truncate["audio_end_ms"] - heard) <= 60, (truncate["audio_end_ms"], heard)
    assert report.violations == [] and not session.errors_sent
    assert_protocol_clean(fake)


async def test_semantic_vad_session(fake: FakeRealtimeServer, settings: Settings) -> None:
    """With semantic_vad the session asks for it, with its eagerness, and turns still end."""
    with running_bridge(
        settings,
        turn_detection="semantic_vad",
        vad_eagerness="high",
        noise_reduction="far_field",
        transcription_model="gpt-transcribe",
    ) as bridge:
        report = await place_call(
            bridge.webhook, packaged_call("books_a_table"), speed=4.0, tail_ms=2000
        )
        await wait_until(lambda: fake.active == 0)
    [session] = fake.sessions
    audio_in = session.config["audio"]["input"]
    assert audio_in["turn_detection"]["type"] == "semantic_vad"
    assert audio_in["turn_detection"]["eagerness"] == "high"
    assert audio_in["noise_reduction"] == {"type": "far_field"}
    assert audio_in["transcription"]["model"] == "gpt-transcribe"
    assert not session.errors_sent
    assert report.player.heard_ms() > 1000
    assert_protocol_clean(fake)


async def test_greeting_is_heard_before_the_caller_speaks(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """With GREETING_INSTRUCTIONS the model speaks first."""
    recording = packaged_call("books_a_table")
    caller_starts = speech_segments(recording.payloads)[0][0]
    with running_bridge(settings, greeting_instructions="Greet the caller warmly.") as bridge:
        report = await place_call(bridge.webhook, recording, hangup_at_ms=2500)
        await wait_until(lambda: fake.active == 0)
    [session] = fake.sessions
    assert session.response_creates[0]["response"]["instructions"] == "Greet the caller warmly."
    assert first_heard_ms(report) < caller_starts


async def test_media_gap_ends_the_callers_turn(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """When Twilio stops sending media, silence fed upstream lets VAD end the turn."""
    recording = with_gap(packaged_call("interrupts"), 3200, 6500)
    with running_bridge(settings) as bridge:
        report = await place_call(bridge.webhook, recording, hangup_at_ms=6000)
        await wait_until(lambda: bridge.state.active_calls == 0)
    [result] = bridge.state.last_results
    assert result.stats.silence_frames > 50
    assert report.player.heard_ms() > 500
    assert first_heard_ms(report) < 5000  # answered during the gap, not after it
    assert fake.sessions[0].appended[-1] == SILENCE


async def test_a_failed_response_is_recovered(fake: FakeRealtimeServer, settings: Settings) -> None:
    """A failed response is retried and the caller still hears an answer."""
    fake.options = dataclasses.replace(fake.options, fail_responses=1)
    with running_bridge(settings) as bridge:
        report = await place_call(
            bridge.webhook, packaged_call("books_a_table"), speed=4.0, tail_ms=2000
        )
        await wait_until(lambda: bridge.state.active_calls == 0)
    [session] = fake.sessions
    statuses = [e["response"]["status"] for e in session.sent if e["type"] == "response.done"]
    assert statuses[0] == "failed" and "completed" in statuses[1:]
    assert len(session.response_creates) >= 1  # the retry
    assert report.player.heard_ms() > 1000
    [result] = bridge.state.last_results
    assert result.stats.failed_responses == 1 and not result.failed


async def test_idle_caller_is_reprompted_then_hung_up(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """A silent caller is re-prompted, then hears a short goodbye and the call ends
    deliberately: the after-stream answer hangs up, no apology."""
    with running_bridge(settings, idle_timeout_ms=1000, idle_reprompts=1) as bridge:
        t0 = time.monotonic()
        report = await place_call(bridge.webhook, silent_call(30), speed=4.0, timeout=30)
        await wait_until(lambda: bridge.state.active_calls == 0)
    assert time.monotonic() - t0 < 20
    [session] = fake.sessions
    kinds = [e["type"] for e in session.sent]
    goodbye_at = next(
        i
        for i, e in enumerate(session.sent)
        if e["type"] == "response.created" and e["response"].get("metadata")
    )
    # One re-prompt, then the goodbye (the server's later re-prompts are cancelled unheard).
    assert kinds[:goodbye_at].count("input_audio_buffer.timeout_triggered") == 2
    assert report.player.heard_ms() > 500  # the re-prompt was heard
    [goodbye] = session.response_creates
    assert goodbye["response"]["instructions"] == settings.idle_goodbye_instructions
    said = list(session.items.values())[-1]  # the goodbye's audio, heard to the end
    assert report.player.heard_ms(set(said.deltas)) == pytest.approx(said.audio_ms_sent, abs=1)
    assert (report.closed_by, report.close_code) == ("server", 1000)
    assert report.after_stream == (("Hangup", ""),)
    [result] = bridge.state.last_results
    assert result.reason == "idle_caller" and result.stats.idle_reprompts == 1
    assert result.outcome == "idle" and not result.failed
