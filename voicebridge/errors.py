"""Exceptions raised by voicebridge.

VoiceBridgeError
├── ConfigError              settings missing or invalid at start-up
├── ProtocolError            a peer sent something we cannot use
│   ├── TwilioProtocolError  from the Media Streams WebSocket
│   └── RealtimeProtocolError from the Realtime API WebSocket
└── UpstreamError            the Realtime connection failed or ended
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ProtocolError",
    "RealtimeProtocolError",
    "TwilioProtocolError",
    "UpstreamError",
    "VoiceBridgeError",
]


class VoiceBridgeError(Exception):
    """Base class of every voicebridge error."""


class ConfigError(VoiceBridgeError):
    """A setting is missing or invalid; the message says how to fix it."""


class ProtocolError(VoiceBridgeError):
    """A remote peer sent a message we cannot use.

    ``reason`` is a short, stable label used for counters and log lines.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class TwilioProtocolError(ProtocolError):
    """Twilio's Media Streams socket sent something malformed or out of order."""


class RealtimeProtocolError(ProtocolError):
    """The Realtime API sent something malformed."""


class UpstreamError(VoiceBridgeError):
    """The Realtime connection could not be opened, or failed during the call.

    ``config_error`` marks a refusal that retrying cannot fix (bad credentials).
    """

    def __init__(self, message: str, *, status: int | None = None, config_error: bool = False):
        super().__init__(message)
        self.status = status
        self.config_error = config_error
