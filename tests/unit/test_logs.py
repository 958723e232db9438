"""What voicebridge writes to its logs: numbers and URL secrets masked, one record per line."""

from __future__ import annotations

import logging

import pytest

from voicebridge.config import Settings
from voicebridge.logs import TextFormatter, mask_number, mask_url


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+14155550123", "+1415***0123"),
        ("+442071838750", "+4420***8750"),
        ("client:alice", "clien***lice"),
        ("+12345", "***"),  # too short to show any of it
        ("", ""),  # no number given: nothing invented
    ],
)
def test_mask_number(number: str, masked: str) -> None:
    assert mask_number(number) == masked


def test_a_masked_number_never_holds_the_full_digits() -> None:
    for n in ("+14155550123", "+4915112345678", "5551234"):
        assert n not in mask_number(n) and n[-4:] in mask_number(n)


def _text_line(message: str, *args: object, exc: BaseException | None = None) -> str:
    record = logging.LogRecord("voicebridge.t", logging.WARNING, __file__, 1, message, args, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    return TextFormatter().format(record)


@pytest.mark.parametrize(
    "value",
    [
        "MZ1\n2026-12-07 01:00:00,000 INFO    voicebridge: forged",
        "CA1\r2026-12-07 01:00:00,000 INFO    voicebridge: forged",
        "ev\u2028forged",
        "ev\x85forged",
        "\x1b[2Kforged",
    ],
)
def test_a_client_value_cannot_start_a_log_line_of_its_own(value: str) -> None:
    line = _text_line("bad message from Twilio ignored: %s", value)
    assert len(line.splitlines()) == 1
    assert "forged" in line and "\x1b" not in line


def test_an_exception_follows_on_indented_lines_only() -> None:
    try:
        raise ValueError("bad\n2026-12-07 01:00:00,000 INFO    voicebridge: forged")
    except ValueError as exc:
        text = _text_line("call failed", exc=exc)
    first, *rest = text.splitlines()
    assert first.endswith("call failed") and rest
    assert all(line.startswith("    | ") for line in rest)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "wss://api.openai.com/v1/realtime?model=gpt-realtime",
            "wss://api.openai.com/v1/realtime?model=gpt-realtime",
        ),
        (
            "wss://r.openai.azure.com/openai/realtime?api-version=2025-08-28&deployment=gpt&api-key=sk-SECRET",
            "wss://r.openai.azure.com/openai/realtime?api-version=2025-08-28&deployment=gpt&api-key=***",
        ),
        (
            "wss://user:sk-SECRET@proxy.example/rt?sig=sk-SECRET",
            "wss://***@proxy.example/rt?sig=***",
        ),
    ],
)
def test_secrets_in_urls_are_masked(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_the_start_up_settings_never_show_a_key_in_the_url() -> None:
    settings = Settings.from_env(
        {"REALTIME_URL": "wss://r.example/rt?api-key=sk-SECRET", "OPENAI_API_KEY": "sk-OTHER"}
    )
    described = str(settings.describe())
    assert "sk-SECRET" not in described and "sk-OTHER" not in described
