"""The call recorder on its own: what its WAV shows, what it masks, how disk trouble is told."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import json
import logging
import time
import wave
from pathlib import Path

import pytest

from voicebridge.core.admission import TOKEN_PARAMETER
from voicebridge.core.audio import audioop
from voicebridge.server.recorder import CallRecorder, RecordingHealth

LOUD = bytes([0x00, 0x80]) * 400  # μ-law full-scale square wave, 100 ms
T0 = 50_000.0  # the call clock (ms) when Twilio's `start` arrived


def _media(ts: int, data: bytes) -> str:
    payload = base64.b64encode(data).decode()
    return json.dumps({"event": "media", "media": {"timestamp": str(ts), "payload": payload}})


def _channels(path: Path) -> tuple[list[float], list[float]]:
    """Per-20 ms RMS of the left and the right channel."""
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        pcm = w.readframes(w.getnframes())
    left, right = audioop.tomono(pcm, 2, 1, 0), audioop.tomono(pcm, 2, 0, 1)
    window = 320  # 20 ms of 16-bit mono
    rms = [
        [audioop.rms(ch[i : i + window], 2) for i in range(0, len(ch), window)]
        for ch in (left, right)
    ]
    return rms[0], rms[1]


def _loud_ms(rms: list[float]) -> list[int]:
    return [i * 20 for i, v in enumerate(rms) if v > 1000]


async def _recorded(tmp_path: Path, play: object) -> CallRecorder:
    rec = CallRecorder(str(tmp_path), "CA123")
    assert callable(play)
    play(rec)
    await rec.finish(T0)
    return rec


async def test_a_barge_in_cuts_the_audio_already_queued_behind_it(tmp_path: Path) -> None:
    """Audio sent ahead of playback and cleared before its turn is not in the WAV."""

    def play(rec: CallRecorder) -> None:
        rec.inbound(_media(0, b"\xff" * 160))
        for i in range(30):  # 3 s of answer, sent within 300 ms, as the model does
            rec.assistant(base64.b64encode(LOUD).decode(), T0 + 200 + i * 10, 100)
        rec.cleared(T0 + 1200)  # the caller talked over it 1 s into the answer
        for i in range(5):  # the next answer, 0.5 s, after the barge-in
            rec.assistant(base64.b64encode(LOUD).decode(), T0 + 2000 + i * 10, 100)

    rec = await _recorded(tmp_path, play)
    _, right = _channels(rec.wav_path)
    loud = _loud_ms(right)
    assert loud[0] == 200 and 1180 <= max(t for t in loud if t < 2000) < 1200
    assert [t for t in loud if t >= 1200] == list(range(2000, 2500, 20))


async def test_audio_sent_before_a_clear_but_played_through_is_kept(tmp_path: Path) -> None:
    """A clear after the audio had finished playing cuts nothing."""

    def play(rec: CallRecorder) -> None:
        rec.inbound(_media(0, b"\xff" * 160))
        for i in range(5):
            rec.assistant(base64.b64encode(LOUD).decode(), T0 + i * 100, 100)
        rec.cleared(T0 + 900)

    rec = await _recorded(tmp_path, play)
    assert _loud_ms(_channels(rec.wav_path)[1]) == list(range(0, 500, 20))


async def test_the_caller_is_placed_by_twilio_timestamps_and_the_wav_is_not_padded(
    tmp_path: Path,
) -> None:
    """Media timestamps count from the stream's start, like the model channel; no padding."""

    def play(rec: CallRecorder) -> None:
        for ts in range(135, 135 + 11_000, 20):  # a real call's first frame is at 135 ms
            rec.inbound(_media(ts, LOUD[:160] if ts >= 1135 else b"\xff" * 160))

    rec = await _recorded(tmp_path, play)
    left, right = _channels(rec.wav_path)
    assert _loud_ms(left)[0] == 1120  # the 20 ms window holding 1135
    assert not _loud_ms(right)
    with wave.open(str(rec.wav_path)) as w:
        assert w.getnframes() == (135 + 11_000) * 8  # 11.135 s, not rounded up to 20 s
    assert not rec.assistant_path.exists()  # the WAV holds the model's audio now


