"""The webhook's stream URL check: only URLs Twilio can open, and one ERROR per episode."""

from __future__ import annotations

import logging

import pytest

from voicebridge.server.stream_url import InsecureStreamUrls, usable_stream_url


@pytest.mark.parametrize(
    ("url", "usable"),
    [
        ("wss://voice.example.com/realtime", True),
        ("wss://voice.example.com:8443/vb/realtime", True),
        ("ws://voice.example.com/realtime", False),  # a router's TLS not seen: Twilio refuses
        ("ws://10.0.0.5:8000/realtime", False),
        ("ws://127.0.0.1:8000/realtime", True),  # local runs, tests and the demo
        ("ws://localhost:8000/realtime", True),
        ("ws://[::1]:8000/realtime", True),
        ("ws://127.0.0.1.example.com/realtime", False),
        ("http://voice.example.com/realtime", False),
        ("ws://[::1/realtime", False),  # unparseable
    ],
)
def test_usable_stream_url(url: str, usable: bool) -> None:
    assert usable_stream_url(url) is usable


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]


def test_logged_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    """Many webhooks in one episode: one ERROR; after a good answer, a recurrence logs again."""
    urls = InsecureStreamUrls()
    with caplog.at_level(logging.INFO, "voicebridge.server.stream_url"):
        for _ in range(5):
            urls.refused("ws://voice.example.com/realtime", "10.1.2.3", "https")
        assert len(_errors(caplog)) == 1
        urls.served()
        urls.served()
        urls.refused("ws://voice.example.com/realtime", "10.1.2.3", None)
    errors = _errors(caplog)
    assert len(errors) == 2
    recovered = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(recovered) == 1 and "wss:// stream URL again" in recovered[0].getMessage()


def test_the_error_names_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    """The line says which URL, why (the untrusted router), and both settings that fix it."""
    with caplog.at_level(logging.ERROR, "voicebridge.server.stream_url"):
        InsecureStreamUrls().refused("ws://voice.example.com/realtime", "10.1.2.3", "https")
    [line] = _errors(caplog)
    assert "ws://voice.example.com/realtime" in line and "wss://" in line
    assert "10.1.2.3" in line and "PUBLIC_URL" in line and "FORWARDED_ALLOW_IPS" in line
