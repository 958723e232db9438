"""``X-Voicebridge-Signature``: how the business's backend knows a request came from us.

Every HTTP tool request and call event is signed with ``SIGNING_SECRET``: HMAC-SHA256 over
the Unix timestamp, a dot and the raw body, sent as ``t=<timestamp>,v1=<hex digest>``. The
timestamp inside the MAC lets the receiver refuse a replay older than a few minutes. No I/O:
the time is an argument.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "TOLERANCE_S", "sign", "verify"]

SIGNATURE_HEADER = "X-Voicebridge-Signature"
TOLERANCE_S = 300  # a signature older (or newer) than this is refused: a replay or bad clock


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify(
    secret: str, header: str, body: bytes, now: float, tolerance_s: int = TOLERANCE_S
) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of ``now``.

    The README's ten-line snippet does the same; this one is what the tests and the offline
    business backend use.
    """
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    t, given = parts.get("t", ""), parts.get("v1", "")
    if not t.isdigit() or abs(now - int(t)) > tolerance_s:
        return False
    return hmac.compare_digest(_mac(secret, int(t), body), given)
