"""Twilio's playback buffer for a bidirectional stream, as a model without I/O.

Audio from the server is "buffered and played in the order received", in real time. A
``mark`` is echoed when playback reaches it, or at once if nothing is buffered. ``clear``
empties the buffer and echoes every pending mark at once. Times are ms on the emulated
call's clock, *at Twilio* (after the network delay towards it).
"""

from __future__ import annotations

from array import array
from collections import deque

from voicebridge.core.audio import ulaw_ms_from_b64

__all__ = ["PlayedChunk", "TwilioPlayer"]


class PlayedChunk:
    """One chunk of server audio as Twilio plays it: a live view of the player's record.

    ``played`` is the ms the caller hears (less than ``duration`` when cut by ``clear`` or
    the hang-up); it changes if the chunk is cut later.
    """

    __slots__ = ("_i", "_p")

    def __init__(self, player: TwilioPlayer, index: int) -> None:
        self._p = player
        self._i = index

    @property
    def payload(self) -> str:
        return self._p._payloads[self._i] if self._p.keep_payloads else ""

    @property
    def arrived(self) -> float:
        return self._p._arrived[self._i]

    @property
    def start(self) -> float:
        return self._p._start[self._i]

    @property
    def duration(self) -> float:
        return self._p._duration[self._i]

    @property
    def played(self) -> float:
        return self._p._played[self._i]

    def _key(self) -> tuple[str, float, float, float, float]:
        return (self.payload, self.arrived, self.start, self.duration, self.played)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PlayedChunk):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"PlayedChunk(arrived={self.arrived}, start={self.start}, "
            f"duration={self.duration}, played={self.played})"
        )


class TwilioPlayer:
    """Records are kept in columns (``array``s of floats), not one object per chunk: a load
    run holds hundreds of thousands of chunks, and the garbage collector would walk every
    object on each full collection, stalling all calls for tens of ms."""

    def __init__(self, playout_ms: float = 0.0, *, keep_payloads: bool = True) -> None:
        self.playout_ms = playout_ms  # jitter buffer: an idle buffer waits this long to play
        self.keep_payloads = keep_payloads  # False: chunks keep only their timing (load runs)
        self.clears: list[float] = []
        self._payloads: list[str] = []
        self._arrived = array("d")
        self._start = array("d")
        self._duration = array("d")
        self._played = array("d")
        self._until = 0.0  # when buffered audio finishes playing
        self._echoes: deque[tuple[float, str]] = deque()  # (echo time, mark name)
        self._live_from = 0  # chunks before this index can no longer be cut

    @property
    def chunks(self) -> list[PlayedChunk]:
        """Every chunk received, in arrival order (views: build the list once, not per item)."""
        return [PlayedChunk(self, i) for i in range(len(self._arrived))]

    def media(self, payload: str, at: float) -> PlayedChunk:
        duration = ulaw_ms_from_b64(payload)
        start = at + self.playout_ms if self._until <= at else self._until
        if self.keep_payloads:
            self._payloads.append(payload)
        self._arrived.append(at)
        self._start.append(start)
        self._duration.append(duration)
        self._played.append(duration)
        self._until = start + duration
        return PlayedChunk(self, len(self._arrived) - 1)

    def mark(self, name: str, at: float) -> None:
        self._echoes.append((max(at, self._until), name))

    def clear(self, at: float) -> None:
        self.cut(at)
        self.clears.append(at)
        # Pending marks come back at once.
        self._echoes = deque((min(t, at), name) for t, name in self._echoes)

    def cut(self, at: float) -> None:
        """Stop playback at ``at``: later audio is never heard."""
        start, duration, played = self._start, self._duration, self._played
        for i in range(self._live_from, len(start)):
            if start[i] + duration[i] > at:
                played[i] = min(duration[i], max(0.0, at - start[i]))
        self._live_from = len(start)
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
        if payloads is None:
            return sum(self._played)
        if not self.keep_payloads:
            raise ValueError("this player keeps no payloads")
        return sum(p for p, pl in zip(self._played, self._payloads, strict=True) if pl in payloads)
