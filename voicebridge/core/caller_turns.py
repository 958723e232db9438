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
    has been quiet for ``PAUSE_MS``. Digits pressed while no session can take them are
    held (at most ``MAX_HELD``) until one is confirmed.
    """

    PAUSE_MS = 1000.0
    MAX_HELD = 32  # longer than any PIN or extension

    def __init__(self) -> None:
        self._last: float | None = None  # when the newest unanswered digit came
        self._held: list[str] = []

    @property
    def waiting(self) -> bool:
        return self._last is not None

    def digit(self, now: float) -> None:
        self._last = now

    def hold(self, digit: str, now: float) -> bool:
        """Keep a digit for the session to come; False when too many are held already."""
        if len(self._held) >= self.MAX_HELD:
            return False
        self._held.append(digit)
        self.digit(now)
        return True

    def release(self) -> list[str]:
        """The held digits, oldest first, now that a session can take them."""
        held, self._held = self._held, []
        return held

    def answered(self) -> None:
        """A response that follows the digits answers them: no pause answer is due."""
        self._last = None

    def paused(self, now: float) -> bool:
        """True once, when the pause after the last digit is over: the model answers now."""
        if self._last is None or now - self._last < self.PAUSE_MS:
            return False
        self._last = None
        return True
