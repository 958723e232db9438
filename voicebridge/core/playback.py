"""What the caller has heard: Twilio's playback position, estimated without I/O.

Twilio plays the audio we send in order, in real time, and echoes each ``mark`` when
playback passes it. Echoes are late news and a ``clear`` is a late order: with a one-way
delay D towards Twilio and U back, an echo arrives U ms after playback passed the mark,
and a ``clear`` sent now lands D ms from now. So at bridge time T the position the
``clear`` will cut at is (PROTOCOLS.md C.6)::

    position(T) = P + (T - E) + rtt      capped at the audio written

where (P, E) is the newest echo (stream position P, arrival time E) and rtt = U + D is
measured, not guessed: a mark sent while nothing is buffered is echoed at once, so its
round trip is the network's. When the buffer has run dry, the next chunk starts a new
*run* whose start is projected from its write time and the measured start-up lead
(network plus Twilio's playout delay), until its own first echo arrives.

Positions are milliseconds on the *stream*: all audio written to Twilio, back to back.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

__all__ = ["EchoKind", "ItemPlayback", "PlaybackTracker"]

EchoKind = Literal["audio", "probe", "cleared", "unknown"]

_MAX_ITEMS = 16  # items remembered for truncation; older ones have long finished playing
_EWMA = 0.3  # weight of a new round-trip / lead sample
_MAX_SAMPLE_MS = 5000.0  # a "round trip" longer than this was not a round trip


@dataclass(slots=True)
class ItemPlayback:
    """One assistant item's audio on the stream."""

    item_id: str
    start: float  # stream position of its first written sample
    written_ms: float = 0.0
    restart: bool = False  # written again from written_ms on (a resume): start moves


