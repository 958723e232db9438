"""Exceptions raised by voicebridge.

VoiceBridgeError
├── ConfigError              settings missing or invalid at start-up
├── TokenError               a stream token or call slot was refused (remote: the caller)
├── ProtocolError            a peer sent something we cannot use
│   ├── TwilioProtocolError  from the Media Streams WebSocket
│   └── RealtimeProtocolError from the Realtime API WebSocket
├── UpstreamError            the Realtime connection failed or ended
│   └── UpstreamClosed       it closed (code, reason as received): a call's upstream side
├── TwilioClosed             the Media Streams socket is gone: a call's Twilio side
├── QueueOverflow            control messages backed up: a peer stopped reading
├── TwilioRestError          Twilio's REST API refused or could not be reached
└── OutboundError            an outbound HTTP request (REST, tool, event) got no answer

The two ``*Closed`` errors are what a call's socket adapters (``server/twilio_socket.py``,
``server/upstream.py``) turn Starlette's and websockets' exceptions into.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "OutboundError",
    "ProtocolError",
    "QueueOverflow",
    "RealtimeProtocolError",
    "TokenError",
    "TwilioClosed",
    "TwilioProtocolError",
    "TwilioRestError",
    "UpstreamClosed",
    "UpstreamError",
    "VoiceBridgeError",
]


class VoiceBridgeError(Exception):
    """Base class of every voicebridge error."""


class ConfigError(VoiceBridgeError):
    """A setting is missing or invalid; the message says how to fix it."""


class TokenError(VoiceBridgeError):
    """Why a stream token is refused: ``reason`` is a stable counter label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


class UpstreamClosed(UpstreamError):
    """The Realtime connection closed, cleanly or not; ``code`` and ``reason`` as received."""

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class TwilioClosed(VoiceBridgeError):
    """Twilio's Media Streams socket is gone; ``code`` is its close code when one came."""

    def __init__(self, code: int | None = None, detail: str = "") -> None:
        super().__init__(detail or f"closed ({code})")
        self.code = code


class QueueOverflow(VoiceBridgeError):
    """Control messages backed up: the peer is not reading."""


class TwilioRestError(VoiceBridgeError):
    """Twilio's REST API was not configured, refused the request or could not be reached.

    The message never carries the auth token.
    """


class OutboundError(VoiceBridgeError):
    """An outbound HTTP request got no answer: unreachable, timed out, or answered too much.

    ``kind`` is a stable label (``timeout``, ``unreachable``, ``too_big``) for the metrics.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
