"""OpenAI Realtime (GA) events: client builders against the SDK schema, server event parsing."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from openai.types.realtime import (
    ConversationItemTruncateEvent,
    InputAudioBufferAppendEvent,
    RealtimeClientEvent,
    RealtimeServerEvent,
    ResponseCancelEvent,
    ResponseCreateEvent,
    SessionUpdateEvent,
)
from pydantic import BaseModel, TypeAdapter

from voicebridge.core.realtime import (
    AudioDelta,
    AudioDone,
    Committed,
    ErrorEvent,
    ItemTruncated,
    Other,
    ResponseCreated,
    ResponseDone,
    SessionConfig,
    SessionCreated,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
    append_audio,
    parse_realtime,
    response_cancel,
    response_create,
    session_audio_formats,
    session_interrupts_response,
    session_update,
    truncate_item,
)
from voicebridge.errors import RealtimeProtocolError

CLIENT = TypeAdapter(RealtimeClientEvent)
SERVER = TypeAdapter(RealtimeServerEvent)

# Keys of the retired beta session shape (PROTOCOLS.md B.2, "Beta to GA mapping").
BETA_SESSION_KEYS = {
    "modalities",
    "input_audio_format",
    "output_audio_format",
    "voice",
    "turn_detection",
    "input_audio_transcription",
    "input_audio_noise_reduction",
    "temperature",
    "max_response_output_tokens",
}


def unknown_fields(model: Any, path: str = "$") -> list[str]:
    """Paths of fields the SDK model does not declare (its models accept extras silently)."""
    found: list[str] = []
    if isinstance(model, BaseModel):
        found += [f"{path}.{key}" for key in (model.model_extra or {})]
        for name in type(model).model_fields:
            found += unknown_fields(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, list | tuple):
        for i, item in enumerate(model):
            found += unknown_fields(item, f"{path}[{i}]")
    elif isinstance(model, dict):
        for key, item in model.items():
            found += unknown_fields(item, f"{path}.{key}")
    return found


def valid_client_event(text: str, kind: type[BaseModel]) -> dict[str, Any]:
    model = CLIENT.validate_json(text)
    assert isinstance(model, kind)
    assert unknown_fields(model) == []
    parsed: dict[str, Any] = json.loads(text)
    return parsed


# -- client events --------------------------------------------------------------------


def test_session_update_default_config_is_valid_ga_shape() -> None:
    """The default session.update validates as GA and puts μ-law, VAD and voice under session.audio."""
    text = session_update(SessionConfig(instructions="Be brief.", voice="marin"), "evt_1")
    event = valid_client_event(text, SessionUpdateEvent)
    assert event["type"] == "session.update"
    assert event["event_id"] == "evt_1"
    session = event["session"]
    assert session["type"] == "realtime"
    assert session["instructions"] == "Be brief."
    assert session["output_modalities"] == ["audio"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["voice"] == "marin"
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["audio"]["input"]["turn_detection"]["interrupt_response"] is True
    assert BETA_SESSION_KEYS.isdisjoint(session)


def test_session_update_pcm_formats_carry_the_24k_rate() -> None:
    """An ``audio/pcm`` session.update validates and names the only supported rate, 24000."""
    config = SessionConfig(
        instructions="x", voice="cedar", input_format="audio/pcm", output_format="audio/pcm"
    )
    session = valid_client_event(session_update(config, "evt_2"), SessionUpdateEvent)["session"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["voice"] == "cedar"
    assert BETA_SESSION_KEYS.isdisjoint(session)


def test_session_update_without_turn_detection_sends_null() -> None:
    """A config with turn_detection=None validates and sends an explicit null to disable VAD."""
    config = SessionConfig(instructions="x", voice="marin", turn_detection=None)
    session = valid_client_event(session_update(config, "evt_3"), SessionUpdateEvent)["session"]
    assert "turn_detection" in session["audio"]["input"]
    assert session["audio"]["input"]["turn_detection"] is None


def test_session_update_escapes_instructions() -> None:
    """Instructions with quotes, newlines and non-ASCII text arrive unchanged."""
    instructions = 'Say "hello"\nthen wait. Ünïcødé \\ 😀'
    text = session_update(SessionConfig(instructions=instructions, voice="marin"), "evt_4")
    assert valid_client_event(text, SessionUpdateEvent)["session"]["instructions"] == instructions


def test_append_audio_is_valid_and_passes_audio_through() -> None:
    """input_audio_buffer.append validates, forwards the base64 unchanged and has no event_id."""
    payload = "no+JhoaJjpzS/w=="
    event = valid_client_event(append_audio(payload), InputAudioBufferAppendEvent)
    assert event == {"type": "input_audio_buffer.append", "audio": payload}


def test_truncate_item_is_valid_with_content_index_zero() -> None:
    """conversation.item.truncate validates with the item, content_index 0 and the end in ms."""
    event = valid_client_event(
        truncate_item("item_1", 1500, "evt_5"), ConversationItemTruncateEvent
    )
    assert event == {
        "type": "conversation.item.truncate",
        "event_id": "evt_5",
        "item_id": "item_1",
        "content_index": 0,
        "audio_end_ms": 1500,
    }


def test_response_cancel_without_response_id() -> None:
    """response.cancel without an id validates and omits response_id."""
    event = valid_client_event(response_cancel("evt_6"), ResponseCancelEvent)
    assert event == {"type": "response.cancel", "event_id": "evt_6"}


def test_response_cancel_with_response_id() -> None:
    """response.cancel with an id validates and names that response."""
    event = valid_client_event(response_cancel("evt_7", "resp_1"), ResponseCancelEvent)
    assert event == {"type": "response.cancel", "event_id": "evt_7", "response_id": "resp_1"}


def test_response_create_without_instructions() -> None:
    """response.create without instructions validates and carries no response override."""
    event = valid_client_event(response_create("evt_8"), ResponseCreateEvent)
    assert event == {"type": "response.create", "event_id": "evt_8"}


def test_response_create_with_metadata() -> None:
    """response.create may carry metadata (string pairs) beside its instructions."""
    text = response_create("evt_10", "Bye.", {"voicebridge": "evt_10"})
    event = valid_client_event(text, ResponseCreateEvent)
    assert event["response"] == {"instructions": "Bye.", "metadata": {"voicebridge": "evt_10"}}


def test_response_create_with_instructions() -> None:
    """response.create with instructions validates and puts them under response.instructions."""
    event = valid_client_event(response_create("evt_9", "Greet the caller."), ResponseCreateEvent)
    assert event == {
        "type": "response.create",
        "event_id": "evt_9",
        "response": {"instructions": "Greet the caller."},
    }


# -- server events --------------------------------------------------------------------

SESSION: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime-2.1",
    "output_modalities": ["audio"],
    "instructions": "Be brief.",
    "audio": {
        "input": {
            "format": {"type": "audio/pcmu"},
            "transcription": None,
            "noise_reduction": None,
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 500,
                "create_response": True,
                "interrupt_response": True,
                "idle_timeout_ms": None,
            },
        },
        "output": {"format": {"type": "audio/pcmu"}, "voice": "marin", "speed": 1.0},
    },
    "tools": [],
    "tool_choice": "auto",
    "max_output_tokens": "inf",
    "tracing": None,
    "prompt": None,
    "include": None,
}

USAGE = {
    "total_tokens": 120,
    "input_tokens": 100,
    "output_tokens": 20,
    "input_token_details": {"cached_tokens": 0, "text_tokens": 40, "audio_tokens": 60},
    "output_token_details": {"text_tokens": 5, "audio_tokens": 15},
}
FUNCTION_CALL = {
    "id": "item_9",
    "type": "function_call",
    "object": "realtime.item",
    "status": "completed",
    "name": "transfer_call",
    "call_id": "call_1",
    "arguments": '{"reason":"asked"}',
}
STATUS_DETAILS = {"type": "cancelled", "reason": "turn_detected"}

SERVER_EVENTS: list[tuple[str, dict[str, Any], object]] = [
    (
        "session.created",
        {"type": "session.created", "event_id": "event_0", "session": SESSION},
        SessionCreated(session=SESSION),
    ),
    (
        "session.updated",
        {"type": "session.updated", "event_id": "event_1", "session": SESSION},
        SessionUpdated(session=SESSION),
    ),
    (
        "audio.delta",
        {
            "type": "response.output_audio.delta",
            "event_id": "event_2",
            "response_id": "resp_1",
            "item_id": "item_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "//79/A==",
        },
        AudioDelta(response_id="resp_1", item_id="item_1", delta="//79/A=="),
    ),
    (
        "audio.done",
        {
            "type": "response.output_audio.done",
            "event_id": "event_3",
            "response_id": "resp_1",
            "item_id": "item_1",
            "output_index": 0,
            "content_index": 0,
        },
        AudioDone(response_id="resp_1", item_id="item_1"),
    ),
    (
        "speech_started",
        {
            "type": "input_audio_buffer.speech_started",
            "event_id": "event_4",
            "audio_start_ms": 1234,
            "item_id": "item_2",
        },
        SpeechStarted(item_id="item_2", audio_start_ms=1234),
    ),
    (
        "speech_stopped",
        {
            "type": "input_audio_buffer.speech_stopped",
            "event_id": "event_5",
            "audio_end_ms": 2345,
            "item_id": "item_2",
        },
        SpeechStopped(item_id="item_2", audio_end_ms=2345),
    ),
    (
        "committed",
        {
            "type": "input_audio_buffer.committed",
            "event_id": "event_5b",
            "item_id": "item_2",
            "previous_item_id": None,
        },
        Committed(item_id="item_2"),
    ),
    (
        "response.created-metadata",
        {
            "type": "response.created",
            "event_id": "event_6b",
            "response": {
                "id": "resp_3",
                "object": "realtime.response",
                "status": "in_progress",
                "metadata": {"voicebridge": "vb_7"},
            },
        },
        ResponseCreated(response_id="resp_3", metadata={"voicebridge": "vb_7"}),
    ),
    (
        "response.created",
        {
            "type": "response.created",
            "event_id": "event_6",
            "response": {
                "id": "resp_1",
                "object": "realtime.response",
                "status": "in_progress",
                "status_details": None,
                "output": [],
                "usage": None,
                "conversation_id": "conv_1",
                "output_modalities": ["audio"],
                "max_output_tokens": "inf",
                "audio": {"output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}},
                "metadata": None,
            },
        },
        ResponseCreated(response_id="resp_1"),
    ),
    (
        "response.done-cancelled",
        {
            "type": "response.done",
            "event_id": "event_7",
            "response": {
                "id": "resp_1",
                "object": "realtime.response",
                "status": "cancelled",
                "status_details": STATUS_DETAILS,
                "output": [FUNCTION_CALL],
                "usage": USAGE,
                "conversation_id": "conv_1",
            },
        },
        ResponseDone(
            response_id="resp_1",
            status="cancelled",
            status_details=STATUS_DETAILS,
            usage=USAGE,
            output=[FUNCTION_CALL],
        ),
    ),
    (
        "response.done-completed-minimal",
        {
            "type": "response.done",
            "event_id": "event_8",
            "response": {
                "id": "resp_2",
                "object": "realtime.response",
                "status": "completed",
                "status_details": None,
                "output": [],
                "usage": None,
            },
        },
        ResponseDone(
            response_id="resp_2", status="completed", status_details=None, usage=None, output=[]
        ),
    ),
    (
        "error",
        {
            "type": "error",
            "event_id": "event_9",
            "error": {
                "type": "invalid_request_error",
                "code": "response_cancel_not_active",
                "message": "Cancellation failed: no active response found",
                "param": None,
                "event_id": "cancel_1",
            },
        },
        ErrorEvent(
            type="invalid_request_error",
            code="response_cancel_not_active",
            message="Cancellation failed: no active response found",
            param=None,
            event_id="cancel_1",
        ),
    ),
    (
        "error-with-param-no-code",
        {
            "type": "error",
            "event_id": "event_10",
            "error": {
                "type": "invalid_request_error",
                "code": None,
                "message": "bad type",
                "param": "type",
                "event_id": None,
            },
        },
        ErrorEvent(
            type="invalid_request_error", code=None, message="bad type", param="type", event_id=None
        ),
    ),
    (
        "item.truncated",
        {
            "type": "conversation.item.truncated",
            "event_id": "event_11",
            "item_id": "item_1",
            "content_index": 0,
            "audio_end_ms": 1500,
        },
        ItemTruncated(item_id="item_1", audio_end_ms=1500),
    ),
    (
        "rate_limits.updated",
        {
            "type": "rate_limits.updated",
            "event_id": "event_12",
            "rate_limits": [
                {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 0.06},
                {"name": "tokens", "limit": 40000, "remaining": 39000, "reset_seconds": 1.5},
            ],
        },
        Other(type="rate_limits.updated"),
    ),
    (
        "transcript.delta",
        {
            "type": "response.output_audio_transcript.delta",
            "event_id": "event_13",
            "response_id": "resp_1",
            "item_id": "item_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "Hel",
        },
        TranscriptDelta("item_1", "Hel"),  # the model's words so far: a cut answer keeps them
    ),
]


@pytest.mark.parametrize(
    ("event", "expected"),
    [(e, x) for _, e, x in SERVER_EVENTS],
    ids=[name for name, _, _ in SERVER_EVENTS],
)
def test_sample_server_event_is_valid_against_the_sdk(
    event: dict[str, Any], expected: object
) -> None:
    """Each sample server event validates as the SDK's event of the same type, with no undeclared fields."""
    model = SERVER.validate_json(json.dumps(event))
    assert getattr(model, "type") == event["type"]  # noqa: B009
    assert unknown_fields(model) == []