class PlaybackTracker:
    """Mark bookkeeping and the playback-position estimate for one call.

    Every method takes the current time in ms (``now``); nothing reads a clock.
    """

    def __init__(self) -> None:
        self._seq = 0
        self._pending: deque[tuple[int, float]] = deque()  # (mark seq, stream end position)
        self._probes: dict[int, float] = {}  # mark seq -> write time
        self._cleared_through = 0  # echoes of marks up to this seq follow a clear: ignore
        self._stream_ms = 0.0  # audio written since the stream began
        self._anchor_pos = 0.0
        self._anchor_time = 0.0  # when the echo of _anchor_pos arrived (or would arrive)
        self._idle = True  # nothing buffered at Twilio: the next chunk starts a new run
        self._run_first_seq = 0
        self._run_first = (0.0, 0.0)  # (write time, ms) of the run's first chunk
        self._items: dict[str, ItemPlayback] = {}
        self.rtt_ms: float | None = None
        self.lead_ms: float | None = None  # write of a run's first chunk -> echo of its start

    # -- writing ------------------------------------------------------------------

    def probe(self, now: float) -> str:
        """Name for a mark sent while Twilio is idle; its echo measures the round trip."""
        self._seq += 1
        self._probes[self._seq] = now
        return f"p{self._seq}"

    def wants_probe(self, now: float) -> bool:
        """True when a probe now would be echoed at once (nothing is playing)."""
        return self.position(now) >= self._stream_ms

    def audio_written(self, item_id: str, ms: float, now: float) -> str:
        """Account for a chunk written to Twilio; returns the name of the mark to follow it."""
        if self._idle or self.position(now) >= self._stream_ms:
            # Twilio will have drained its buffer before this chunk lands: a new run.
            self._idle = False
            lead = self.lead_ms if self.lead_ms is not None else (self.rtt_ms or 0.0)
            self._anchor_pos = self._stream_ms
            self._anchor_time = now + lead
            self._run_first_seq = self._seq + 1
            self._run_first = (now, ms)
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = ItemPlayback(item_id, self._stream_ms)
            while len(self._items) > _MAX_ITEMS:
                del self._items[next(iter(self._items))]
        elif item.restart:
            item.restart = False
            item.start = self._stream_ms - item.written_ms
        item.written_ms += ms
        self._stream_ms += ms
        self._seq += 1
        self._pending.append((self._seq, self._stream_ms))
        return f"a{self._seq}"

    def rewrite(self, item_id: str, from_ms: float) -> None:
        """The item is written again from ``from_ms`` on (a local barge-in resumed): its
        next chunk starts there."""
        # Last in order again: the newest item whose start is passed is the one playing.
        item = self._items.pop(item_id, None) or ItemPlayback(item_id, self._stream_ms)
        self._items[item_id] = item
        item.written_ms, item.restart = from_ms, True

    def cleared(self) -> None:
        """Call when sending ``clear``: pending echoes are now meaningless."""
        self._cleared_through = self._seq
        self._pending.clear()
        self._idle = True

    # -- echoes -------------------------------------------------------------------

    def mark_echoed(self, name: str, now: float) -> EchoKind:
        kind, seq = name[:1], name[1:]
        if kind not in ("a", "p") or not (seq.isascii() and seq.isdigit()):
            return "unknown"
        n = int(seq)
        if n <= self._cleared_through:
            self._probes.pop(n, None)
            return "cleared"
        if kind == "p":
            sent = self._probes.pop(n, None)
            if sent is None:
                return "unknown"
            sample = now - sent
            if 0 <= sample <= _MAX_SAMPLE_MS:
                self.rtt_ms = _smooth(self.rtt_ms, sample)
            return "probe"
        while self._pending and self._pending[0][0] < n:
            self._pending.popleft()  # an echo was lost; playback is past it anyway
        if not self._pending or self._pending[0][0] != n:
            return "unknown"
        _, position = self._pending.popleft()
        self._anchor_pos, self._anchor_time = position, now
        if n == self._run_first_seq:
            written_at, first_ms = self._run_first
            sample = now - first_ms - written_at
            if 0 <= sample <= _MAX_SAMPLE_MS:
                self.lead_ms = _smooth(self.lead_ms, sample)
        return "audio"

    # -- estimates ----------------------------------------------------------------

    def position(self, now: float) -> float:
        """Stream position a ``clear`` sent at ``now`` would cut at."""
        if self._idle:
            return self._stream_ms
        pos = self._anchor_pos + (now - self._anchor_time) + (self.rtt_ms or 0.0)
        return min(max(pos, self._anchor_pos), self._stream_ms)

    @property
    def stream_ms(self) -> float:
        """Audio written since the stream began: where the next chunk will start."""
        return self._stream_ms

    def echo_position(self, now: float) -> float:
        """The stream position the caller heard when the caller audio arriving now was
        spoken: caller audio and mark echoes share the way back, so this is the newest
        echo projected to ``now`` (past the end of what was written once it has played)."""
        return self._anchor_pos + (now - self._anchor_time)

    def all_echoed(self) -> bool:
        """Twilio has confirmed playing everything written (no mark awaits its echo)."""
        return not self._pending

    def written_ms(self, item_id: str) -> float:
        item = self._items.get(item_id)
        return item.written_ms if item else 0.0

    def heard_ms(self, item_id: str, now: float) -> float:
        """Estimated ms of the item the caller will have heard when a ``clear`` lands."""
        item = self._items.get(item_id)
        if item is None:
            return 0.0
        return min(max(self.position(now) - item.start, 0.0), item.written_ms)

    def playing(self, now: float) -> bool:
        """Audio written to Twilio is still to be played (a ``clear`` would cut it)."""
        return self.position(now) < self._stream_ms

    def item_at(self, now: float) -> str | None:
        """The item whose audio a ``clear`` sent now would cut, if any."""
        pos = self.position(now)
        if pos >= self._stream_ms:
            return None
        for item in reversed(self._items.values()):
            if item.start <= pos:
                return item.item_id
        return None


def _smooth(old: float | None, sample: float) -> float:
    return sample if old is None else old + _EWMA * (sample - old)
