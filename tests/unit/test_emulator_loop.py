"""What the emulated Twilio sends and when, without sockets: loops, counters, absolute pacing."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest

from voicebridge.twilio_sim.recordings import Recording, packaged_call
from voicebridge.twilio_sim.script import (
    SILENCE_PAYLOAD,
    CallScript,
    Step,
    TwilioWriter,
    media_due_ms,
    schedule,
    spoken_until_ms,
)

LOUD = base64.b64encode(bytes([0x00, 0x80]) * 80).decode()  # full-scale, 20 ms
QUIET = SILENCE_PAYLOAD


def frame(ts: int, payload: str = QUIET) -> dict[str, Any]:
    return {
        "event": "media",
        "sequenceNumber": "99",
        "streamSid": "MZrecorded",
        "media": {"track": "inbound", "chunk": "99", "timestamp": str(ts), "payload": payload},
    }


def recording(*timestamps: int, dtmf_after: int | None = None, stop: bool = True) -> Recording:
    msgs: list[dict[str, Any]] = [
        {"event": "connected", "protocol": "Call", "version": "1.0.0"},
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": "MZrecorded",
            "start": {"streamSid": "MZrecorded", "callSid": "CArecorded", "tracks": ["inbound"]},
        },
    ]
    for i, ts in enumerate(timestamps):
        msgs.append(frame(ts))
        if dtmf_after == i:
            msgs.append(
                {
                    "event": "dtmf",
                    "sequenceNumber": "99",
                    "streamSid": "MZrecorded",
                    "dtmf": {"track": "inbound_track", "digit": "5"},
                }
            )
    msgs.append({"event": "mark", "streamSid": "MZrecorded", "mark": {"name": "recorded"}})
    if stop:
        msgs.append({"event": "stop", "sequenceNumber": "99", "streamSid": "MZrecorded"})
    return Recording("synthetic", tuple(msgs))


def play(script: CallScript, steps: list[Step], **params: str) -> list[dict[str, Any]]:
    """The messages as sent, with the writer that numbers them."""
    w = TwilioWriter(
        script, stream_sid="MZnew", call_sid="CAnew", account_sid="ACnew", parameters=params
    )
    out = []
    for _, kind, payload, ts, recorded in steps:
        if kind == "media":
            text = w.media(payload, ts)
        elif kind == "dtmf":
            assert recorded is not None
            text = w.dtmf(recorded)
        else:
            text = getattr(w, kind)()
        out.append(json.loads(text))
    return out


def test_looping_rewrites_sequence_chunk_and_timestamp() -> None:
    """Looped three times: sequence +1 per message, chunk +1 per frame, timestamps continue at +20 ms."""
    script = CallScript.from_recording(recording(135, 155, 175, dtmf_after=1))
    steps = list(itertools.islice(schedule(script, loop=True), 2 + 3 * 4))
    msgs = play(script, steps, StreamToken="t")
    assert [m["event"] for m in msgs[:2]] == ["connected", "start"]
    assert "sequenceNumber" not in msgs[0]
    assert msgs[1]["sequenceNumber"] == "1"
    assert msgs[1]["start"]["customParameters"] == {"StreamToken": "t"}
    assert msgs[1]["start"]["callSid"] == "CAnew" and msgs[1]["streamSid"] == "MZnew"
    assert [int(m["sequenceNumber"]) for m in msgs[1:]] == list(range(1, len(msgs)))
    media = [m for m in msgs if m["event"] == "media"]
    assert [int(m["media"]["chunk"]) for m in media] == list(range(1, 10))
    assert [int(m["media"]["timestamp"]) for m in media] == [135 + 20 * i for i in range(9)]
    assert all(m["streamSid"] == "MZnew" for m in msgs[1:])
    # The keypress repeats in every pass, after the second frame; no stop and no recorded mark.
    events = [m["event"] for m in msgs[2:]]
    assert events == ["media", "media", "dtmf", "media"] * 3
    assert all(m["event"] != "stop" for m in msgs)


def test_a_single_pass_ends_with_silence_then_stop() -> None:
    """Without loop: the frames, the tail's silence at the same cadence, then stop, numbered on."""
    script = CallScript.from_recording(recording(0, 20, 40))
    steps = list(schedule(script, tail_ms=60))
    msgs = play(script, steps)
    assert [m["event"] for m in msgs] == ["connected", "start"] + ["media"] * 6 + ["stop"]
    tail = msgs[5:8]
    assert [m["media"]["payload"] for m in tail] == [QUIET] * 3
    assert [m["media"]["timestamp"] for m in msgs[2:8]] == ["0", "20", "40", "60", "80", "100"]
    assert msgs[-1]["sequenceNumber"] == "8"
    assert msgs[-1]["stop"] == {"accountSid": "ACnew", "callSid": "CAnew"}
    assert steps[-1][0] == steps[-2][0] == 100  # stop goes with the last frame
    # The recording had no customParameters of its own and none were given: none are sent.
    w = TwilioWriter(script, stream_sid="MZ", call_sid="CA", account_sid="AC")
    assert "customParameters" not in json.loads(w.start())["start"]


