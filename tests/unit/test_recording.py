"""Recorded calls: loading JSON lines or arrays, packaged calls, and finding speech in them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from voicebridge.twilio_sim.recordings import (
    Recording,
    load_recording,
    packaged_call,
    speech_segments,
)

REAL_CALL = Path(__file__).parent.parent / "fixtures" / "real_call.jsonl"
SILENCE = base64.b64encode(b"\xff" * 160).decode()  # μ-law zero amplitude, 20 ms
LOUD = base64.b64encode(bytes([0x00, 0x80]) * 80).decode()  # full-scale square wave, 20 ms


def test_load_real_call_jsonl() -> None:
    """The recorded call loads as 619 messages, 616 of them media, about 12.3 s long."""
    rec = load_recording(REAL_CALL)
    assert rec.name == "real_call"
    assert len(rec.messages) == 619
    assert len(rec.media) == 616
    assert len(rec.payloads) == 616
    assert rec.duration_ms == pytest.approx(12_320)
    assert [m["event"] for m in (rec.messages[0], rec.messages[1], rec.messages[-1])] == [
        "connected",
        "start",
        "stop",
    ]
    assert rec.payloads[0] == rec.messages[2]["media"]["payload"]


def test_load_json_array(tmp_path: Path) -> None:
    """A file holding one JSON array of messages loads like JSON lines, named after the file."""
    messages = json.loads("[" + ",".join(REAL_CALL.read_text().splitlines()[:5]) + "]")
    path = tmp_path / "short_call.json"
    path.write_text("\n  " + json.dumps(messages, indent=2), encoding="utf-8")
    rec = load_recording(path)
    assert rec == Recording("short_call", tuple(messages))
    assert len(rec.media) == 3
    assert rec.duration_ms == 175 - 135 + 20


def test_load_jsonl_skips_blank_lines(tmp_path: Path) -> None:
    """Blank lines in a JSON-lines file are ignored."""
    lines = REAL_CALL.read_text().splitlines()[:4]
    path = tmp_path / "gappy.jsonl"
    path.write_text("\n\n".join(lines) + "\n\n", encoding="utf-8")
    assert load_recording(path).messages == tuple(json.loads(line) for line in lines)


@pytest.mark.parametrize(
    "content", ['[{"event": "media"}, 3]', '["a"]', '{"event": "stop"}\n[1]\n']
)
def test_load_rejects_non_message_lists(tmp_path: Path, content: str) -> None:
    """A file whose items are not JSON objects raises ValueError."""
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError):
        load_recording(path)


def test_recording_without_media_has_zero_duration() -> None:
    """A recording with no media messages lasts 0 ms."""
    assert Recording("empty", ({"event": "connected"},)).duration_ms == 0.0


def test_packaged_interrupts_call() -> None:
    """The packaged 'interrupts' call loads with its start, its media and a stop."""
    rec = packaged_call("interrupts")
    assert rec.name == "interrupts"
    events = [m["event"] for m in rec.messages]
    assert events[:2] == ["connected", "start"]
    assert events[-1] == "stop"
    assert len(rec.media) == len(rec.messages) - 3 > 100
    assert rec.duration_ms == pytest.approx(20 * len(rec.media))
    assert len(speech_segments(rec.payloads)) >= 2


def test_packaged_call_unknown_name() -> None:
    """Asking for a call that is not packaged raises FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        packaged_call("no_such_call")


def test_real_call_utterances_are_found_where_they_are() -> None:
    """The two utterances of the real call are found at about 4.3-5.2 s and 8.2-9.8 s."""
    segments = speech_segments(load_recording(REAL_CALL).payloads)
    assert segments[0] == pytest.approx((4300, 5220), abs=100)
    assert segments[1] == pytest.approx((8200, 9760), abs=100)


def test_real_call_has_exactly_two_voiced_segments() -> None:
    """The real call, two short utterances, yields exactly two voiced segments."""
    segments = speech_segments(load_recording(REAL_CALL).payloads)
    assert len(segments) == 2, segments


def test_silence_has_no_segments() -> None:
    """A silence-only list of frames yields no segments."""
    assert speech_segments([SILENCE] * 200) == []
    assert speech_segments([]) == []


def test_segments_merge_across_short_gaps_and_split_on_long_ones() -> None:
    """Voiced stretches closer than min_gap_ms are one segment; a longer gap starts a new one."""
    frames = [SILENCE] * 5 + [LOUD] * 10 + [SILENCE] * 5 + [LOUD] * 5 + [SILENCE] * 30 + [LOUD] * 3
    # loud 100-300, gap 100 ms, loud 400-500, gap 600 ms, loud 1100-1160
    assert speech_segments(frames, min_gap_ms=400) == [(100.0, 500.0), (1100.0, 1160.0)]
    assert speech_segments(frames, min_gap_ms=100) == [
        (100.0, 300.0),
        (400.0, 500.0),
        (1100.0, 1160.0),
    ]


def test_threshold_decides_what_is_voiced() -> None:
    """A frame counts as voiced only when its RMS is above the threshold."""
    assert speech_segments([LOUD] * 3, threshold=500) == [(0.0, 60.0)]
    assert speech_segments([LOUD] * 3, threshold=40_000) == []


def test_a_click_is_not_speech() -> None:
    """A single loud frame is shorter than min_voiced_ms and is not an utterance."""
    assert speech_segments([LOUD]) == []
    assert speech_segments([LOUD], min_voiced_ms=20) == [(0.0, 20.0)]
