"""Bench-only support of the fake Realtime server: per-frame arrival times (``bench/``).

Off unless ``FakeRealtimeOptions.bench_arrivals`` is set. The capacity benchmark makes every
caller frame unique (``voicebridge replay --bench-dither`` sets the lowest bit of the first
48 μ-law bytes to a per-frame id), so the first :data:`KEY_CHARS` base64 characters of a
payload name the frame end to end. The fake then notes, for every frame it receives, that
key, ``time.monotonic()`` when its WebSocket handed the message over, and which path it came
by: ``b`` appended by a normal session (the bridge), or a *sink* connection opened with
``?bench=direct`` (the load generator's own direct baseline) or ``?bench=relay`` (the bare
reference relay, which forwards Twilio's ``media`` verbatim). A sink answers nothing: no
session, no VAD, no responses.
"""

from __future__ import annotations

from array import array

__all__ = ["KEY_CHARS", "SINK_KINDS", "Arrivals", "frame_key"]

# 48 dithered bytes = 64 base64 characters; the replay tool writes the same prefix.
KEY_CHARS = 64
# ?bench=VALUE on a sink connection -> the path letter recorded.
SINK_KINDS = {"direct": "d", "relay": "r"}
_MARKERS = ('"audio":"', '"payload":"')


def frame_key(message: str | bytes) -> str | None:
    """The frame key of an ``input_audio_buffer.append`` or a Twilio ``media`` text, found
    without parsing the JSON (a sink must stay cheap); None for anything else."""
    if not isinstance(message, str):
        return None
    for marker in _MARKERS:
        at = message.find(marker)
        if at >= 0:
            start = at + len(marker)
            key = message[start : start + KEY_CHARS]
            return key if len(key) == KEY_CHARS and '"' not in key else None
    return None


class Arrivals:
    """Arrival records kept in columns until :meth:`take` hands them over (and forgets them)."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.times = array("d")
        self.kinds: list[str] = []

    def add(self, key: str, at: float, kind: str) -> None:
        self.keys.append(key)
        self.times.append(at)
        self.kinds.append(kind)

    def __len__(self) -> int:
        return len(self.keys)

    def take(self) -> tuple[list[str], list[str], array[float]]:
        """(kinds, keys, monotonic seconds) of every arrival since the last call, in columns."""
        out = (self.kinds, self.keys, self.times)
        self.keys, self.times, self.kinds = [], array("d"), []
        return out
