"""How the process's logging is set up: access lines masked, frame-level output off unless asked."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from voicebridge.config import Settings
from voicebridge.logs import AccessLogFilter, mask_query_numbers, setup_logging

NAMES = ("", "uvicorn.error", "uvicorn.access", "websockets", "voicebridge")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """setup_logging changes process-wide loggers: put them back for the other tests."""
    saved = {
        name: (logging.getLogger(name).level, list(logging.getLogger(name).filters))
        for name in NAMES
    }
    handlers = list(logging.getLogger().handlers)
    try:
        yield
    finally:
        for name, (level, filters) in saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.filters[:] = filters
        logging.getLogger().handlers[:] = handlers


@pytest.mark.parametrize(
    ("target", "masked"),
    [
        (
            "/twilio/stream?CallSid=CA1&From=%2B14155550123&To=%2B18005550100",
            "/twilio/stream?CallSid=CA1&From=%2B1415***0123&To=%2B1800***0100",
        ),
        (
            "/twilio/stream?Caller=%2B14155550123&Called=+18005550100",
            "/twilio/stream?Caller=%2B1415***0123&Called=%201800***0100",
        ),
        (
            "/twilio/fallback?ForwardedFrom=client%3Aalice",
            "/twilio/fallback?ForwardedFrom=clien***lice",
        ),
        ("/x?callback=4155550123&Digits=12", "/x?callback=41555***0123&Digits=12"),  # by its look
        ("/twilio/stream?CallSid=CA1&AccountSid=AC2", "/twilio/stream?CallSid=CA1&AccountSid=AC2"),
        ("/healthz", "/healthz"),
        ("/twilio/stream?", "/twilio/stream?"),
    ],
)
def test_numbers_in_a_query_string_are_masked(target: str, masked: str) -> None:
    assert mask_query_numbers(target) == masked


def test_access_line_shows_no_full_number() -> None:
    """uvicorn's access record, as it logs it, reads with the caller's number masked."""
    args = ("10.0.0.7:5123", "GET", "/twilio/stream?From=%2B14155550123&CallSid=CA1", "1.1", 200)
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None
    )
    assert AccessLogFilter().filter(record)
    line = record.getMessage()
    assert "14155550123" not in line
    assert (
        line == '10.0.0.7:5123 - "GET /twilio/stream?From=%2B1415***0123&CallSid=CA1 HTTP/1.1" 200'
    )


@pytest.mark.usefixtures("restore_logging")
def test_debug_level_keeps_frames_out_unless_wire_is_asked() -> None:
    """LOG_LEVEL=DEBUG: voicebridge's debug lines, not a line per WebSocket frame."""
    setup_logging("DEBUG")
    assert logging.getLogger("voicebridge.server.call").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("uvicorn.error").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("uvicorn.error").isEnabledFor(logging.INFO)
    assert not logging.getLogger("websockets.client").isEnabledFor(logging.INFO)
    setup_logging("DEBUG", wire=True)
    assert logging.getLogger("uvicorn.error").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("websockets.client").isEnabledFor(logging.DEBUG)


@pytest.mark.usefixtures("restore_logging")
def test_quieting_frames_never_lowers_the_level() -> None:
    """LOG_LEVEL=ERROR: uvicorn's INFO lines stay out too."""
    setup_logging("ERROR")
    assert not logging.getLogger("uvicorn.error").isEnabledFor(logging.WARNING)
    assert not logging.getLogger("websockets").isEnabledFor(logging.WARNING)


@pytest.mark.usefixtures("restore_logging")
def test_access_filter_is_installed_once() -> None:
    setup_logging("INFO")
    setup_logging("INFO", "json")
    access = logging.getLogger("uvicorn.access").filters
    assert sum(isinstance(f, AccessLogFilter) for f in access) == 1


def test_log_wire_setting() -> None:
    assert Settings.from_env({}).log_wire is False
    assert Settings.from_env({"LOG_WIRE": "true"}).log_wire is True
