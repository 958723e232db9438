"""TwiML for "A call comes in": the stream URL, the document, and how Twilio reads it."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

import pytest
from twilio.twiml.voice_response import Connect, VoiceResponse

from voicebridge.core.twiml import stream_twiml, stream_url
from voicebridge.twilio_sim.webhook_client import TwiML, parse_twiml

URL = "wss://voice.example.com/realtime"
ODD_VALUES = {
    "From": "+1415 \"quoted\" & <angle> 'single'",
    "To": "a&b<c>d\"e'f",
    "Note": "tab\there ü 😀",
}


# -- stream_url -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://voice.example.com", "wss://voice.example.com/realtime"),
        ("https://voice.example.com/", "wss://voice.example.com/realtime"),
        ("http://localhost:8000", "ws://localhost:8000/realtime"),
        ("http://127.0.0.1:8000/", "ws://127.0.0.1:8000/realtime"),
        ("https://example.com/tenant/voice", "wss://example.com/tenant/voice/realtime"),
        ("https://example.com/tenant/voice/", "wss://example.com/tenant/voice/realtime"),
        ("https://example.com:8443", "wss://example.com:8443/realtime"),
    ],
)
def test_stream_url_maps_scheme_and_keeps_prefix(base: str, expected: str) -> None:
    """https becomes wss and http becomes ws, the path prefix stays and a trailing slash goes."""
    assert stream_url(base) == expected


def test_stream_url_custom_path() -> None:
    """A custom socket path is appended to the base."""
    assert (
        stream_url("https://example.com/p/", "/media-stream") == "wss://example.com/p/media-stream"
    )


def test_stream_url_maps_an_upper_case_https_scheme() -> None:
    """URL schemes are case-insensitive (and PUBLIC_URL accepts HTTPS://), so HTTPS still becomes wss."""
    assert stream_url("HTTPS://voice.example.com") == "wss://voice.example.com/realtime"


# -- stream_twiml ---------------------------------------------------------------------


def children(xml: str) -> list[ElementTree.Element]:
    root = ElementTree.fromstring(xml)
    assert root.tag == "Response"
    return list(root)


def test_stream_twiml_is_xml_with_declaration() -> None:
    """The answer is a well-formed XML document with a UTF-8 declaration and a <Response> root."""
    xml = stream_twiml(URL, {})
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert ElementTree.fromstring(xml).tag == "Response"


def test_stream_twiml_verbs_in_order_with_welcome() -> None:
    """With a welcome: Say, then Connect/Stream, then the failure Say and Hangup."""
    verbs = children(stream_twiml(URL, {}, welcome_say="Hello there", failure_say="Sorry, goodbye"))
    assert [v.tag for v in verbs] == ["Say", "Connect", "Say", "Hangup"]
    assert verbs[0].text == "Hello there"
    assert verbs[2].text == "Sorry, goodbye"
    assert [c.tag for c in verbs[1]] == ["Stream"]
    assert verbs[1][0].get("url") == URL


def test_stream_twiml_without_welcome_starts_with_connect() -> None:
    """Without a welcome the first verb is Connect, and Hangup still follows it."""
    verbs = children(stream_twiml(URL, {}, failure_say="Sorry"))
    assert [v.tag for v in verbs] == ["Connect", "Say", "Hangup"]


def test_stream_twiml_without_failure_say_still_hangs_up() -> None:
    """Without a failure message the verb after Connect is just Hangup."""
    verbs = children(stream_twiml(URL, {}))
    assert [v.tag for v in verbs] == ["Connect", "Hangup"]


def test_stream_twiml_escapes_say_text() -> None:
    """Say text with &, < and > is escaped and reads back unchanged."""
    verbs = children(stream_twiml(URL, {}, welcome_say="A & B <c>", failure_say="x > y & z"))
    assert verbs[0].text == "A & B <c>"
    assert verbs[-2].text == "x > y & z"


def test_stream_twiml_parameters_in_order_with_escaped_values() -> None:
    """Each parameter becomes a <Parameter> in dict order; quotes, & and < read back unchanged."""
    verbs = children(stream_twiml(URL, ODD_VALUES))
    stream = verbs[0][0]
    assert stream.tag == "Stream"
    assert stream.get("url") == URL
    assert "?" not in (stream.get("url") or "")
    params = list(stream)
    assert [p.tag for p in params] == ["Parameter"] * 3
    assert [(p.get("name"), p.get("value")) for p in params] == list(ODD_VALUES.items())
    assert all(set(p.attrib) == {"name", "value"} for p in params)


@pytest.mark.parametrize(
    "url", ["wss://voice.example.com/realtime?token=abc", "wss://voice.example.com/realtime?"]
)
def test_stream_twiml_refuses_a_query_string(url: str) -> None:
    """A stream URL with '?' raises ValueError (Twilio drops or rejects query strings)."""
    with pytest.raises(ValueError, match="query"):
        stream_twiml(url, {"From": "+1"})


def test_stream_twiml_truncates_a_long_parameter_under_500() -> None:
    """A parameter whose name and value reach 500 characters is cut to 499, keeping the value's start."""
    long_value = "".join(chr(ord("a") + i % 26) for i in range(1000))
    stream = children(stream_twiml(URL, {"From": long_value}))[0][0]
    (param,) = list(stream)
    value = param.get("value") or ""
    assert len("From") + len(value) == 499
    assert long_value.startswith(value)


@pytest.mark.parametrize(("value_len", "kept"), [(495, 495), (496, 495), (10, 10)])
def test_stream_twiml_parameter_limit_boundary(value_len: int, kept: int) -> None:
    """A 4-character name keeps values up to 495 characters whole and cuts longer ones to 495."""
    stream = children(stream_twiml(URL, {"From": "x" * value_len}))[0][0]
    assert len(stream[0].get("value") or "") == kept


def test_stream_twiml_length_limit_counts_characters_before_escaping() -> None:
    """Escaping '&' does not eat into the 499-character budget: the decoded value is what counts."""
    stream = children(stream_twiml(URL, {"To": "&" * 497}))[0][0]
    assert stream[0].get("value") == "&" * 497


# -- parse_twiml ----------------------------------------------------------------------


ACTION = "https://voice.example.com/twilio/after-stream"


def test_parse_twiml_reads_every_part() -> None:
    """parse_twiml reports the Says before Connect, the stream URL, the parameters and the verbs after."""
    xml = stream_twiml(
        URL, ODD_VALUES, welcome_say="Welcome & hi", failure_say="Sorry <x>", action=ACTION
    )
    assert parse_twiml(xml) == TwiML(
        says_before=("Welcome & hi",),
        stream_url=URL,
        parameters=ODD_VALUES,
        after_connect=(("Say", "Sorry <x>"), ("Hangup", "")),
        connect_action=ACTION,
        verbs=(("Say", "Welcome & hi"), ("Connect", ""), ("Say", "Sorry <x>"), ("Hangup", "")),
    )


def test_parse_twiml_without_welcome_has_no_says_before() -> None:
    """Without a welcome Say, says_before is empty."""
    twiml = parse_twiml(stream_twiml(URL, {}))
    assert twiml.says_before == ()
    assert twiml.after_connect == (("Hangup", ""),)
    assert twiml.parameters == {}


@pytest.mark.parametrize(
    "text",
    [
        "not xml at all",
        "<Response><Say>unclosed</Response>",
        "<Other/>",
        "<Response><Connect></Connect></Response>",
    ],
    ids=["not-xml", "broken-xml", "wrong-root", "connect-without-stream"],
)
def test_parse_twiml_rejects_non_twiml(text: str) -> None:
    """Text that is not a Response document, or a Connect with no Stream, raises ValueError."""
    with pytest.raises(ValueError):
        parse_twiml(text)


# -- agreement with the twilio SDK ----------------------------------------------------


def sdk_twiml(url: str, parameters: dict[str, str], welcome: str, failure: str) -> str:
    response = VoiceResponse()
    if welcome:
        response.say(welcome)
    connect = Connect()
    stream = connect.stream(url=url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    if failure:
        response.say(failure)
    response.hangup()
    xml: str = response.to_xml()
    return xml


def shape(element: ElementTree.Element) -> tuple[Any, ...]:
    return (
        element.tag,
        dict(sorted(element.attrib.items())),
        (element.text or "").strip(),
        [shape(child) for child in element],
    )


@pytest.mark.parametrize(
    ("parameters", "welcome", "failure"),
    [
        ({"From": "+14155550123", "To": "+18005550100"}, "Hello & welcome <friend>", "Sorry."),
        (ODD_VALUES, "", "We could not connect your call. Goodbye."),
        ({}, "", ""),
    ],
    ids=["welcome", "odd-values", "bare"],
)
def test_stream_twiml_matches_the_twilio_sdk(
    parameters: dict[str, str], welcome: str, failure: str
) -> None:
    """Our TwiML parses to the same element tree as the twilio SDK's VoiceResponse for the same verbs."""
    ours = ElementTree.fromstring(
        stream_twiml(URL, parameters, welcome_say=welcome, failure_say=failure)
    )
    theirs = ElementTree.fromstring(sdk_twiml(URL, parameters, welcome, failure))
    assert shape(ours) == shape(theirs)
