"""Caller recordings built for tests from the packaged calls: silence, a trimmed call."""

from __future__ import annotations

from typing import Any

from tests.support.audio import SILENCE_B64
from voicebridge.twilio_sim.recordings import Recording, packaged_call

__all__ = ["silence_frames", "silent_call", "trimmed"]


def silence_frames(count: int, *, after: int = 0, t0: int = 0) -> list[dict[str, Any]]:
    """``count`` media messages of 20 ms μ-law silence, following ``after`` earlier frames
    of a call whose first frame has timestamp ``t0`` (stream SID ``MZ0``, as recorded)."""
    return [
        {
            "event": "media",
            "sequenceNumber": str(n + 2),
            "streamSid": "MZ0",
            "media": {
                "track": "inbound",
                "chunk": str(n + 1),
                "timestamp": str(t0 + n * 20),
                "payload": SILENCE_B64,
            },
        }
        for n in range(after, after + count)
    ]


def silent_call(seconds: float) -> Recording:
    """connected, start, ``seconds`` of μ-law silence, stop."""
    base = packaged_call("interrupts").messages
    frames = silence_frames(int(seconds * 50))
    return Recording("silence", (base[0], base[1], *frames, base[-1]))


def trimmed(recording: Recording, ms: int) -> Recording:
    """The recording's first ``ms`` of audio, with its stop."""
    media = recording.media
    t0 = int(media[0]["media"]["timestamp"])
    kept = tuple(
        m
        for m in recording.messages
        if m.get("event") != "media" or int(m["media"]["timestamp"]) - t0 < ms
    )
    return Recording(f"{recording.name}-{ms}ms", kept)
