"""Twilio Media Streams messages: parsing what Twilio sends, building what we send back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from voicebridge.core.twilio import (
    Connected,
    Dtmf,
    Mark,
    Media,
    Start,
    Stop,
    Unknown,
    clear_message,
    mark_message,
    media_message,
    parse_twilio,
)
from voicebridge.errors import ProtocolError, TwilioProtocolError

FIXTURE = Path(__file__).parent.parent / "fixtures" / "real_call.jsonl"
REAL_LINES = FIXTURE.read_text(encoding="utf-8").splitlines()
REAL_SID = "MZ00000000000000000000000000000000"
DOC_SID = "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"

# Characters that must be escaped in JSON, or that naive formatting gets wrong.
ODD_TEXT = 'a "quoted" \\ back\\slash\ttab\nnewline\r & <tag> </script> \u2028 é ü 😀 \x00 {}'


def first_line(event: str) -> str:
    return next(line for line in REAL_LINES if json.loads(line)["event"] == event)


# -- inbound: real lines from a recorded call ----------------------------------------


def test_real_connected_line_parses_to_connected_with_protocol() -> None:
    """The recorded ``connected`` line becomes Connected carrying Twilio's protocol name."""
    assert parse_twilio(first_line("connected")) == Connected(protocol="Call")


def test_real_start_line_without_custom_parameters_parses_fully() -> None:
    """The recorded ``start`` (no customParameters) yields every SID, the format and no parameters."""
    event = parse_twilio(first_line("start"))
    assert event == Start(
        stream_sid=REAL_SID,
        call_sid="CA00000000000000000000000000000000",
        account_sid="AC00000000000000000000000000000000",
        tracks=("inbound",),
        encoding="audio/x-mulaw",
        sample_rate=8000,
        channels=1,
        custom_parameters={},
    )


def test_real_media_line_with_string_numbers_parses_to_ints() -> None:
    """The recorded ``media`` line, whose chunk and timestamp are strings, gives int fields and the payload untouched."""
    line = first_line("media")
    raw = json.loads(line)["media"]
    assert isinstance(raw["timestamp"], str) and isinstance(raw["chunk"], str)
    event = parse_twilio(line)
    assert event == Media(stream_sid=REAL_SID, timestamp_ms=135, payload=raw["payload"], chunk=1)


def test_real_stop_line_parses_to_stop() -> None:
    """The recorded ``stop`` line becomes Stop with the stream SID."""
    assert parse_twilio(REAL_LINES[-1]) == Stop(stream_sid=REAL_SID)


def test_every_real_media_line_parses_in_order() -> None:
    """All 616 recorded media frames parse, with timestamps rising 20 ms per chunk."""
    media = [parse_twilio(line) for line in REAL_LINES if '"event":"media"' in line]
    assert len(media) == 616
    assert all(isinstance(m, Media) for m in media)
    assert [m.chunk for m in media] == list(range(1, 617))
    assert [m.timestamp_ms for m in media] == [135 + 20 * i for i in range(616)]


def test_bytes_frame_is_accepted() -> None:
    """A frame given as UTF-8 bytes parses like the same text."""
    line = first_line("stop")
    assert parse_twilio(line.encode()) == parse_twilio(line)


# -- inbound: synthesized from the documented examples --------------------------------


def test_documented_start_with_custom_parameters_keeps_them() -> None:
    """A ``start`` carrying customParameters exposes them as a str-to-str dict."""
    msg = {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
            "streamSid": DOC_SID,
            "callSid": "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"},
        },
        "streamSid": DOC_SID,
    }
    event = parse_twilio(json.dumps(msg))
    assert isinstance(event, Start)
    assert event.custom_parameters == {"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"}
    assert event.stream_sid == DOC_SID
    assert event.call_sid == "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"


@pytest.mark.parametrize(
    ("sample_rate", "channels"), [(8000, 1), ("8000", "1")], ids=["ints", "strings"]
)
def test_start_media_format_numbers_as_ints_or_strings(sample_rate: Any, channels: Any) -> None:
    """``start.mediaFormat`` numbers are read whether Twilio sends them as numbers or strings."""
    msg = {
        "event": "start",
        "start": {
            "streamSid": DOC_SID,
            "callSid": "CA1",
            "mediaFormat": {
                "encoding": "audio/x-mulaw",
                "sampleRate": sample_rate,
                "channels": channels,
            },
        },
    }
    event = parse_twilio(json.dumps(msg))
    assert isinstance(event, Start)
    assert (event.sample_rate, event.channels) == (8000, 1)