def test_echoes_and_hang_up_continue_the_numbering() -> None:
    """Mark echoes and a hang-up's stop take the next sequence numbers, like any message."""
    script = CallScript.from_recording(recording(0, 20))
    w = TwilioWriter(script, stream_sid="MZ1", call_sid="CA1", account_sid="AC1")
    w.start()
    w.media(QUIET, 0)
    echo = json.loads(w.mark('say "hi"'))
    assert echo == {
        "event": "mark",
        "sequenceNumber": "3",
        "streamSid": "MZ1",
        "mark": {"name": 'say "hi"'},
    }
    assert json.loads(w.media(QUIET, 20))["sequenceNumber"] == "4"
    assert json.loads(w.stop())["sequenceNumber"] == "5"
    assert w.chunk == 2


def test_schedule_is_absolute_over_a_long_call() -> None:
    """Frame n is due at n x 20 ms / speed exactly, even a million frames in: no accumulated drift."""
    script = CallScript.from_recording(recording(*range(135, 135 + 20 * 7, 20)))
    for speed in (1.0, 3.0, 0.7):
        steps = schedule(script, loop=True, speed=speed)
        media = (s for s in steps if s[1] == "media")
        for n, step in enumerate(itertools.islice(media, 20_000)):
            assert step[0] == n * 20 / speed
            assert step[3] == 135 + n * 20
        n = 1_000_003
        assert media_due_ms(script, n, speed) == (n * 20 / speed, 135 + n * 20)


def test_schedule_keeps_recorded_gaps_in_every_pass() -> None:
    """A carrier's silence gap (no frames) stays a gap; the next pass starts a frame after the last."""
    script = CallScript.from_recording(recording(0, 20, 200, 220))
    assert script.period_ms == 240
    dues = [s[0] for s in itertools.islice(schedule(script, loop=True, speed=2.0), 2, 10)]
    assert dues == [0, 10, 100, 110, 120, 130, 220, 230]


def test_speech_is_placed_on_the_call_clock() -> None:
    """The caller's utterances repeat with each pass, scaled by speed, up to what was spoken."""
    frames = [frame(i * 20, LOUD if 5 <= i < 15 else QUIET) for i in range(50)]
    rec = Recording("speech", (*frames,))
    script = CallScript.from_recording(rec)
    assert script.speech == ((100.0, 300.0),)
    assert script.speech_on_call_clock(speed=2.0, loop=True, until_ms=1200) == [
        (50.0, 150.0),
        (550.0, 650.0),
        (1050.0, 1150.0),
    ]
    assert script.speech_on_call_clock(speed=1.0, loop=False, until_ms=10_000) == [(100.0, 300.0)]
    assert spoken_until_ms(script, 120, speed=2.0, loop=True) == 1200
    assert spoken_until_ms(script, 120, speed=1.0, loop=False) == 1000
    assert spoken_until_ms(script, 0, speed=1.0, loop=False) == 0


def test_packaged_call_prepares_with_its_speech_and_dtmf() -> None:
    """A real recording: every frame kept, utterances found, the recorded stop noted."""
    script = CallScript.from_recording(packaged_call("interrupts"))
    assert len(script.payloads) == len(packaged_call("interrupts").media)
    assert script.has_stop and len(script.speech) >= 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"event": "media", "media": {"payload": QUIET}}, "without a payload"),
        ({"event": "media", "media": {"timestamp": "0", "payload": 'x"y'}}, "not base64"),
        ({"event": "start", "start": None}, "start object"),
    ],
)
def test_unplayable_recordings_are_refused(bad: dict[str, Any], message: str) -> None:
    """A recording the schedule cannot play is refused up front with the message's number."""
    with pytest.raises(ValueError, match=message):
        CallScript.from_recording(Recording("bad", (bad,)))


def test_backwards_timestamps_and_empty_loops_are_refused() -> None:
    """Timestamps must not go backwards, and a recording without frames cannot loop."""
    with pytest.raises(ValueError, match="backwards"):
        CallScript.from_recording(recording(40, 20))
    empty = CallScript.from_recording(recording())
    with pytest.raises(ValueError, match="cannot loop"):
        list(schedule(empty, loop=True))
    assert [s[1] for s in schedule(empty)] == ["connected", "start", "stop"]
