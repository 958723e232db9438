"""Who may open a call: per-call stream tokens and call slots, without I/O.

The webhook (which Twilio signed) reserves a slot for the CallSid and mints a short-lived,
single-use token bound to it; the token reaches the bridge as a ``<Parameter>`` in Twilio's
``start`` message, and is checked *before* any upstream connection is opened. A stray
WebSocket client therefore never costs an upstream minute. Times are seconds on any clock
the caller passes in (wall-clock for tokens, since another instance may mint them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from voicebridge.errors import TokenError

__all__ = [
    "TOKEN_PARAMETER",
    "Admission",
    "TokenError",
    "mint_token",
    "minted_before",
    "verify_token",
]

TOKEN_PARAMETER = "StreamToken"


def _mac(secret: bytes, call_sid: str, expires: int, nonce: str) -> str:
    msg = f"{call_sid}|{expires}|{nonce}".encode()
    digest = hmac.new(secret, msg, hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(digest).decode()


def mint_token(secret: bytes, call_sid: str, now: float, ttl: float) -> str:
    """``expires.nonce.mac``: an HMAC-SHA256 over the CallSid, expiry and a nonce."""
    expires = int(now + ttl) + 1
    nonce = secrets.token_urlsafe(9)
    return f"{expires}.{nonce}.{_mac(secret, call_sid, expires, nonce)}"


def minted_before(expires: float, ttl: float, when: float) -> bool:
    """Whether a token expiring at ``expires`` may have been minted before ``when``.

    :func:`mint_token` rounds the expiry up past ``now + ttl``, so a token was minted in
    ``[expires - ttl - 1, expires - ttl)``: known to the second, from the token alone (a
    token another instance minted, with the same ``STREAM_TOKEN_TTL_S``, too).
    """
    return expires - ttl - 1 < when


def verify_token(secret: bytes, token: str | None, call_sid: str, now: float) -> str:
    """The token's nonce if it is genuine, unexpired and bound to ``call_sid``.

    Raises:
        TokenError: ``missing_token``, ``malformed_token``, ``forged_token`` (also a token
            minted for another CallSid: the MAC covers it) or ``expired_token``.
    """
    if not token:
        raise TokenError("missing_token")
    # ASCII only: "²".isdigit() is true but int("²") raises, and a lone surrogate cannot be
    # encoded for the MAC. A minted token is ASCII, its expiry ten digits.
    if len(token) > 200 or not token.isascii() or not call_sid.isascii():
        raise TokenError("malformed_token")
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 12:
        raise TokenError("malformed_token")
    expires, nonce, mac = int(parts[0]), parts[1], parts[2]
    if not hmac.compare_digest(_mac(secret, call_sid, expires, nonce), mac):
        raise TokenError("forged_token")
    if now > expires:
        raise TokenError("expired_token")
    return nonce


@dataclass
class Admission:
    """Call slots for one instance: reservations made by the webhook, active calls.

    A reservation lives as long as its token; a call claims it at ``start`` and frees the
    slot when it ends. Used token nonces are remembered until they expire, so each token
    opens at most one call on this instance.
    """

    max_calls: int
    token_ttl: float
    _reserved: dict[str, float] = field(default_factory=dict)  # CallSid -> expiry
    _active: set[str] = field(default_factory=set)
    _used: dict[str, float] = field(default_factory=dict)  # nonce -> expiry

    def _expire(self, now: float) -> None:
        for sid in [s for s, exp in self._reserved.items() if exp < now]:
            del self._reserved[sid]
        for nonce in [n for n, exp in self._used.items() if exp < now]:
            del self._used[nonce]

    def load(self, now: float) -> int:
        self._expire(now)
        return len(self._reserved) + len(self._active)

    def has_room(self, now: float) -> bool:
        return self.load(now) < self.max_calls

    def reserve(self, call_sid: str, now: float) -> bool:
        """Hold a slot for a call the webhook is answering; False when full."""
        self._expire(now)
        if call_sid in self._reserved:
            self._reserved[call_sid] = now + self.token_ttl  # Twilio retried the webhook
            return True
        if len(self._reserved) + len(self._active) >= self.max_calls:
            return False
        self._reserved[call_sid] = now + self.token_ttl
        return True

    def claim(self, call_sid: str, nonce: str, now: float, *, shared_secret: bool) -> None:
        """Turn the reservation into an active call.

        Raises:
            TokenError: ``reused_token``, ``no_reservation`` or ``busy``.
        """
        self._expire(now)
        if nonce in self._used or call_sid in self._active:
            raise TokenError("reused_token")
        if self._reserved.pop(call_sid, None) is None:
            # With a secret shared between instances, another instance may have answered
            # the webhook: a genuine token may then take a free slot here.
            if not shared_secret:
                raise TokenError("no_reservation")
            if len(self._reserved) + len(self._active) >= self.max_calls:
                raise TokenError("busy")
        self._used[nonce] = now + self.token_ttl
        self._active.add(call_sid)

    def adopt(self, call_sid: str, nonce: str, now: float) -> None:
        """Count a call a shared store admitted (it checked the limits): should the store
        become unreachable, this instance's own limit and used tokens still hold."""
        self._expire(now)
        self._reserved.pop(call_sid, None)
        self._used[nonce] = now + self.token_ttl
        self._active.add(call_sid)

    def active(self) -> frozenset[str]:
        return frozenset(self._active)

    def release(self, call_sid: str) -> None:
        self._active.discard(call_sid)