def test_documented_dtmf_parses_to_digit() -> None:
    """A ``dtmf`` message yields the pressed digit and the stream SID."""
    msg = {
        "event": "dtmf",
        "streamSid": DOC_SID,
        "sequenceNumber": "5",
        "dtmf": {"track": "inbound_track", "digit": "#"},
    }
    assert parse_twilio(json.dumps(msg)) == Dtmf(stream_sid=DOC_SID, digit="#")


def test_documented_mark_echo_parses_to_name() -> None:
    """A ``mark`` echo yields the mark name exactly as sent, spaces included."""
    msg = {
        "event": "mark",
        "sequenceNumber": "4",
        "streamSid": DOC_SID,
        "mark": {"name": "my label"},
    }
    assert parse_twilio(json.dumps(msg)) == Mark(stream_sid=DOC_SID, name="my label")


@pytest.mark.parametrize(
    ("timestamp", "chunk"),
    [("5", "2"), (5, 2), ("5", 2), (5, "2"), ("05", "+2"), (" 5", "2 "), ("５", "2")],
    ids=["strings", "ints", "mixed", "mixed2", "signs", "spaces", "fullwidth"],
)
def test_media_numbers_as_strings_or_ints(timestamp: Any, chunk: Any) -> None:
    """``media.timestamp`` and ``media.chunk`` parse to the same ints from strings or numbers,
    whether the frame takes the fast path (plain digit strings) or the checked one."""
    msg = {
        "event": "media",
        "sequenceNumber": "4",
        "streamSid": DOC_SID,
        "media": {
            "track": "inbound",
            "chunk": chunk,
            "timestamp": timestamp,
            "payload": "no+JhoaJjpzS",
        },
    }
    assert parse_twilio(json.dumps(msg)) == Media(
        stream_sid=DOC_SID, timestamp_ms=5, payload="no+JhoaJjpzS", chunk=2
    )


@pytest.mark.parametrize("event", ["warning", "media_v2", "START", ""])
def test_unknown_event_is_returned_as_unknown(event: str) -> None:
    """An event name Twilio does not document comes back as Unknown with that name."""
    assert parse_twilio(json.dumps({"event": event, "streamSid": DOC_SID})) == Unknown(event)


# -- inbound: errors ------------------------------------------------------------------

MEDIA_OK: dict[str, Any] = {
    "event": "media",
    "streamSid": DOC_SID,
    "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": "AAAA"},
}


def media_with(**fields: Any) -> str:
    return json.dumps({**MEDIA_OK, "media": {**MEDIA_OK["media"], **fields}})


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("this is not json", "not_json"),
        ("", "not_json"),
        (b"\xff\xfe\x00garbage", "not_json"),
        ("[]", "bad_shape"),
        (json.dumps([{"event": "media"}]), "bad_shape"),
        ('"media"', "bad_shape"),
        (json.dumps({"event": "media", "streamSid": DOC_SID}), "bad_shape"),
        (json.dumps({"event": "media", "streamSid": DOC_SID, "media": "AAAA"}), "bad_shape"),
        (media_with(payload=12345), "bad_shape"),
        (media_with(payload=None), "bad_shape"),
        (media_with(timestamp="five"), "bad_shape"),
        (media_with(timestamp=True), "bad_shape"),
        (media_with(timestamp=None), "bad_shape"),
        (json.dumps({"streamSid": DOC_SID, "media": MEDIA_OK["media"]}), "bad_shape"),
        (json.dumps({"event": None}), "bad_shape"),
        (json.dumps({"event": 7}), "bad_shape"),
        (json.dumps({"event": "mark", "streamSid": DOC_SID}), "bad_shape"),
        (json.dumps({"event": "stop"}), "bad_shape"),
        (json.dumps({"event": "start", "streamSid": DOC_SID}), "bad_shape"),
    ],
    ids=[
        "not-json",
        "empty",
        "bad-utf8",
        "json-array",
        "array-of-events",
        "json-string",
        "missing-media",
        "media-not-object",
        "payload-int",
        "payload-null",
        "timestamp-not-numeric",
        "timestamp-bool",
        "timestamp-null",
        "no-event-key",
        "event-null",
        "event-int",
        "mark-without-mark-object",
        "stop-without-sid",
        "start-without-start-object",
    ],
)
def test_malformed_frames_raise_twilio_protocol_error(frame: str | bytes, reason: str) -> None:
    """A malformed frame raises TwilioProtocolError with a stable reason label."""
    with pytest.raises(TwilioProtocolError) as info:
        parse_twilio(frame)
    assert info.value.reason == reason
    assert isinstance(info.value, ProtocolError)