@pytest.mark.parametrize("order", ["as documented", "sid first"])
async def test_start_is_masked_whatever_the_order_of_its_keys(tmp_path: Path, order: str) -> None:
    """The recorded `start` never holds the caller's number or the stream token."""
    params = {"From": "+14155550123", "To": "+18005550100", TOKEN_PARAMETER: "t0k"}
    start = {"callSid": "CA123", "customParameters": params}
    msg = (
        {"event": "start", "sequenceNumber": "1", "start": start, "streamSid": "MZ" + "0" * 32}
        if order == "as documented"
        else {"streamSid": "MZ" + "0" * 32, "sequenceNumber": "1", "event": "start", "start": start}
    )
    rec = CallRecorder(str(tmp_path), "CA123")
    rec.inbound(json.dumps(msg))
    await rec.finish(T0)
    text = rec.messages_path.read_text()
    assert "+14155550123" not in text and "t0k" not in text
    assert json.loads(text)["start"]["customParameters"] == {
        "From": "+1415***0123",
        "To": "+1800***0100",
    }


@pytest.fixture
def blocked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Path:
    """A RECORD_DIR that cannot be created: a file stands where its parent should be."""
    (tmp_path / "file").write_text("not a directory")
    caplog.set_level(logging.WARNING, logger="voicebridge.server.recorder")
    return tmp_path / "file" / "calls"


async def _record_one(record_dir: Path, sid: str, health: RecordingHealth) -> CallRecorder:
    rec = CallRecorder(str(record_dir), sid, health)
    rec.inbound(_media(0, b"\xff" * 160))
    await rec.finish(T0)
    return rec


async def test_disk_trouble_is_logged_once_per_episode_and_every_failure_counted(
    tmp_path: Path, blocked: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Many calls on a broken disk give one warning; recovery is told; a relapse warns again."""
    health = RecordingHealth(quiet_s=0.0)
    failed = await asyncio.gather(*(_record_one(blocked, f"CA{i}", health) for i in range(5)))
    assert all(rec.failed for rec in failed) and health.failures == 5
    assert caplog.text.count("recording failed") == 1
    ok = await _record_one(tmp_path / "calls", "CAok", health)
    assert not ok.failed and ok.wav_path.exists()
    assert caplog.text.count("recording works again") == 1
    await _record_one(blocked, "CAagain", health)
    assert caplog.text.count("recording failed") == 2 and health.failures == 6


async def test_a_disk_that_fails_now_and_then_is_one_episode(
    tmp_path: Path, blocked: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Failures and successes mixed within the quiet period log one warning, no recovery."""
    health = RecordingHealth(quiet_s=60.0)
    for i in range(3):
        for record_dir in (blocked, tmp_path / "calls"):
            await _record_one(record_dir, f"CA{i}", health)
    assert health.failures == 3
    assert caplog.text.count("recording failed") == 1 and "works again" not in caplog.text


async def test_the_call_ending_before_its_write_ran_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer cancelled while its write waits for a busy thread pool: nothing is lost."""
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)  # under load: all busy
    loop.set_default_executor(pool)
    monkeypatch.setattr("voicebridge.server.recorder.FLUSH_EVERY", 0.05)
    rec = CallRecorder(str(tmp_path), "CA123")
    for ts in range(0, 2000, 20):
        rec.inbound(_media(ts, LOUD[:160]))
        rec.assistant(base64.b64encode(LOUD[:160]).decode(), T0 + ts, 20)
    busy = loop.run_in_executor(None, time.sleep, 0.3)
    writer = asyncio.create_task(rec.run())
    await asyncio.sleep(0.15)  # the first write waits behind the busy thread
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    for ts in range(2000, 2400, 20):  # the call's last frames, after the writer stopped
        rec.inbound(_media(ts, LOUD[:160]))
    await rec.finish(T0)
    await busy
    assert len(rec.messages_path.read_text().splitlines()) == 120
    left, right = _channels(rec.wav_path)
    assert len(_loud_ms(left)) == 120 and len(_loud_ms(right)) == 100
