"""What Twilio sends on one replayed call, and when: pure, no I/O, no clock.

A :class:`CallScript` is a recording prepared once and shared by every call that plays it:
the payloads and their offsets from the first frame, the ``dtmf`` messages between frames,
and where the caller speaks. :func:`schedule` lays it out on one call's clock (looped back
to back if asked), and a :class:`TwilioWriter` turns each step into the exact text Twilio
would send, numbering as Twilio does (PROTOCOLS.md A.1): ``sequenceNumber`` "1" on ``start``
and one more on every later message (``connected`` has none), ``media.chunk`` from 1, one
more per frame, ``media.timestamp`` in ms from the stream's start, continuing at the
recording's own cadence across loops.

Times are absolute: frame ``n`` of a call is due at a time computed from ``n`` alone
(:func:`media_due_ms`), never by adding 20 ms to the previous frame's time, so a long call
does not drift.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from voicebridge.core.audio import ULAW_SILENCE
from voicebridge.twilio_sim.recordings import FRAME_MS, Recording, speech_segments

__all__ = [
    "FRAME_MS",
    "SILENCE_PAYLOAD",
    "CallScript",
    "Step",
    "TwilioWriter",
    "media_due_ms",
    "schedule",
    "spoken_until_ms",
]

SILENCE_PAYLOAD = base64.b64encode(bytes([ULAW_SILENCE]) * 160).decode()  # 20 ms of silence
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")

Kind = Literal["connected", "start", "media", "dtmf", "stop"]
# (due ms on the call clock, kind, payload, media timestamp, recorded dtmf message)
Step = tuple[float, Kind, str, int, "dict[str, Any] | None"]


@dataclass(frozen=True)
class CallScript:
    """A recording ready to be played by many calls; build with :meth:`from_recording`."""

    name: str
    connected: dict[str, Any]
    start: dict[str, Any]
    payloads: tuple[str, ...]
    offsets: tuple[int, ...]  # ms from the first frame's timestamp, non-decreasing
    first_timestamp: int  # the first frame's recorded timestamp (real calls start at 135)
    dtmf: tuple[tuple[int, dict[str, Any]], ...]  # (frames before it in one pass, message)
    has_stop: bool
    speech: tuple[tuple[float, float], ...]  # (start, end) ms from the first frame

    @property
    def period_ms(self) -> int:
        """One pass of the recording: the next pass's first frame starts this much later."""
        return self.offsets[-1] + FRAME_MS if self.offsets else 0

    @classmethod
    def from_recording(cls, recording: Recording, *, speech_threshold: int = 500) -> CallScript:
        """Check and prepare a recording.

        Raises:
            ValueError: a media frame without a payload or timestamp, a payload that is not
                base64, or timestamps that go backwards.
        """
        connected: dict[str, Any] = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        start: dict[str, Any] = {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
        payloads: list[str] = []
        offsets: list[int] = []
        dtmf: list[tuple[int, dict[str, Any]]] = []
        first: int | None = None
        has_stop = False
        where = recording.name
        for i, msg in enumerate(recording.messages):
            event = msg.get("event")
            if event == "connected":
                connected = msg
            elif event == "start":
                if not isinstance(msg.get("start"), dict):
                    raise ValueError(f"{where}: message {i + 1}: `start` without a start object")
                start = msg
            elif event == "media":
                media = msg.get("media")
                try:
                    payload = media["payload"]  # type: ignore[index]
                    ts = int(media["timestamp"])  # type: ignore[index]
                except (KeyError, TypeError, ValueError):
                    raise ValueError(
                        f"{where}: message {i + 1}: media without a payload and timestamp"
                    ) from None
                if not isinstance(payload, str) or not _BASE64.fullmatch(payload):
                    raise ValueError(f"{where}: message {i + 1}: payload is not base64")
                first = ts if first is None else first
                offset = ts - first
                if offsets and offset < offsets[-1]:
                    raise ValueError(f"{where}: message {i + 1}: timestamp goes backwards")
                payloads.append(payload)
                offsets.append(offset)
            elif event == "dtmf":
                dtmf.append((len(payloads), msg))
            elif event == "stop":
                has_stop = True
            # `mark` echoes are made live at playback time; anything else is not Twilio's.
        segments = []
        for s, e in speech_segments(payloads, threshold=speech_threshold):
            # speech_segments counts 20 ms per frame; map back to the recorded timestamps.
            a, b = int(s) // FRAME_MS, int(e) // FRAME_MS - 1
            segments.append((float(offsets[a]), float(offsets[b] + FRAME_MS)))
        return cls(
            name=recording.name,
            connected=connected,
            start=start,
            payloads=tuple(payloads),
            offsets=tuple(offsets),
            first_timestamp=first or 0,
            dtmf=tuple(dtmf),
            has_stop=has_stop,
            speech=tuple(segments),
        )

    def speech_on_call_clock(
        self, *, speed: float, loop: bool, until_ms: float
    ) -> list[tuple[float, float]]:
        """The caller's utterances as spoken on one call's clock, ending by ``until_ms``."""
        out: list[tuple[float, float]] = []
        period = self.period_ms
        p = 0
        while True:
            base = p * period
            for s, e in self.speech:
                if (base + e) / speed > until_ms:
                    return out
                out.append(((base + s) / speed, (base + e) / speed))
            p += 1
            if not loop or not period or not self.speech:
                return out


def media_due_ms(script: CallScript, n: int, speed: float = 1.0) -> tuple[float, int]:
    """(due ms on the call clock, ``media.timestamp``) of the call's frame ``n`` (from 0).

    Computed from ``n`` alone: pass ``n // frames``, frame ``n % frames`` of the recording.
    """
    passes, k = divmod(n, len(script.offsets))
    rel = passes * script.period_ms + script.offsets[k]
    return rel / speed, script.first_timestamp + rel


def spoken_until_ms(script: CallScript, frames: int, *, speed: float, loop: bool) -> float:
    """When the caller's recorded audio stopped, on the call clock, after ``frames`` frames."""
    if frames <= 0 or not script.offsets:
        return 0.0
    if not loop and frames >= len(script.offsets):
        return script.period_ms / speed
    due, _ = media_due_ms(script, frames - 1, speed)
    return due + FRAME_MS / speed


def schedule(
    script: CallScript, *, speed: float = 1.0, loop: bool = False, tail_ms: float = 0.0
) -> Iterator[Step]:
    """Every message of one call in order, with the time it is due on the call's clock.

    ``connected`` and ``start`` at 0; frames at their recorded offsets (scaled by
    ``1 / speed``), each ``dtmf`` with the frame before it. Without ``loop``: then
    ``tail_ms`` of silence frames, then ``stop`` with the last frame, if the recording has
    one. With ``loop`` the recording repeats for ever: the caller's hang-up ends the call.
    """
    yield 0.0, "connected", "", 0, None
    yield 0.0, "start", "", 0, None
    payloads, frames = script.payloads, len(script.payloads)
    if loop and not frames:
        raise ValueError(f"{script.name}: a recording without media frames cannot loop")
    dtmf = script.dtmf
    n = 0  # frames of the whole call so far
    due = 0.0
    while True:
        d = 0
        for k in range(frames):
            while d < len(dtmf) and dtmf[d][0] <= k:
                yield due, "dtmf", "", 0, dtmf[d][1]
                d += 1
            due, ts = media_due_ms(script, n, speed)
            yield due, "media", payloads[k], ts, None
            n += 1
        for _, msg in dtmf[d:]:
            yield due, "dtmf", "", 0, msg
        if not loop:
            break
    if tail_ms > 0 and frames:
        rel_end = script.period_ms  # silence continues the stream at the same cadence
        for i in range(int(tail_ms // FRAME_MS)):
            rel = rel_end + i * FRAME_MS
            due = rel / speed
            yield due, "media", SILENCE_PAYLOAD, script.first_timestamp + rel, None
    if script.has_stop:
        yield due, "stop", "", 0, None


class TwilioWriter:
    """The text of each message Twilio sends on one stream, numbered as Twilio numbers them.

    Media messages come from a template built once per call: formatting one costs a
    single ``%`` substitution, no dict and no ``json.dumps``. ``parameters`` are the
    TwiML's ``<Parameter>``s for ``start.customParameters`` (none: no such key, as Twilio
    sends it); ``None`` keeps whatever the recording's ``start`` had.
    """

    def __init__(
        self,
        script: CallScript,
        *,
        stream_sid: str,
        call_sid: str,
        account_sid: str,
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        self.script = script
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.parameters = dict(parameters) if parameters is not None else None
        self.seq = 0  # the last sequenceNumber sent
        self.chunk = 0  # the last media.chunk sent
        sid = json.dumps(stream_sid).replace("%", "%%")
        self._media = (
            '{"event":"media","sequenceNumber":"%d","media":{"track":"inbound",'
            '"chunk":"%d","timestamp":"%d","payload":"%s"},"streamSid":' + sid + "}"
        )
        self._mark = '{"event":"mark","sequenceNumber":"%d","streamSid":' + sid + ',"mark":%s}'

    def connected(self) -> str:
        return json.dumps(self.script.connected)

    def start(self) -> str:
        self.seq += 1
        msg = dict(self.script.start)
        msg["sequenceNumber"] = str(self.seq)
        start = dict(msg["start"])
        start.update(streamSid=self.stream_sid, callSid=self.call_sid, accountSid=self.account_sid)
        if self.parameters:
            start["customParameters"] = dict(self.parameters)
        elif self.parameters is not None:
            # No <Parameter> in the TwiML: Twilio sends no customParameters key at all.
            start.pop("customParameters", None)
        msg["start"] = start
        msg["streamSid"] = self.stream_sid
        return json.dumps(msg)

    def media(self, payload: str, timestamp: int) -> str:
        self.seq += 1
        self.chunk += 1
        return self._media % (self.seq, self.chunk, timestamp, payload)

    def dtmf(self, recorded: Mapping[str, Any]) -> str:
        self.seq += 1
        msg = dict(recorded)
        msg["sequenceNumber"] = str(self.seq)
        msg["streamSid"] = self.stream_sid
        return json.dumps(msg)

    def mark(self, name: str) -> str:
        """The echo of a mark the server sent, when its audio has played."""
        self.seq += 1
        return self._mark % (self.seq, json.dumps({"name": name}))

    def stop(self) -> str:
        self.seq += 1
        return json.dumps(
            {
                "event": "stop",
                "sequenceNumber": str(self.seq),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )
