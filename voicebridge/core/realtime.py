"""OpenAI Realtime API (GA) events, parsed and built without I/O.

Only the GA shape is produced: ``session.type`` is required, audio settings live under
``session.audio.input`` / ``.output``, and no beta event names appear (beta is refused by
the server with close code 4000 ``beta_api_shape_disabled``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from voicebridge.core.fields import Fields
from voicebridge.core.realtime_session import (  # the session's values, importable here too
    DEFAULT_TRANSCRIPTION_MODEL,
    DEPRECATED_TRANSCRIPTION_MODELS,
    NOISE_REDUCTION_TYPES,
    TRANSCRIPTION_MODELS,
    TURN_DETECTION_TYPES,
    VAD_EAGERNESS,
    AudioFormat,
    SessionConfig,
    session_update,
)
from voicebridge.core.realtime_session import dumps as _dumps
from voicebridge.core.session_state import (  # readers of session.updated, kept importable here
    session_audio_formats,
    session_creates_response,
    session_interrupts_response,
)
from voicebridge.errors import RealtimeProtocolError

__all__ = [
    "DEFAULT_TRANSCRIPTION_MODEL",
    "DEPRECATED_TRANSCRIPTION_MODELS",
    "NOISE_REDUCTION_TYPES",
    "TRANSCRIPTION_MODELS",
    "TURN_DETECTION_TYPES",
    "VAD_EAGERNESS",
    "AudioDelta",
    "AudioFormat",
    "AudioDone",
    "Committed",
    "ErrorEvent",
    "ItemTruncated",
    "Other",
    "RealtimeEvent",
    "ResponseCreated",
    "ResponseDone",
    "SessionConfig",
    "SessionCreated",
    "SessionUpdated",
    "SpeechStarted",
    "SpeechStopped",
    "TimeoutTriggered",
    "Transcribed",
    "TranscriptDelta",
    "create_item",
    "append_audio",
    "parse_realtime",
    "response_cancel",
    "response_create",
    "session_audio_formats",
    "session_creates_response",
    "session_interrupts_response",
    "session_update",
    "truncate_item",
]


def append_audio(audio_b64: str) -> str:
    """``input_audio_buffer.append``; no event_id: the server never answers it.

    ``audio_b64`` must be base64 (checked strictly for Twilio's payloads, produced here
    otherwise): its alphabet needs no JSON escaping, which saves a ``json.dumps`` per frame.
    """
    return '{"type":"input_audio_buffer.append","audio":"' + audio_b64 + '"}'


def truncate_item(item_id: str, audio_end_ms: int, event_id: str) -> str:
    return _dumps(
        {
            "type": "conversation.item.truncate",
            "event_id": event_id,
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": audio_end_ms,
        }
    )


def create_item(item: dict[str, Any], event_id: str) -> str:
    """``conversation.item.create``: add a message (or a tool result) to the conversation."""
    return _dumps({"type": "conversation.item.create", "event_id": event_id, "item": item})


def response_cancel(event_id: str, response_id: str | None = None) -> str:
    event: dict[str, Any] = {"type": "response.cancel", "event_id": event_id}
    if response_id:
        event["response_id"] = response_id
    return _dumps(event)


def response_create(
    event_id: str, instructions: str | None = None, metadata: dict[str, str] | None = None
) -> str:
    """``response.create``; ``metadata`` comes back on the response (``response.created``)."""
    event: dict[str, Any] = {"type": "response.create", "event_id": event_id}
    response = {k: v for k, v in (("instructions", instructions), ("metadata", metadata)) if v}
    if response:
        event["response"] = response
    return _dumps(event)


# -- server events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionCreated:
    session: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    session: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    item_id: str
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class TimeoutTriggered:
    """The caller said nothing for the session's ``idle_timeout_ms``."""

    item_id: str


@dataclass(frozen=True, slots=True)
class Transcribed:
    """A finished transcript: the model's words (``assistant``) or the caller's."""

    role: Literal["caller", "assistant"]
    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    """A piece of the model's transcript, as its audio is generated."""

    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class Committed:
    """``input_audio_buffer.committed``: a caller turn (or an idle timeout's silence) ended."""

    item_id: str


@dataclass(frozen=True, slots=True)
class ResponseCreated:
    response_id: str
    metadata: dict[str, str] | None = None  # as given to response.create; None: none


@dataclass(frozen=True, slots=True)
class AudioDelta:
    response_id: str
    item_id: str
    delta: str  # base64 audio in the session's output format


@dataclass(frozen=True, slots=True)
class AudioDone:
    response_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class ResponseDone:
    response_id: str
    status: str  # completed | cancelled | failed | incomplete
    status_details: dict[str, Any] | None
    usage: dict[str, Any] | None
    output: list[Any]
    metadata: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    type: str
    code: str | None
    message: str
    param: str | None
    event_id: str | None  # the client event that caused it, when known


