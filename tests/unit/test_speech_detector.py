"""The local speech detector: onsets against line noise and the assistant's echo."""

from __future__ import annotations

import base64

from voicebridge.core.audio import rms_ulaw
from voicebridge.core.speech_detector import (
    ENDED,
    NOTHING,
    STARTED,
    EchoReference,
    SpeechDetector,
)
from voicebridge.twilio_sim.line_sounds import cough, frames, mix, noise_burst, scaled

FRAME = 160
LINE = noise_burst(4000, rms=40, seed=1)  # a quiet line's steady hiss


def chunks(audio: bytes) -> list[bytes]:
    return [audio[i : i + FRAME] for i in range(0, len(audio) - FRAME + 1, FRAME)]


def feed(det: SpeechDetector, audio: bytes, ref: EchoReference | None = None) -> list[int]:
    """The detector's answer per frame; the echo reference read as the caller hears it."""
    out = []
    for k, frame in enumerate(chunks(audio)):
        out.append(det.feed(frame, ref.level(k * 20.0) if ref else 0))
    return out


def test_line_noise_never_starts_speech() -> None:
    """Steady hiss, even 20 dB louder than a quiet line, is the floor, not speech."""
    for gain in (0.0, 10.0, 20.0):
        assert STARTED not in feed(SpeechDetector(), scaled(LINE, gain))


def test_speech_starts_after_the_minimum_duration() -> None:
    """A loud sound is speech once it has lasted min_speech_ms, not a frame earlier."""
    for min_ms in (40, 60, 100):
        audio = mix(LINE, noise_burst(500, rms=2000, seed=2), 1000)
        got = feed(SpeechDetector(min_ms), audio)
        assert got.index(STARTED) == 1000 // 20 + min_ms // 20 - 1


def test_a_click_shorter_than_the_minimum_is_ignored() -> None:
    audio = mix(LINE, noise_burst(40, rms=4000, seed=3), 1000)
    assert STARTED not in feed(SpeechDetector(60), audio)


def test_a_sound_ends_after_the_hangover_and_only_then_starts_again() -> None:
    loud = noise_burst(300, rms=2000, seed=4)
    audio = mix(mix(LINE, loud, 500), loud, 860)  # a 60 ms gap: one sound
    got = feed(SpeechDetector(60), audio)
    assert got.count(STARTED) == 1 and got.count(ENDED) == 1
    audio = mix(mix(LINE, loud, 500), loud, 1200)  # a 400 ms gap: two sounds
    got = feed(SpeechDetector(60), audio)
    assert got.count(STARTED) == 2


def test_the_assistants_echo_at_minus_20_db_is_not_speech() -> None:
    """The assistant's own audio, 20 dB down and 50-150 ms late, never starts speech; the
    same audio as loud as a caller does."""
    answer = noise_burst(2000, rms=6000, seed=5)
    for delay in (50, 100, 150):
        ref = EchoReference()
        ref.add(1000.0, answer)
        echo = mix(LINE, answer, 1000 + delay, -20.0)
        assert STARTED not in feed(SpeechDetector(), echo, ref)
        caller = mix(LINE, answer, 1000 + delay, -6.0)
        assert STARTED in feed(SpeechDetector(), caller, ref)


def test_without_echo_the_caller_is_heard_as_fast_over_the_assistant() -> None:
    """A line that brings no echo back: after a second of the assistant talking, speech
    over it starts as fast as in silence."""
    answer = noise_burst(3000, rms=6000, seed=6)
    ref = EchoReference()
    ref.add(0.0, answer)
    speech = noise_burst(400, rms=800, seed=7)
    got = feed(SpeechDetector(60), mix(LINE, speech, 2000), ref)
    assert got.index(STARTED) == 2000 // 20 + 2


def test_a_cough_lasts_long_enough_to_start_and_then_ends() -> None:
    """A 150 ms cough is loud and long enough to count (the pause then resumes)."""
    got = feed(SpeechDetector(60), mix(LINE, cough(150, rms=3000, seed=8), 1000))
    assert got.count(STARTED) == 1 and got.count(ENDED) == 1
    assert got.index(ENDED) - got.index(STARTED) < (150 + 100) // 20


def test_the_floor_follows_the_line() -> None:
    det = SpeechDetector()
    feed(det, scaled(LINE, 20.0))
    loud_floor = det.floor
    feed(det, LINE[:1600])
    assert det.floor < loud_floor / 5  # falls fast
    assert NOTHING == det.feed(LINE[:FRAME], 0)


def test_echo_reference_windows_and_cuts() -> None:
    """Levels by 20 ms of stream; a window reaches back 240 ms and 20 ms ahead; a clear
    removes what was never heard; a gap reads as silence."""
    ref = EchoReference()
    loud = noise_burst(100, rms=4000, seed=9)
    ref.add(1000.0, loud)
    assert ref.level(900.0) == 0
    assert 3000 < ref.level(1000.0) < 5000
    assert ref.level(1330.0) > 0 and ref.level(1400.0) == 0
    ref.add(5000.0, loud)  # after a gap
    assert ref.level(3000.0) == 0 and ref.level(5050.0) > 0
    ref.cut(5040.0)
    assert ref.level(5200.0) > 0 and ref.level(5300.0) == 0
    assert rms_ulaw(loud[:FRAME]) > 0


def test_line_sounds() -> None:
    c = cough(150, rms=3000, seed=1)
    assert len(c) == 150 * 8
    assert 2000 < rms_ulaw(c[: 40 * 8]) < 4000 and rms_ulaw(c[-160:]) < 300
    payloads = frames(b"\x00" * 170)
    assert len(payloads) == 2 and base64.b64decode(payloads[1])[10:] == b"\xff" * 150
