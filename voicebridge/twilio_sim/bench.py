"""Bench-only parts of ``voicebridge replay``: unique frames and their send times (``bench/``).

Off unless asked (``--bench-dither``). Twilio's silence frames are all alike, and a bridge
passes μ-law payloads through untouched, so to follow one frame end to end each is made
unique: the lowest bit of each of its first :data:`DITHER_BYTES` μ-law bytes is set to one
bit of a 48-bit id (a random run tag, the call's index, the frame's number in the call). A
change of the lowest bit is one quantisation step: inaudible, and below the fake's VAD
threshold. The first :data:`~voicebridge.fake_realtime.bench.KEY_CHARS` base64 characters then
name the frame; the fake notes when each key arrives (``fake_bench``), and :class:`FrameLog`
notes when it was due and when it was sent. ``bench/run.py`` joins the two.

The direct baseline (``--bench-direct URL``): each call also streams its frames, at the
moment they are sent to the bridge, as ``input_audio_buffer.append`` over its own WebSocket
straight to the fake, so the load generator's and the fake's own lateness can be measured
in the same run and subtracted.
"""

from __future__ import annotations

import binascii
import secrets
from array import array
from pathlib import Path

from voicebridge.fake_realtime.bench import KEY_CHARS

__all__ = ["DITHER_BYTES", "FrameLog", "dither_payload", "frame_id_base", "run_tag"]

DITHER_BYTES = 48  # 48 bits of id in 48 lowest bits: 64 base64 characters
_TAG_BITS, _CALL_BITS, _FRAME_BITS = 16, 14, 18
# _SPREAD[b]: 8 bytes (big-endian int) whose byte i has bit i of b as its lowest bit.
_SPREAD = tuple(int.from_bytes(bytes((b >> i) & 1 for i in range(8)), "big") for b in range(256))
_LOW_BITS = int.from_bytes(b"\x01" * DITHER_BYTES, "big")
_CHUNKS = DITHER_BYTES // 8


def run_tag() -> int:
    """A random tag for one replay run: keys stay unique across runs and steps."""
    return secrets.randbits(_TAG_BITS)


def frame_id_base(tag: int, call_index: int) -> int:
    """The id of frame 0 of a call; frame ``n`` is ``base + n`` (n < 2**18: 87 minutes)."""
    call = call_index % (1 << _CALL_BITS)
    return ((tag << _CALL_BITS | call) << _FRAME_BITS) & ((1 << DITHER_BYTES) - 1)


def _spread(ident: int) -> int:
    out = 0
    for k in range(_CHUNKS):
        out = out << 64 | _SPREAD[(ident >> (8 * k)) & 0xFF]
    return out


def dither_payload(payload: str, ident: int) -> str:
    """``payload`` (base64 μ-law) with its first 48 lowest bits set to ``ident``'s bits.

    Payloads shorter than 48 bytes (or not base64) are returned unchanged: they cannot be told
    apart and are not measured.
    """
    try:
        raw = binascii.a2b_base64(payload)
    except binascii.Error:
        return payload
    if len(raw) < DITHER_BYTES:
        return payload
    head = int.from_bytes(raw[:DITHER_BYTES], "big") & ~_LOW_BITS | _spread(ident)
    out = head.to_bytes(DITHER_BYTES, "big") + raw[DITHER_BYTES:]
    return binascii.b2a_base64(out, newline=False).decode("ascii")


class FrameLog:
    """Per frame: its key, when it was due and when it was sent (``time.monotonic()`` s), and
    whether it was also sent on the direct path."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.due = array("d")
        self.sent = array("d")
        self.direct = bytearray()

    def add(self, payload: str, due: float, sent: float, direct: bool = False) -> None:
        if len(payload) >= KEY_CHARS:
            self.keys.append(payload[:KEY_CHARS])
            self.due.append(due)
            self.sent.append(sent)
            self.direct.append(direct)

    def __len__(self) -> int:
        return len(self.keys)

    def write(self, path: Path) -> None:
        """One line per frame: ``KEY DUE SENT D`` (monotonic seconds, µs resolution; D is 1
        when the frame also went on the direct path)."""
        with path.open("w", encoding="ascii") as f:
            for key, due, sent, direct in zip(
                self.keys, self.due, self.sent, self.direct, strict=True
            ):
                f.write(f"{key} {due:.6f} {sent:.6f} {direct}\n")
