"""RECORD_DIR: each call recorded in the replay format and as a stereo WAV; replayable."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import pytest

from tests.support.metrics import scrape
from tests.support.servers import running_bridge
from tests.support.waiting import wait_until
from voicebridge.config import Settings
from voicebridge.core.audio import audioop
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.emulator import Network, place_call
from voicebridge.twilio_sim.recordings import load_recording, packaged_call


async def test_recorded_call_replays_to_the_same_media(
    fake: FakeRealtimeServer, settings: Settings, tmp_path: Path
) -> None:
    """A recorded call is replayable, and recording its replay gives the same media."""
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    net = Network(down_ms=20, up_ms=20, playout_ms=20, seed=4)
    with running_bridge(settings, record_dir=str(first_dir)) as bridge:
        report = await place_call(
            bridge.webhook,
            packaged_call("interrupts"),
            network=net,
            hangup_at_ms=7000,
            from_="+14155550123",
        )
        await wait_until(lambda: bridge.state.active_calls == 0)
    [recorded] = list(first_dir.glob(f"*/{report.call_sid}.jsonl"))  # named by CallSid
    assert "+1415" not in " ".join(p.name for p in first_dir.glob("*/*"))
    text = recorded.read_text()
    assert "+14155550123" not in text and "+1415***0123" in text
    assert "StreamToken" not in text
    first = load_recording(recorded)
    assert [m["event"] for m in first.messages[:2]] == ["connected", "start"]
    assert first.payloads == [p for _, p in report.caller_audio]
    # The WAV: stereo, the caller left, the model right, cut at the barge-in: the model's
    # channel holds what the caller heard, not the whole answer the model sent ahead.
    [wav] = list(first_dir.glob("*/*.wav"))
    with wave.open(str(wav)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
        assert w.getnframes() >= 8 * 6000
        right = audioop.tomono(w.readframes(w.getnframes()), 2, 0, 1)
    model_ms = 20 * sum(1 for i in range(0, len(right), 320) if audioop.max(right[i : i + 320], 2))
    heard_ms = report.player.heard_ms()
    assert report.received_events("clear") and 1000 < heard_ms
    assert abs(model_ms - heard_ms) < 200, (model_ms, heard_ms)
    # Replayed through the bridge and recorded again: the same media.
    with running_bridge(settings, record_dir=str(second_dir)) as bridge:
        await place_call(bridge.webhook, first, speed=8.0)
        await wait_until(lambda: bridge.state.active_calls == 0)
    [again] = [p for p in second_dir.glob("*/*.jsonl") if not p.name.endswith("transcript.jsonl")]
    assert load_recording(again).payloads == first.payloads


async def test_unwritable_record_dir_does_not_stop_the_calls(
    fake: FakeRealtimeServer, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Calls on an unwritable RECORD_DIR go on; one warning for all, each failure counted."""
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with running_bridge(settings, record_dir=str(blocked / "calls")) as bridge:
        reports = await asyncio.gather(
            *(
                place_call(bridge.webhook, packaged_call("books_a_table"), speed=8.0, tail_ms=1500)
                for _ in range(2)
            )
        )
        await wait_until(lambda: bridge.state.active_calls == 0)
        metrics = scrape(bridge)
    assert [r.failed for r in bridge.state.last_results] == [False, False]
    assert all(report.player.heard_ms() > 500 for report in reports)
    assert caplog.text.count("recording failed") == 1
    assert metrics["voicebridge_recording_failures_total"] >= 2