@dataclass(frozen=True, slots=True)
class ItemTruncated:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class Other:
    """A valid server event voicebridge does not act on."""

    type: str


RealtimeEvent = (
    SessionCreated
    | SessionUpdated
    | SpeechStarted
    | SpeechStopped
    | TimeoutTriggered
    | Transcribed
    | TranscriptDelta
    | Committed
    | ResponseCreated
    | AudioDelta
    | AudioDone
    | ResponseDone
    | ErrorEvent
    | ItemTruncated
    | Other
)


_f = Fields(RealtimeProtocolError)


def _audio_delta(ev: dict[str, Any]) -> RealtimeEvent:
    return AudioDelta(
        _f.string(ev, "response_id"), _f.string(ev, "item_id"), _f.string(ev, "delta")
    )


def _metadata(resp: dict[str, Any]) -> dict[str, str] | None:
    """A response's ``metadata`` (string pairs); anything else reads as none."""
    value = resp.get("metadata")
    if not isinstance(value, dict):
        return None
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _response_created(ev: dict[str, Any]) -> RealtimeEvent:
    resp = _f.mapping(ev, "response")
    return ResponseCreated(_f.string(resp, "id"), _metadata(resp))


def _response_done(ev: dict[str, Any]) -> RealtimeEvent:
    resp = _f.mapping(ev, "response")
    details = resp.get("status_details")
    usage = resp.get("usage")
    output = resp.get("output")
    return ResponseDone(
        response_id=_f.string(resp, "id"),
        status=str(resp.get("status", "")),
        status_details=details if isinstance(details, dict) else None,
        usage=usage if isinstance(usage, dict) else None,
        output=output if isinstance(output, list) else [],
        metadata=_metadata(resp),
    )


def _error(ev: dict[str, Any]) -> RealtimeEvent:
    err = _f.mapping(ev, "error")

    def opt(key: str) -> str | None:
        value = err.get(key)
        return value if isinstance(value, str) else None

    return ErrorEvent(
        type=str(err.get("type", "")),
        code=opt("code"),
        message=str(err.get("message", "")),
        param=opt("param"),
        event_id=opt("event_id"),
    )


_PARSERS: dict[str, Any] = {
    "response.output_audio.delta": _audio_delta,
    "response.output_audio.done": lambda ev: AudioDone(
        _f.string(ev, "response_id"), _f.string(ev, "item_id")
    ),
    "input_audio_buffer.speech_started": lambda ev: SpeechStarted(
        _f.string(ev, "item_id"), _f.integer(ev, "audio_start_ms")
    ),
    "input_audio_buffer.speech_stopped": lambda ev: SpeechStopped(
        _f.string(ev, "item_id"), _f.integer(ev, "audio_end_ms")
    ),
    "response.created": _response_created,
    "input_audio_buffer.committed": lambda ev: Committed(_f.string(ev, "item_id")),
    "input_audio_buffer.timeout_triggered": lambda ev: TimeoutTriggered(_f.string(ev, "item_id")),
    "response.output_audio_transcript.delta": lambda ev: TranscriptDelta(
        _f.string(ev, "item_id"), _f.string(ev, "delta")
    ),
    "response.output_audio_transcript.done": lambda ev: Transcribed(
        "assistant", _f.string(ev, "item_id"), _f.string(ev, "transcript")
    ),
    "conversation.item.input_audio_transcription.completed": lambda ev: Transcribed(
        "caller", _f.string(ev, "item_id"), _f.string(ev, "transcript")
    ),
    "response.done": _response_done,
    "error": _error,
    "conversation.item.truncated": lambda ev: ItemTruncated(
        _f.string(ev, "item_id"), _f.integer(ev, "audio_end_ms")
    ),
    "session.created": lambda ev: SessionCreated(_f.mapping(ev, "session")),
    "session.updated": lambda ev: SessionUpdated(_f.mapping(ev, "session")),
}


def parse_realtime(text: str | bytes) -> RealtimeEvent:
    """Parse one server event.

    Raises:
        RealtimeProtocolError: not JSON, not an object, no ``type``, or a known event
            missing a field voicebridge needs. Unknown types come back as ``Other``.
    """
    try:
        ev = orjson.loads(text)
    except orjson.JSONDecodeError:  # also invalid UTF-8, NaN, and nesting over 1024 deep
        raise RealtimeProtocolError("not_json", "event is not JSON") from None
    if not isinstance(ev, dict):
        raise RealtimeProtocolError("bad_shape", "event is not a JSON object")
    kind = ev.get("type")
    if not isinstance(kind, str):
        raise RealtimeProtocolError("bad_shape", "event has no 'type' string")
    parser = _PARSERS.get(kind)
    if parser is None:
        return Other(kind)
    event: RealtimeEvent = parser(ev)
    return event
