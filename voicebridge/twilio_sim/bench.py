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
import contextlib
import secrets
import time
from array import array
from collections import deque
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

from voicebridge.fake_realtime.bench import KEY_CHARS

__all__ = [
    "DITHER_BYTES",
    "BenchPath",
    "FrameLog",
    "dither_payload",
    "frame_id_base",
    "run_tag",
    "write_now",
]

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


class BenchPath:
    """One emulated call's bench-only work: dithered frames, the frame log, the direct path."""

    def __init__(
        self, dither_base: int | None, frame_log: FrameLog | None, direct_url: str | None
    ) -> None:
        self.dither_base = dither_base
        self.frame_log = frame_log
        self.direct_url = direct_url
        self.direct: ClientConnection | None = None
        # (dithered payload, due on the call clock) of each media on the uplink.
        self._queue: deque[tuple[str, float]] = deque()
        self._frame_no = 0

    async def open(self, stack: contextlib.AsyncExitStack, open_timeout: float) -> None:
        if self.direct_url is not None:
            self.direct = await stack.enter_async_context(
                connect(
                    self.direct_url,
                    compression=None,
                    open_timeout=open_timeout,
                    close_timeout=1,
                    proxy=None,
                )
            )

    def dither(self, payload: str) -> str:
        if self.dither_base is None:
            return payload
        payload = dither_payload(payload, self.dither_base + self._frame_no)
        self._frame_no += 1
        return payload

    def queued(self, payload: str, due_ms: float) -> None:
        self._queue.append((payload, due_ms))

    async def send(self, ws: ClientConnection, text: str, t0: float) -> None:
        """A media message, and its copy on the direct path, noted in the frame log.

        Written straight to the socket, without waiting for the write buffer to drain:
        Twilio does not slow down for a slow server either, and a server that stops
        reading must show up as its own lag, not as the load generator's. It also halves
        the load generator's cost per frame (one core runs the load and the fake).
        """
        payload, due = self._queue.popleft()
        sent = time.monotonic()
        direct = self.direct
        if direct is None:
            await write_now(ws, text)
        else:
            append = '{"type":"input_audio_buffer.append","audio":"' + payload + '"}'
            # Alternate which leaves first: neither path is always a send late.
            if self._frame_no & 1:
                await write_now(direct, append)
                await write_now(ws, text)
            else:
                await write_now(ws, text)
                await write_now(direct, append)
        if self.frame_log is not None:
            self.frame_log.add(payload, t0 + due / 1000.0, sent, direct is not None)


_ZERO_MASK = b"\x00\x00\x00\x00"


async def write_now(ws: ClientConnection, text: str) -> None:
    """``text`` as one text frame, handed to the transport at once (no drain).

    The frame is built here with an all-zero masking key: legal framing (the server unmasks
    whatever the key), and it spares the load generator ``websockets``' fresh random key per
    frame, a ``getrandom`` system call that cost it an eighth of its CPU. The key exists to
    defeat cache-poisoning proxies; there are none on loopback.
    """
    if ws.protocol.state is not State.OPEN:
        await ws.send(text)  # raises ConnectionClosed as a normal send would
        return
    data = text.encode()
    n = len(data)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = b"\x81\xfe" + n.to_bytes(2, "big")
    else:
        head = b"\x81\xff" + n.to_bytes(8, "big")
    ws.transport.write(head + _ZERO_MASK + data)
