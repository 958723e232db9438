"""The doors: Twilio signatures on every request and handshake, stream tokens, call slots.

Nothing reaches the upstream (which costs money per minute) unless Twilio placed a call
this service answered: the webhook must be signed by Twilio, the WebSocket handshake too
(as ``TWILIO_STREAM_SIGNATURE`` says), the ``start`` message must carry the token the webhook
minted for that CallSid, and a CallSid opens one call only (``CALL_SID_MEMORY_S``).

Refusals are counted by reason; their log lines are rationed (a few per reason a minute,
then one line with the rest), so a client cannot write the log at its own rate.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from urllib.parse import parse_qsl

from starlette.requests import HTTPConnection

from voicebridge.config import STREAM_SIGNATURE_MODES, Settings
from voicebridge.core import twilio as tw
from voicebridge.core.admission import (
    TOKEN_PARAMETER,
    Admission,
    TokenError,
    mint_token,
    minted_before,
    verify_token,
)
from voicebridge.core.call_sids import CallSidStore, MemoryCallSids
from voicebridge.core.signature import check_signature
from voicebridge.core.slots import CallSlots, MemorySlots, Refusal

__all__ = ["Guard"]

log = logging.getLogger(__name__)

REJECT_LOG_WINDOW_S = 60.0
REJECT_LOG_LINES = 5  # per reason and window; the rest are summed in one line afterwards


class Guard:
    def __init__(
        self,
        settings: Settings,
        call_sids: CallSidStore | None = None,
        slots: CallSlots | None = None,
        admission: Admission | None = None,
    ) -> None:
        """``slots`` and ``call_sids`` default to this process's memory (``admission``, the
        local slots, is the fallback of a shared store: ``server/shared_state.py``)."""
        self.settings = settings
        self.admission = admission or Admission(settings.max_calls, settings.stream_token_ttl_s)
        self.slots: CallSlots = slots or MemorySlots(
            self.admission,
            time.monotonic,
            shared_secret=not settings.stream_token_secret_generated,
        )
        self.call_sids: CallSidStore = call_sids or MemoryCallSids(
            settings.call_sid_memory_s, time.monotonic
        )
        self.rejected: Counter[str] = Counter()  # by reason
        self._secret = settings.stream_token_secret.reveal().encode()
        self._auth_token = settings.twilio_auth_token.reveal()
        self._logged: Counter[str] = Counter()  # refusal lines in this window, by reason
        self._unlogged: Counter[str] = Counter()
        self._window_ends = 0.0
        # Wall-clock time the drain began (tokens carry wall-clock times): from then on only
        # streams whose token was minted before are admitted.
        self.draining_since: float | None = None

    def warn_at_startup(self) -> None:
        if not self._auth_token:
            log.warning(
                "!!! TWILIO_AUTH_TOKEN is not set: requests are NOT checked for Twilio's "
                "signature. Anyone who finds the webhook URL can place calls on your upstream "
                "account. Set TWILIO_AUTH_TOKEN and PUBLIC_URL in production. !!!"
            )
        if self.settings.stream_token_secret_generated:
            log.warning(
                "STREAM_TOKEN_SECRET is not set: using a random one for this process. With "
                "more than one instance (or a restart between webhook and stream) calls will "
                "be refused; set the same STREAM_TOKEN_SECRET on every instance."
            )
        if self._auth_token:
            mode = self.settings.twilio_stream_signature
            log.info("TWILIO_STREAM_SIGNATURE=%s: %s", mode, STREAM_SIGNATURE_MODES[mode])

    def reject(self, reason: str, where: str, peer: str) -> None:
        """Count a refusal; log it unless this reason already had its lines this minute."""
        self.rejected[reason] += 1
        now = time.monotonic()
        if now >= self._window_ends:
            if self._unlogged:
                summary = ", ".join(f"{r}: {n}" for r, n in sorted(self._unlogged.items()))
                log.warning("also rejected, without a line each: %s", summary)
            self._logged.clear()
            self._unlogged.clear()
            self._window_ends = now + REJECT_LOG_WINDOW_S
        if self._logged[reason] < REJECT_LOG_LINES:
            self._logged[reason] += 1
            log.warning("rejected %s from %s: %s", where, peer, reason)
        else:
            self._unlogged[reason] += 1

    def _public_url(self, conn: HTTPConnection, *, websocket: bool) -> str:
        base = self.settings.public_url or ""
        if websocket:
            base = "wss://" + base.split("://", 1)[-1] if base.startswith("https") else base
        query = conn.url.query
        return base + conn.url.path + (f"?{query}" if query else "")

    def check_request(self, conn: HTTPConnection, body: bytes) -> str | None:
        """Why a webhook/callback request is not Twilio's, or None."""
        if not self._auth_token:
            return None
        ctype = conn.headers.get("content-type", "")
        form: list[tuple[str, str]] = []
        if ctype.startswith("application/x-www-form-urlencoded"):
            form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        return check_signature(
            self._auth_token,
            self._public_url(conn, websocket=False),
            conn.headers.get("x-twilio-signature"),
            form=form,
            body=body,
        )

    def check_handshake(self, conn: HTTPConnection) -> str | None:
        """Why a /realtime upgrade is not Twilio's, or None (signed over wss://, no params).

        ``TWILIO_STREAM_SIGNATURE``: ``require`` refuses an upgrade without a valid signature;
        ``if-present`` (the default) only one whose signature is wrong, leaving an unsigned
        one to the stream token; ``off`` checks nothing here.
        """
        mode = self.settings.twilio_stream_signature
        if not self._auth_token or mode == "off":
            return None
        signature = conn.headers.get("x-twilio-signature")
        if signature is None and mode == "if-present":
            return None
        return check_signature(
            self._auth_token,
            self._public_url(conn, websocket=True),
            signature,
            trailing_slash=True,
        )

    async def reserve(self, call_sid: str) -> tuple[str | None, Refusal | None]:
        """A stream token for a call the webhook is answering, or None and why not (this
        instance's slots are taken, or the cluster's)."""
        refusal = await self.slots.reserve(call_sid)
        if refusal:
            return None, refusal
        ttl = self.settings.stream_token_ttl_s
        return mint_token(self._secret, call_sid, time.time(), ttl), None

    async def has_room(self) -> bool:
        return await self.slots.has_room()

    async def had_call(self, call_sid: str) -> bool:
        """Whether ``call_sid`` already opened a call: its webhook is a replay."""
        return await self.call_sids.had_call(call_sid)

    def begin_drain(self) -> None:
        self.draining_since = time.time()

    async def admit(self, start: tw.Start) -> str | None:
        """Check ``start``'s token and claim the call's slot; the refusal reason or None.

        During a drain, a token minted before it began (a webhook answered just before
        SIGTERM) is admitted, and drains like the other calls; a later one is ``draining``.
        """
        token = start.custom_parameters.get(TOKEN_PARAMETER)
        try:
            nonce = verify_token(self._secret, token, start.call_sid, time.time())
            assert token is not None  # verified: "expires.nonce.mac"
            expires = float(token.partition(".")[0])
            since = self.draining_since
            ttl = self.settings.stream_token_ttl_s
            if since is not None and not minted_before(expires, ttl, since):
                return "draining"
            await self.slots.claim(start.call_sid, nonce, expires)
        except TokenError as exc:
            return exc.reason
        # Last, so only a genuine token that takes a slot marks the CallSid as used.
        if not await self.call_sids.claim(start.call_sid):
            await self.slots.release(start.call_sid)
            return "call_sid_reused"
        return None

    async def release(self, call_sid: str) -> None:
        await self.slots.release(call_sid)
