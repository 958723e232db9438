"""What one emulated call saw: the report, the network it crossed, the shape checks.

:class:`CallReport` is filled by :class:`~voicebridge.twilio_sim.emulator.EmulatedCall`;
:func:`check_outbound` holds a server's messages to the shapes Twilio documents (A.2).
"""

from __future__ import annotations

import base64
import binascii
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebridge.core.audio import audioop
from voicebridge.twilio_sim.player import TwilioPlayer
from voicebridge.twilio_sim.webhook_client import TwiML

__all__ = ["FRAME_MS", "MAX_KEPT_VIOLATIONS", "CallReport", "Network", "check_outbound"]

FRAME_MS = 20
MAX_KEPT_VIOLATIONS = 200  # per call; ``violation_count`` counts them all


@dataclass(frozen=True)
class Network:
    """The path between Twilio and the server, as the server sees it."""

    down_ms: float = 0.0  # server -> Twilio one-way delay
    up_ms: float = 0.0  # Twilio -> server one-way delay
    jitter_ms: float = 0.0  # each message is late by a further uniform 0..jitter_ms
    playout_ms: float = 0.0  # audio reaching an idle buffer waits this long before playing
    seed: int | None = None


@dataclass
class CallReport:
    call_sid: str
    stream_sid: str
    twiml: TwiML | None = None
    webhook_status: int | None = None
    frames_sent: int = 0
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)  # the first MAX_KEPT_VIOLATIONS
    violation_count: int = 0
    echoes_sent: int = 0
    frames_received: int = 0  # media messages from the server that passed the shape check
    webhook_ms: float | None = None  # POST to TwiML parsed (place_call)
    connect_ms: float | None = None  # WebSocket connect to open
    start_sent_at: float | None = None  # ms on the call clock
    send_lag_max_ms: float = 0.0  # how late a frame left against its schedule, at worst
    closed_by: str | None = None  # "caller" or "server"
    close_code: int | None = None
    close_reason: str = ""  # the close frame's reason, as the server gave it
    t0: float = 0.0  # time.monotonic() when the stream opened: the call clock's zero
    stop_sent_at: float | None = None  # ms on the call clock
    ended_at: float = 0.0  # ms on the call clock
    # The TwiML verbs Twilio ran once the stream ended: the <Connect action>'s answer, or the
    # verbs after </Connect>; empty when the caller hung up. ("Error", status) when the
    # action could not be fetched (Twilio then plays its own application-error message).
    after_stream: tuple[tuple[str, str], ...] = ()
    caller_audio: list[tuple[float, str]] = field(default_factory=list)  # (spoken at, payload)
    player: TwilioPlayer = field(default_factory=TwilioPlayer)

    def received_events(self, event: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.received if m.get("event") == event]

    def write_wav(self, path: str | Path) -> None:
        """Stereo 16-bit 8 kHz WAV: the caller left, what the caller heard right."""
        end_ms = max(
            [self.ended_at]
            # Audio a clear cut before it played would start late: it must not pad the end.
            + [c.start + c.played for c in self.player.chunks if c.played > 0]
            + [t + FRAME_MS for t, _ in self.caller_audio]
        )
        n = int(end_ms * 8) + 1
        left = bytearray(n * 2)
        right = bytearray(n * 2)
        for t, payload in self.caller_audio:
            _place(left, audioop.ulaw2lin(base64.b64decode(payload), 2), t)
        for c in self.player.chunks:
            if c.played > 0:
                pcm = audioop.ulaw2lin(base64.b64decode(c.payload), 2)
                _place(right, pcm[: int(c.played * 8) * 2], c.start)
        stereo = audioop.add(
            audioop.tostereo(bytes(left), 2, 1, 0), audioop.tostereo(bytes(right), 2, 0, 1), 2
        )
        with wave.open(str(path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(stereo)


def _place(track: bytearray, pcm: bytes, at_ms: float) -> None:
    offset = int(at_ms * 8) * 2
    end = min(len(track), offset + len(pcm))
    if offset < end:
        track[offset:end] = pcm[: end - offset]


# The only messages a server may send on a bidirectional stream, field for field (A.2).
_SHAPES = {
    "media": frozenset({"event", "streamSid", "media"}),
    "mark": frozenset({"event", "streamSid", "mark"}),
    "clear": frozenset({"event", "streamSid"}),
}
_PAYLOAD_ONLY = frozenset({"payload"})
_NAME_ONLY = frozenset({"name"})


def check_outbound(msg: Any, stream_sid: str) -> str | None:
    """Why a message from the server breaks Twilio's documented shapes, or None."""
    if not isinstance(msg, dict):
        return "not a JSON object"
    event = msg.get("event")
    shape = _SHAPES.get(event) if isinstance(event, str) else None
    if shape is None:
        return f"unsupported event {event!r}"
    if msg.keys() != shape:
        return f"{event}: fields {sorted(msg)} (31951: missing or extra field)"
    if msg["streamSid"] != stream_sid:
        return f"{event}: wrong streamSid {msg['streamSid']!r}"
    if event == "media":
        media = msg["media"]
        if not isinstance(media, dict) or media.keys() != _PAYLOAD_ONLY:
            return "media: `media` must be exactly {payload}"
        try:
            if not base64.b64decode(media["payload"], validate=True):
                return "media: empty payload"
        except (binascii.Error, TypeError, ValueError):
            return "media: payload is not base64"
    if event == "mark":
        mark = msg["mark"]
        if (
            not isinstance(mark, dict)
            or mark.keys() != _NAME_ONLY
            or not isinstance(mark["name"], str)
        ):
            return "mark: `mark` must be exactly {name: str}"
    return None
