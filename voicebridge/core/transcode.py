"""μ-law 8 kHz ⇄ PCM16 24 kHz for upstreams that want ``audio/pcm``, without I/O.

Each direction of each call has its own converter: ``audioop.ratecv`` keeps filter state
between calls, so consecutive 20 ms frames join without a click at their edges.
"""

from __future__ import annotations

import base64
from typing import Any

from voicebridge.core.audio import audioop

__all__ = ["CallerToModel", "ModelToCaller", "ulaw_silence"]

PCM_RATE = 24000  # "Only a 24kHz sample rate is supported" for audio/pcm
ULAW_RATE = 8000


def ulaw_silence(ms: int) -> str:
    """Base64 μ-law silence of the given length."""
    return base64.b64encode(b"\xff" * (ms * ULAW_RATE // 1000)).decode()


class CallerToModel:
    """Twilio's μ-law 8 kHz frames to PCM16 24 kHz for ``input_audio_buffer.append``."""

    def __init__(self) -> None:
        self._state: Any = None

    def convert(self, payload_b64: str) -> str:
        pcm8 = audioop.ulaw2lin(base64.b64decode(payload_b64), 2)
        pcm24, self._state = audioop.ratecv(pcm8, 2, 1, ULAW_RATE, PCM_RATE, self._state)
        return base64.b64encode(pcm24).decode()


class ModelToCaller:
    """The model's PCM16 24 kHz deltas to μ-law 8 kHz for Twilio ``media``."""

    def __init__(self) -> None:
        self._state: Any = None
        self._odd = b""  # a delta may end mid-sample

    def convert(self, delta_b64: str) -> str:
        data = self._odd + base64.b64decode(delta_b64)
        cut = len(data) - len(data) % 2
        data, self._odd = data[:cut], data[cut:]
        pcm8, self._state = audioop.ratecv(data, 2, 1, PCM_RATE, ULAW_RATE, self._state)
        return base64.b64encode(audioop.lin2ulaw(pcm8, 2)).decode()
