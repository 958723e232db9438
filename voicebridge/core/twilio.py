"""Twilio Media Streams messages (bidirectional streams), parsed and built without I/O.

Inbound (Twilio → voicebridge): ``connected``, ``start``, ``media``, ``dtmf``, ``mark``,
``stop``. Outbound: only ``media``, ``mark`` and ``clear`` are accepted, each with exactly
the documented fields — an extra or missing field is Twilio error 31951.

The socket is open to anyone until ``start`` is admitted, so nothing here may raise anything
but :class:`TwilioProtocolError`, and every value kept is bounded: no container from a frame
is ever stringified (``str()`` of a 1000-deep object is a RecursionError).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from voicebridge.core.fields import Fields
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


# Twilio sends numbers as strings ("timestamp": "5"); accept both.
_f = Fields(TwilioProtocolError, numeric_strings=True)

# Bounds on what `start` may carry (Twilio's SIDs are 34 characters; "the combined length of
# each <Parameter> name and value attributes must be under 500"), with room to spare.
MAX_SID = 64
MAX_TRACKS = 4
MAX_SHORT_TEXT = 64  # a track, the encoding, the protocol, an unknown event's name
MAX_PARAMETERS = 64
MAX_PARAMETER_CHARS = 1000  # name and value together


def _sid(obj: dict[str, Any], key: str, event: str) -> str:
    sid = _f.string(obj, key, event)
    if len(sid) > MAX_SID:
        raise TwilioProtocolError("oversized_field", f"{event!r} {key} is over {MAX_SID} chars")
    return sid


def _short(value: object, default: str) -> str:
    """A short text field: a string cut to length, anything else the default (never str())."""
    return value[:MAX_SHORT_TEXT] if isinstance(value, str) else default


def _parameters(start: dict[str, Any]) -> dict[str, str]:
    params = start.get("customParameters") or {}
    if not isinstance(params, dict):
        raise TwilioProtocolError("bad_shape", "'start' customParameters is not an object")
    if len(params) > MAX_PARAMETERS:
        raise TwilioProtocolError("oversized_field", "'start' has too many customParameters")
    for name, value in params.items():
        if not isinstance(value, str):  # Twilio's are strings: a nested value is not Twilio
            raise TwilioProtocolError("bad_shape", "a 'start' customParameter is not a string")
        if len(name) + len(value) > MAX_PARAMETER_CHARS:
            raise TwilioProtocolError("oversized_field", "a 'start' customParameter is too long")
    return params


def _start(msg: dict[str, Any]) -> Start:
    event = "start"
    start = _f.mapping(msg, "start", event)
    fmt = start.get("mediaFormat") or {}
    if not isinstance(fmt, dict):
        raise TwilioProtocolError("bad_shape", "'start' mediaFormat is not an object")
    tracks = start.get("tracks") or []
    if not isinstance(tracks, list) or len(tracks) > MAX_TRACKS:
        raise TwilioProtocolError("bad_shape", "'start' tracks is not a short list")
    return Start(
        stream_sid=_sid(start, "streamSid", event),
        call_sid=_sid(start, "callSid", event),
        account_sid=_sid(start, "accountSid", event) if "accountSid" in start else "",
        tracks=tuple(_short(t, "") for t in tracks),
        encoding=_short(fmt.get("encoding"), "audio/x-mulaw"),
        sample_rate=_f.integer(fmt, "sampleRate", event) if "sampleRate" in fmt else 8000,
        channels=_f.integer(fmt, "channels", event) if "channels" in fmt else 1,
        custom_parameters=_parameters(start),
    )


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
        media = _f.mapping(msg, "media", event)
        return Media(
            stream_sid=_f.string(msg, "streamSid", event),
            timestamp_ms=_f.integer(media, "timestamp", event),
            payload=_f.string(media, "payload", event),
            chunk=_f.integer(media, "chunk", event) if "chunk" in media else 0,
        )
    if event == "mark":
        return Mark(
            _f.string(msg, "streamSid", event),
            _f.string(_f.mapping(msg, "mark", event), "name", event),
        )
    if event == "start":
        return _start(msg)
    if event == "connected":
        return Connected(_short(msg.get("protocol"), ""))
    if event == "stop":
        return Stop(_f.string(msg, "streamSid", event))
    if event == "dtmf":
        return Dtmf(
            _f.string(msg, "streamSid", event),
            _f.string(_f.mapping(msg, "dtmf", event), "digit", event),
        )
    if not isinstance(event, str):
        raise TwilioProtocolError("bad_shape", "frame has no 'event' string")
    return Unknown(event[:MAX_SHORT_TEXT])


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
