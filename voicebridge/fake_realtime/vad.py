"""Energy voice-activity detection for the fake Realtime server (no I/O, no clock).

Time is the *input timeline*: milliseconds of audio appended so far, which is what the real
server reports in ``audio_start_ms`` / ``audio_end_ms`` (PROTOCOLS.md B.3). Levels are
measured per 20 ms frame by ``audioop`` in C, so the cost is per frame, not per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from voicebridge.core.audio import audioop, rms_ulaw

from .clips import BYTES_PER_MS

__all__ = ["FRAME_MS", "EnergyVad", "VadEvent"]

FRAME_MS = 20


def _rms_pcm16(frame: bytes) -> int:
    return int(audioop.rms(frame, 2))


def _rms_alaw(frame: bytes) -> int:
    return int(audioop.rms(audioop.alaw2lin(frame, 2), 2))


_LEVEL: dict[str, Callable[[bytes], int]] = {
    "audio/pcmu": rms_ulaw,
    "audio/pcma": _rms_alaw,
    "audio/pcm": _rms_pcm16,
}


@dataclass(frozen=True, slots=True)
class VadEvent:
    kind: Literal["started", "stopped"]
    ms: int  # audio_start_ms (prefix padding applied) or audio_end_ms


class EnergyVad:
    """Speech starts after ``start_ms`` of voiced frames and stops after ``silence_ms`` unvoiced."""

    def __init__(self, threshold: int, start_ms: int) -> None:
        self._threshold = threshold
        self._start_ms = start_ms
        self._prefix_ms = 300
        self._silence_ms = 500
        self._fmt = "audio/pcmu"
        self._level: Callable[[bytes], int] = rms_ulaw
        self._bytes_per_ms = BYTES_PER_MS["audio/pcmu"]
        self._frame_bytes = self._bytes_per_ms * FRAME_MS
        self._rest = b""  # an incomplete frame carried to the next append
        self._pos_ms = 0.0  # input timeline, up to the last whole frame
        self._run_start: float | None = None  # start of the current voiced run
        self._silent_ms = 0
        self.speaking = False

    @property
    def position_ms(self) -> float:
        return self._pos_ms + len(self._rest) / self._bytes_per_ms

    def configure(self, fmt: str, prefix_padding_ms: int, silence_ms: int) -> None:
        """Follow a session update: input format and turn-detection timings."""
        if fmt != self._fmt:
            # A partial frame of the old format cannot be finished with the new one.
            self._pos_ms = self.position_ms
            self._rest = b""
            self._fmt = fmt
        self._level = _LEVEL[fmt]
        self._bytes_per_ms = BYTES_PER_MS[fmt]
        self._frame_bytes = self._bytes_per_ms * FRAME_MS
        self._prefix_ms = prefix_padding_ms
        self._silence_ms = silence_ms

    def skip(self, nbytes: int) -> None:
        """Advance the timeline without detection (turn detection off)."""
        self._pos_ms = self.position_ms + nbytes / self._bytes_per_ms
        self._rest = b""
        self._run_start = None
        self.speaking = False

    def feed(self, audio: bytes) -> list[VadEvent]:
        """Consume appended audio; return the speech boundaries it crossed."""
        events: list[VadEvent] = []
        buf = self._rest + audio if self._rest else audio
        size = self._frame_bytes
        whole = len(buf) - len(buf) % size
        for offset in range(0, whole, size):
            voiced = self._level(buf[offset : offset + size]) >= self._threshold
            self._step(voiced, events)
        self._rest = buf[whole:]
        return events

    def _step(self, voiced: bool, events: list[VadEvent]) -> None:
        frame_start = self._pos_ms
        self._pos_ms += FRAME_MS
        if not self.speaking:
            if not voiced:
                self._run_start = None
                return
            if self._run_start is None:
                self._run_start = frame_start
            if self._pos_ms - self._run_start >= self._start_ms:
                self.speaking = True
                self._silent_ms = 0
                events.append(VadEvent("started", int(max(0.0, self._run_start - self._prefix_ms))))
        elif voiced:
            self._silent_ms = 0
        else:
            self._silent_ms += FRAME_MS
            if self._silent_ms >= self._silence_ms:
                self.speaking = False
                self._run_start = None
                events.append(VadEvent("stopped", int(self._pos_ms)))
