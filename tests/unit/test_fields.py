"""The typed field readers both parsers share."""

from __future__ import annotations

import pytest

from voicebridge.core.fields import Fields
from voicebridge.errors import RealtimeProtocolError, TwilioProtocolError

STRICT = Fields(RealtimeProtocolError)
TWILIO = Fields(TwilioProtocolError, numeric_strings=True)


def test_reads_fields_of_the_expected_type() -> None:
    """Each reader returns the field when its type is right."""
    obj = {"s": "x", "o": {"a": 1}, "i": 5}
    assert STRICT.string(obj, "s") == "x"
    assert STRICT.mapping(obj, "o") == {"a": 1}
    assert STRICT.integer(obj, "i") == 5


@pytest.mark.parametrize("value", ["5", True, 5.0, None])
def test_strict_integer_refuses_anything_but_an_int(value: object) -> None:
    """Without numeric_strings, a string, a bool, a float or a missing field is bad_shape."""
    with pytest.raises(RealtimeProtocolError) as info:
        STRICT.integer({"type": "x.y", "n": value}, "n")
    assert info.value.reason == "bad_shape"
    assert "'x.y' field 'n'" in str(info.value)


def test_numeric_strings_accepts_twilios_numbers_but_not_bools() -> None:
    """Twilio's "5" reads as 5; a bool, a word or an infinite number is still bad_shape."""
    assert TWILIO.integer({"t": "5"}, "t", "media") == 5
    for value in (True, "five", float("inf"), None):
        with pytest.raises(TwilioProtocolError, match="'media' field 't'"):
            TWILIO.integer({"t": value}, "t", "media")


def test_wrong_type_raises_the_parsers_own_error() -> None:
    """A string or object of the wrong type raises the error class the parser chose."""
    with pytest.raises(TwilioProtocolError):
        TWILIO.string({"s": 1}, "s", "stop")
    with pytest.raises(RealtimeProtocolError):
        STRICT.mapping({"o": []}, "o")