@pytest.mark.parametrize(
    ("event", "expected"),
    [(e, x) for _, e, x in SERVER_EVENTS],
    ids=[name for name, _, _ in SERVER_EVENTS],
)
def test_parse_realtime_returns_the_right_dataclass(
    event: dict[str, Any], expected: object
) -> None:
    """parse_realtime turns each valid server event into its dataclass with the right fields."""
    parsed = parse_realtime(json.dumps(event))
    assert type(parsed) is type(expected)
    assert parsed == expected


def test_parse_realtime_accepts_bytes() -> None:
    """A server event given as UTF-8 bytes parses like the same text."""
    _, event, expected = SERVER_EVENTS[2]
    assert parse_realtime(json.dumps(event).encode()) == expected


def test_unknown_event_type_is_other() -> None:
    """A type voicebridge does not know (even a future one) comes back as Other with that type."""
    assert parse_realtime('{"type":"response.brand_new_thing","x":1}') == Other(
        "response.brand_new_thing"
    )


def drop(event: dict[str, Any], *path: str) -> dict[str, Any]:
    out = copy.deepcopy(event)
    target = out
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return out


def replace(event: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    out = copy.deepcopy(event)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


EV = {name: event for name, event, _ in SERVER_EVENTS}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not_json"),
        (b"\xff\xfe", "not_json"),
        ("[]", "bad_shape"),
        ("42", "bad_shape"),
        ('{"event_id":"event_1"}', "bad_shape"),
        ('{"type":5}', "bad_shape"),
        (json.dumps(drop(EV["audio.delta"], "delta")), "bad_shape"),
        (json.dumps(drop(EV["audio.delta"], "item_id")), "bad_shape"),
        (json.dumps(replace(EV["audio.delta"], 12, "response_id")), "bad_shape"),
        (json.dumps(drop(EV["speech_started"], "item_id")), "bad_shape"),
        (json.dumps(replace(EV["speech_started"], "1234", "audio_start_ms")), "bad_shape"),
        (json.dumps(replace(EV["speech_started"], True, "audio_start_ms")), "bad_shape"),
        (json.dumps(drop(EV["speech_stopped"], "audio_end_ms")), "bad_shape"),
        (json.dumps(drop(EV["response.created"], "response")), "bad_shape"),
        (json.dumps(drop(EV["response.done-cancelled"], "response", "id")), "bad_shape"),
        (json.dumps(replace(EV["error"], "boom", "error")), "bad_shape"),
        (json.dumps(drop(EV["item.truncated"], "audio_end_ms")), "bad_shape"),
        (json.dumps(replace(EV["session.created"], None, "session")), "bad_shape"),
    ],
    ids=[
        "not-json",
        "bad-utf8",
        "array",
        "number",
        "no-type",
        "type-not-string",
        "delta-missing",
        "delta-item-missing",
        "delta-response-id-int",
        "started-item-missing",
        "started-ms-string",
        "started-ms-bool",
        "stopped-ms-missing",
        "created-no-response",
        "done-no-id",
        "error-not-object",
        "truncated-ms-missing",
        "session-null",
    ],
)
def test_malformed_server_events_raise_protocol_error(text: str | bytes, reason: str) -> None:
    """A malformed event, or a known one missing a needed field, raises RealtimeProtocolError."""
    with pytest.raises(RealtimeProtocolError) as info:
        parse_realtime(text)
    assert info.value.reason == reason


