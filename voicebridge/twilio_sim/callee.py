"""Who answers an outbound call in the emulator: a person, a voicemail box, nobody.

Each :class:`Callee` is what Twilio would see at the far end: the audio the callee sends
(a :class:`Recording` synthesized from the fake model's clips, since a callee is just
another voice, and a 1 kHz tone for the beep), when Twilio's answering-machine detection
decides (``DetectMessageEnd``: for a person after their first words and a silence, for a
machine after its beep) and what it says (``AnsweredBy``). A callee that never answers has
only a final ``CallStatus`` (busy, no-answer, failed).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Any

from voicebridge.core.audio import audioop
from voicebridge.fake_realtime.clips import load_clips
from voicebridge.twilio_sim.line_sounds import frames
from voicebridge.twilio_sim.recordings import Recording

__all__ = ["Callee", "beep", "busy", "no_answer", "person", "voicemail"]

BYTES_PER_MS = 8
BEEP_HZ = 1000.0
BEEP_MS = 500
# Twilio's MachineDetectionSpeechEndThreshold is 1200 ms by default: a person's "Hello?"
# followed by that much silence is the verdict.
SPEECH_END_MS = 1200
VERDICT_AFTER_BEEP_MS = 300


@dataclass(frozen=True)
class Callee:
    name: str
    recording: Recording | None  # None: the call is never answered
    answered_by: str = "human"  # the AMD verdict (Twilio's AnsweredBy)
    amd_at_ms: float = 0.0  # when the verdict is posted, on the stream's clock
    final_status: str = "completed"  # the last status callback's CallStatus
    hangup_at_ms: float | None = None  # the callee hangs up (None: when the server ends it)
    speech_ends_ms: float = 0.0  # the end of what the callee says (its greeting)


def _silence(ms: int) -> bytes:
    return b"\xff" * (ms * BYTES_PER_MS)


def beep(ms: int = BEEP_MS, hz: float = BEEP_HZ, level: float = 8000.0) -> bytes:
    """A voicemail box's beep: a sine at ``hz``, μ-law."""
    n = ms * BYTES_PER_MS
    pcm = array("h", (int(level * math.sin(2 * math.pi * hz * i / 8000)) for i in range(n)))
    return audioop.lin2ulaw(pcm.tobytes(), 2)


def _recording(name: str, ulaw: bytes) -> Recording:
    stream, call = "MZ0", "CA0"
    messages: list[dict[str, Any]] = [
        {"event": "connected", "protocol": "Call", "version": "1.0.0"},
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream,
            "start": {
                "accountSid": "AC0",
                "streamSid": stream,
                "callSid": call,
                "tracks": ["inbound"],
                "customParameters": {},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        },
    ]
    for n, payload in enumerate(frames(ulaw)):
        messages.append(
            {
                "event": "media",
                "sequenceNumber": str(n + 2),
                "streamSid": stream,
                "media": {
                    "track": "inbound",
                    "chunk": str(n + 1),
                    "timestamp": str(n * 20),
                    "payload": payload,
                },
            }
        )
    messages.append(
        {
            "event": "stop",
            "sequenceNumber": str(len(messages)),
            "streamSid": stream,
            "stop": {"accountSid": "AC0", "callSid": call},
        }
    )
    return Recording(name, tuple(messages))


def person(*, listen_ms: int = 12_000, hello_ms: int = 900) -> Callee:
    """Picks up, says "Hello?" (the start of a clip), then listens for ``listen_ms``."""
    hello = load_clips()[0].ulaw[: hello_ms * BYTES_PER_MS]
    lead = 400
    audio = _silence(lead) + hello + _silence(listen_ms)
    said = lead + hello_ms
    return Callee(
        "person",
        _recording("person", audio),
        "human",
        amd_at_ms=said + SPEECH_END_MS,
        hangup_at_ms=float(len(audio) // BYTES_PER_MS),
        speech_ends_ms=said,
    )


def voicemail(*, record_ms: int = 30_000) -> Callee:
    """A greeting (two clips), the beep, then silence while it records, up to ``record_ms``."""
    clips = load_clips()
    greeting = _silence(300) + clips[0].ulaw + _silence(300) + clips[4].ulaw + _silence(300)
    audio = greeting + beep() + _silence(record_ms)
    beep_ends = (len(greeting) // BYTES_PER_MS) + BEEP_MS
    return Callee(
        "voicemail",
        _recording("voicemail", audio),
        "machine_end_beep",
        amd_at_ms=beep_ends + VERDICT_AFTER_BEEP_MS,
        speech_ends_ms=float(beep_ends),
    )


def busy() -> Callee:
    return Callee("busy", None, "", final_status="busy")


def no_answer() -> Callee:
    return Callee("no-answer", None, "", final_status="no-answer")
