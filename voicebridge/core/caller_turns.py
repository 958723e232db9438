"""Caller turns that are not speech: silence answered by re-prompts, keypad digits."""

from __future__ import annotations

__all__ = ["IdleCaller", "KeypadPause"]


class IdleCaller:
    """Unanswered idle timeouts: ``0 … limit`` re-prompted by the server, past it the end.

    ``input_audio_buffer.timeout_triggered`` counts one; the caller's speech resets the count.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.unanswered = 0

    def answered(self) -> None:
        self.unanswered = 0

    def timed_out(self) -> bool:
        """One more unanswered timeout; True when past the limit (end the call)."""
        # The server commits the silence and re-prompts by itself; we only count.
        self.unanswered += 1
        return self.unanswered > self.limit


class KeypadPause:
    """A keypad digit waits for a pause: ``IDLE --digit--> WAITING --pause--> IDLE``.

    More digits may follow (a PIN, an extension), so the model answers only once the keypad
    has been quiet for ``PAUSE_MS``.
    """

    PAUSE_MS = 1000.0

    def __init__(self) -> None:
        self._last: float | None = None  # when the newest unanswered digit came

    @property
    def waiting(self) -> bool:
        return self._last is not None

    def digit(self, now: float) -> None:
        self._last = now

    def paused(self, now: float) -> bool:
        """True once, when the pause after the last digit is over: the model answers now."""
        if self._last is None or now - self._last < self.PAUSE_MS:
            return False
        self._last = None
        return True