# -- session inspection ---------------------------------------------------------------


def with_turn_detection(value: Any) -> dict[str, Any]:
    return replace(SESSION, value, "audio", "input", "turn_detection")


def test_session_audio_formats_reads_input_and_output() -> None:
    """The (input, output) formats are read from session.audio."""
    assert session_audio_formats(SESSION) == ("audio/pcmu", "audio/pcmu")
    mixed = replace(SESSION, {"type": "audio/pcm", "rate": 24000}, "audio", "output", "format")
    assert session_audio_formats(mixed) == ("audio/pcmu", "audio/pcm")


@pytest.mark.parametrize(
    "session",
    [
        {},
        {"type": "realtime"},
        {"audio": None},
        {"audio": {"input": {}, "output": "x"}},
        {"audio": {"input": {"format": {"type": 7}}}},
    ],
    ids=["empty", "no-audio", "audio-null", "no-format", "format-type-not-str"],
)
def test_session_audio_formats_missing_is_none(session: dict[str, Any]) -> None:
    """Formats that a session does not report come back as None rather than raising."""
    assert session_audio_formats(session) == (None, None)


def test_session_update_round_trips_through_session_inspection() -> None:
    """The session we send reports the formats and interrupt behaviour we asked for."""
    default = json.loads(session_update(SessionConfig("x", "marin"), "e"))["session"]
    assert session_audio_formats(default) == ("audio/pcmu", "audio/pcmu")
    assert session_interrupts_response(default) is True
    no_vad = json.loads(session_update(SessionConfig("x", "marin", turn_detection=None), "e"))
    assert session_interrupts_response(no_vad["session"]) is False


@pytest.mark.parametrize(
    ("session", "expected"),
    [
        (SESSION, True),
        (with_turn_detection({"type": "server_vad", "interrupt_response": False}), False),
        (with_turn_detection({"type": "semantic_vad", "eagerness": "auto"}), True),
        (with_turn_detection({"type": "server_vad", "create_response": False}), True),
        (with_turn_detection(None), False),
        ({"type": "realtime"}, False),
        ({"type": "realtime", "audio": {"output": {"voice": "marin"}}}, False),
    ],
    ids=[
        "server-vad-true",
        "interrupt-false",
        "semantic-vad-default",
        "server-vad-default",
        "turn-detection-null",
        "no-audio",
        "no-input",
    ],
)
def test_session_interrupts_response(session: dict[str, Any], expected: bool) -> None:
    """The server cancels on barge-in only with turn detection on and interrupt_response not false."""
    if session.get("audio"):
        SERVER.validate_python({"type": "session.updated", "event_id": "e", "session": session})
    assert session_interrupts_response(session) is expected