@pytest.mark.parametrize(
    "media_format",
    [
        {"encoding": "audio/x-mulaw", "sampleRate": "eight thousand", "channels": 1},
        {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": None},
        {"encoding": "audio/x-mulaw", "sampleRate": [8000], "channels": 1},
    ],
    ids=["sample-rate-text", "channels-null", "sample-rate-list"],
)
def test_start_with_malformed_media_format_raises_protocol_error(
    media_format: dict[str, Any],
) -> None:
    """A ``start`` whose mediaFormat numbers are not numbers raises TwilioProtocolError, as parse_twilio documents."""
    msg = {
        "event": "start",
        "start": {"streamSid": DOC_SID, "callSid": "CA1", "mediaFormat": media_format},
    }
    with pytest.raises(TwilioProtocolError) as info:
        parse_twilio(json.dumps(msg))
    assert info.value.reason == "bad_shape"


# -- outbound builders ----------------------------------------------------------------


def test_media_message_has_exactly_the_documented_fields() -> None:
    """``media`` carries only event, streamSid and media.payload (extra fields are error 31951)."""
    msg = json.loads(media_message(DOC_SID, "a3242sa+/="))
    assert set(msg) == {"event", "streamSid", "media"}
    assert set(msg["media"]) == {"payload"}
    assert msg == {"event": "media", "streamSid": DOC_SID, "media": {"payload": "a3242sa+/="}}


def test_mark_message_has_exactly_the_documented_fields() -> None:
    """``mark`` carries only event, streamSid and a mark object with a name."""
    msg = json.loads(mark_message(DOC_SID, "my label"))
    assert set(msg) == {"event", "streamSid", "mark"}
    assert set(msg["mark"]) == {"name"}
    assert msg == {"event": "mark", "streamSid": DOC_SID, "mark": {"name": "my label"}}


def test_clear_message_has_exactly_the_documented_fields() -> None:
    """``clear`` carries only event and streamSid."""
    msg = json.loads(clear_message(DOC_SID))
    assert msg == {"event": "clear", "streamSid": DOC_SID}


def test_builders_escape_odd_characters_and_round_trip() -> None:
    """Quotes, backslashes, control and non-ASCII characters in SIDs and names survive a JSON round trip."""
    sid = 'MZ"\\\n' + ODD_TEXT
    media = json.loads(media_message(sid, ODD_TEXT))
    mark = json.loads(mark_message(sid, ODD_TEXT))
    clear = json.loads(clear_message(sid))
    assert media["streamSid"] == sid and media["media"]["payload"] == ODD_TEXT
    assert mark["streamSid"] == sid and mark["mark"]["name"] == ODD_TEXT
    assert clear["streamSid"] == sid


def test_builders_produce_one_line_text_frames() -> None:
    """Built messages contain no raw newline even when a name holds one."""
    for text in (
        media_message("MZ\n1", "A\nB"),
        mark_message("MZ\n1", "a\nb"),
        clear_message("MZ\n1"),
    ):
        assert "\n" not in text and "\r" not in text


def test_mark_message_round_trips_through_parse_twilio() -> None:
    """A mark we build, echoed back unchanged by Twilio, parses to the same SID and name."""
    assert parse_twilio(mark_message(DOC_SID, ODD_TEXT)) == Mark(stream_sid=DOC_SID, name=ODD_TEXT)
