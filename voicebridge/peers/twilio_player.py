"""Twilio's playback buffer for a bidirectional stream, as a model without I/O.

Audio from the server is "buffered and played in the order received", in real time. A
``mark`` is echoed when playback reaches it, or at once if nothing is buffered. ``clear``
empties the buffer and echoes every pending mark at once. Times are ms on the emulated
call's clock, *at Twilio* (after the network delay towards it).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from voicebridge.core.audio import ulaw_ms_from_b64

__all__ = ["PlayedChunk", "TwilioPlayer"]


@dataclass(slots=True)
class PlayedChunk:
    payload: str
    arrived: float
    start: float
    duration: float
    played: float  # ms the caller hears (less than duration when cut by clear or hang-up)


class TwilioPlayer:
    def __init__(self, playout_ms: float = 0.0, *, keep_payloads: bool = True) -> None:
        self.playout_ms = playout_ms  # jitter buffer: an idle buffer waits this long to play
        self.keep_payloads = keep_payloads  # False: chunks keep only their timing (load runs)
        self.chunks: list[PlayedChunk] = []
        self.clears: list[float] = []
        self._until = 0.0  # when buffered audio finishes playing
        self._echoes: deque[tuple[float, str]] = deque()  # (echo time, mark name)
        self._live_from = 0  # chunks before this index can no longer be cut

    def media(self, payload: str, at: float) -> PlayedChunk:
        duration = ulaw_ms_from_b64(payload)
        start = at + self.playout_ms if self._until <= at else self._until
        chunk = PlayedChunk(payload if self.keep_payloads else "", at, start, duration, duration)
        self.chunks.append(chunk)
        self._until = start + duration
        return chunk

    def mark(self, name: str, at: float) -> None:
        self._echoes.append((max(at, self._until), name))

    def clear(self, at: float) -> None:
        self.cut(at)
        self.clears.append(at)
        # Pending marks come back at once.
        self._echoes = deque((min(t, at), name) for t, name in self._echoes)

    def cut(self, at: float) -> None:
        """Stop playback at ``at``: later audio is never heard."""
        for chunk in self.chunks[self._live_from :]:
            if chunk.start + chunk.duration > at:
                chunk.played = min(chunk.duration, max(0.0, at - chunk.start))
        self._live_from = len(self.chunks)
        self._until = min(self._until, at)

    def due_echoes(self, now: float) -> list[tuple[float, str]]:
        """Echoes whose time has come, oldest first."""
        out = []
        while self._echoes and self._echoes[0][0] <= now:
            out.append(self._echoes.popleft())
        return out

    def next_echo_time(self) -> float | None:
        return self._echoes[0][0] if self._echoes else None

    @property
    def busy_until(self) -> float:
        return self._until

    def heard_ms(self, payloads: set[str] | None = None) -> float:
        """Ms heard, of every chunk or of those whose payload is in ``payloads``."""
        return sum(c.played for c in self.chunks if payloads is None or c.payload in payloads)
