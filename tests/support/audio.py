"""Caller audio for tests: 20 ms μ-law 8 kHz frames, raw and base64 as Twilio sends them."""

from __future__ import annotations

import array
import base64
import math

from voicebridge.core.audio import audioop

__all__ = ["LOUD", "SILENCE_B64", "SILENT", "b64"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _tone_frame() -> bytes:
    """20 ms of a loud 440 Hz tone, μ-law 8 kHz."""
    samples = array.array(
        "h", (int(12000 * math.sin(2 * math.pi * 440 * i / 8000)) for i in range(160))
    )
    return audioop.lin2ulaw(samples.tobytes(), 2)


LOUD = _tone_frame()  # voiced: any VAD starts speech on a run of these
SILENT = b"\xff" * 160  # μ-law zero
SILENCE_B64 = b64(SILENT)  # a Twilio media payload of silence
