"""RECORD_DIR: each call recorded in the replay format and as a stereo WAV; replayable."""

from __future__ import annotations

import wave
from pathlib import Path

from tests.servers import running_bridge
from tests.test_calls import wait_until
from voicebridge.config import Settings
from voicebridge.peers.fake_realtime import FakeRealtimeServer
from voicebridge.peers.recording import load_recording, packaged_call
from voicebridge.peers.twilio_emulator import Network, place_call


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
        wait_until(lambda: bridge.state.active_calls == 0)
    [recorded] = list(first_dir.glob(f"*/{report.call_sid}.jsonl"))  # named by CallSid
    assert "+1415" not in " ".join(p.name for p in first_dir.glob("*/*"))
    text = recorded.read_text()
    assert "+14155550123" not in text and "+1415***0123" in text
    assert "StreamToken" not in text
    first = load_recording(recorded)
    assert [m["event"] for m in first.messages[:2]] == ["connected", "start"]
    assert first.payloads == [p for _, p in report.caller_audio]
    # The WAV: stereo, the caller left, the model right, cut at the barge-in.
    [wav] = list(first_dir.glob("*/*.wav"))
    with wave.open(str(wav)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
        assert w.getnframes() >= 8 * 6000
    # Replayed through the bridge and recorded again: the same media.
    with running_bridge(settings, record_dir=str(second_dir)) as bridge:
        await place_call(bridge.webhook, first, speed=4.0)
        wait_until(lambda: bridge.state.active_calls == 0)
    [again] = [p for p in second_dir.glob("*/*.jsonl") if not p.name.endswith("transcript.jsonl")]
    assert load_recording(again).payloads == first.payloads


async def test_unwritable_record_dir_does_not_stop_the_call(
    fake: FakeRealtimeServer, settings: Settings, tmp_path: Path, caplog: object
) -> None:
    """A recording that cannot be written is logged once; the call goes on."""
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with running_bridge(settings, record_dir=str(blocked / "calls")) as bridge:
        report = await place_call(
            bridge.webhook, packaged_call("books_a_table"), speed=4.0, tail_ms=1500
        )
        wait_until(lambda: bridge.state.active_calls == 0)
    [result] = bridge.state.last_results
    assert not result.failed and report.player.heard_ms() > 500
    assert str(caplog.text).count("recording stopped for this call") == 1  # type: ignore[attr-defined]
