"""Twilio Media Streams messages (bidirectional streams), parsed and built without I/O.

Inbound (Twilio → voicebridge): ``connected``, ``start``, ``media``, ``dtmf``, ``mark``,
``stop``. Outbound: only ``media``, ``mark`` and ``clear`` are accepted, each with exactly
the documented fields — an extra or missing field is Twilio error 31951.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from voicebridge.errors import TwilioProtocolError

__all__ = [
    "Connected",
    "Dtmf",
    "Mark",
    "Media",
    "Start",
    "Stop",
    "TwilioEvent",
    "Unknown",
    "clear_message",
    "mark_message",
    "media_message",
    "parse_twilio",
]


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    encoding: str
    sample_rate: int
    channels: int
    # Values of the TwiML <Parameter>s; the key is absent when the TwiML sets none.
    custom_parameters: dict[str, str] = field(default_factory=dict)


# Not frozen: one is built per 20 ms frame, and a frozen dataclass's __init__ costs about
# three times as much (object.__setattr__ per field).
@dataclass(slots=True)
class Media:
    stream_sid: str
    timestamp_ms: int
    payload: str  # base64 μ-law, passed on untouched
    chunk: int


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_sid: str
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_sid: str


@dataclass(frozen=True, slots=True)
class Unknown:
    event: str


TwilioEvent = Connected | Start | Media | Dtmf | Mark | Stop | Unknown


def _obj(msg: dict[str, Any], key: str) -> dict[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise TwilioProtocolError("bad_shape", f"{msg.get('event')!r} without a {key!r} object")
    return value


def _str(obj: dict[str, Any], key: str, event: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise TwilioProtocolError("bad_shape", f"{event!r} field {key!r} is not a string")
    return value


def _int(obj: dict[str, Any], key: str, event: str) -> int:
    # Twilio sends numbers as strings ("timestamp": "5"); accept both.
    value = obj.get(key)
    if isinstance(value, bool):
        raise TwilioProtocolError("bad_shape", f"{event!r} field {key!r} is not a number")
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise TwilioProtocolError("bad_shape", f"{event!r} field {key!r} is not a number") from None


def parse_twilio(text: str | bytes) -> TwilioEvent:
    """Parse one text frame from Twilio.

    Raises:
        TwilioProtocolError: the frame is not JSON, not an object, or lacks a field
            the event needs. Unknown event types are returned as ``Unknown``.
    """
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:  # also invalid UTF-8, NaN, and nesting over 1024 deep
        raise TwilioProtocolError("not_json", "frame is not JSON") from None
    if not isinstance(msg, dict):
        raise TwilioProtocolError("bad_shape", "frame is not a JSON object")
    event = msg.get("event")
    if event == "media":
        # Fast path for the well-formed frame, 50 a second per call; anything unusual takes
        # the checked path below, which says what is wrong.
        media = msg.get("media")
        if type(media) is dict:
            sid, payload, ts = msg.get("streamSid"), media.get("payload"), media.get("timestamp")
            chunk = media.get("chunk", 0)
            if (
                type(sid) is str
                and type(payload) is str
                and type(ts) is str
                and ts.isascii()
                and ts.isdigit()
                and type(chunk) is str
                and chunk.isascii()
                and chunk.isdigit()
                and len(ts) < 20
                and len(chunk) < 20
            ):
                return Media(sid, int(ts), payload, int(chunk))
        media = _obj(msg, "media")
        return Media(
            stream_sid=_str(msg, "streamSid", event),
            timestamp_ms=_int(media, "timestamp", event),
            payload=_str(media, "payload", event),
            chunk=_int(media, "chunk", event) if "chunk" in media else 0,
        )
    if event == "mark":
        return Mark(_str(msg, "streamSid", event), _str(_obj(msg, "mark"), "name", event))
    if event == "start":
        start = _obj(msg, "start")
        fmt = start.get("mediaFormat") or {}
        if not isinstance(fmt, dict):
            raise TwilioProtocolError("bad_shape", "'start' mediaFormat is not an object")
        params = start.get("customParameters") or {}
        if not isinstance(params, dict):
            raise TwilioProtocolError("bad_shape", "'start' customParameters is not an object")
        tracks = start.get("tracks") or []
        return Start(
            stream_sid=_str(start, "streamSid", event),
            call_sid=_str(start, "callSid", event),
            account_sid=str(start.get("accountSid", "")),
            tracks=tuple(str(t) for t in tracks) if isinstance(tracks, list) else (),
            encoding=str(fmt.get("encoding", "audio/x-mulaw")),
            sample_rate=_int(fmt, "sampleRate", event) if "sampleRate" in fmt else 8000,
            channels=_int(fmt, "channels", event) if "channels" in fmt else 1,
            custom_parameters={str(k): str(v) for k, v in params.items()},
        )
    if event == "connected":
        return Connected(str(msg.get("protocol", "")))
    if event == "stop":
        return Stop(_str(msg, "streamSid", event))
    if event == "dtmf":
        return Dtmf(_str(msg, "streamSid", event), _str(_obj(msg, "dtmf"), "digit", event))
    if not isinstance(event, str):
        raise TwilioProtocolError("bad_shape", "frame has no 'event' string")
    return Unknown(event)


# Outbound messages are formatted by hand: they are on the hot path and their shape is
# fixed. json.dumps escapes the only free-form values (stream SID, mark name, payload).


def media_message(stream_sid: str, payload_b64: str) -> str:
    """``media``: audio for the caller, base64 μ-law 8 kHz, no file header."""
    return (
        '{"event":"media","streamSid":'
        + json.dumps(stream_sid)
        + ',"media":{"payload":'
        + json.dumps(payload_b64)
        + "}}"
    )


def mark_message(stream_sid: str, name: str) -> str:
    """``mark``: Twilio echoes it when playback reaches this point, or at once if idle."""
    return (
        '{"event":"mark","streamSid":'
        + json.dumps(stream_sid)
        + ',"mark":{"name":'
        + json.dumps(name)
        + "}}"
    )


def clear_message(stream_sid: str) -> str:
    """``clear``: empty Twilio's playback buffer; pending marks are echoed at once."""
    return '{"event":"clear","streamSid":' + json.dumps(stream_sid) + "}"
