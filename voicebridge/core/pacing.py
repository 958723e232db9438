"""Caller audio held to real time: a token bucket counted in milliseconds of audio.

Twilio sends 20 ms every 20 ms, with some jitter and, after a network hiccup, a short burst
of what it held back. A client sending faster than that is not a phone call: every second of
audio forwarded costs upstream money, so what exceeds real time plus a burst allowance is
dropped (and counted) instead of forwarded.
"""

from __future__ import annotations

__all__ = ["AudioBudget"]


class AudioBudget:
    """How much caller audio may go upstream now: real time plus ``burst_ms`` of credit.

    Times are in ms on any monotonic clock; the bucket starts full.
    """

    __slots__ = ("burst_ms", "_credit", "_at")

    def __init__(self, burst_ms: float) -> None:
        self.burst_ms = burst_ms
        self._credit = burst_ms
        self._at: float | None = None

    def take(self, audio_ms: float, now: float) -> bool:
        """Spend ``audio_ms`` if the budget allows it; False means drop this audio."""
        if self._at is not None:
            self._credit = min(self.burst_ms, self._credit + (now - self._at))
        self._at = now
        if audio_ms > self._credit:
            return False
        self._credit -= audio_ms
        return True
