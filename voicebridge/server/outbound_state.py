"""What outbound calls keep between requests: each placed call's request until its webhook
(memory, or Redis with ``REDIS_URL``: the webhook may reach another instance), and each
call's answering-machine verdict for the live call (this instance only: Twilio's AMD
callback and the call's stream may reach different instances, see README).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from voicebridge.core.outbound import OutboundRequest
from voicebridge.server.redis_state import RedisState

__all__ = ["PENDING_LIMIT", "PENDING_TTL_S", "AmdSignals", "PendingCalls"]

PENDING_TTL_S = 600.0  # Calls create to webhook: ringing lasts at most Twilio's 600 s Timeout
PENDING_LIMIT = 10_000
REDIS_TIMEOUT_S = 2.0


class PendingCalls:
    """Each placed call's request until its webhook: memory, or Redis (memory while down)."""

    def __init__(self, redis: RedisState | None, now: Callable[[], float] = time.monotonic):
        self.redis = redis
        self.now = now
        self._kept: OrderedDict[str, tuple[float, str]] = OrderedDict()

    @staticmethod
    def key(call_sid: str) -> str:
        return f"vb:outbound:{call_sid}"

    async def put(self, call_sid: str, request: OutboundRequest) -> None:
        text = request.encode()
        if self.redis is not None and not self.redis.degraded:
            try:
                async with asyncio.timeout(2.0):
                    ttl_ms = int(PENDING_TTL_S * 1000)
                    await self.redis.client.set(self.key(call_sid), text, px=ttl_ms)
                return
            except Exception as exc:  # an outage: kept here instead, as the outcomes are
                self.redis.failed("outbound", exc)
        self._kept[call_sid] = (self.now() + PENDING_TTL_S, text)
        while len(self._kept) > PENDING_LIMIT:
            self._kept.popitem(last=False)

    async def get(self, call_sid: str) -> OutboundRequest | None:
        kept = self._kept.get(call_sid)
        if kept is not None and kept[0] > self.now():
            return OutboundRequest.decode(kept[1])
        if self.redis is None or self.redis.degraded:
            return None
        try:
            async with asyncio.timeout(2.0):
                text = await self.redis.client.get(self.key(call_sid))
        except Exception as exc:
            self.redis.failed("outbound", exc)
            return None
        return OutboundRequest.decode(text) if isinstance(text, str) else None


@dataclass
class AmdSignals:
    """The AMD verdict per CallSid, for a live call on this instance to wait on."""

    def __post_init__(self) -> None:
        self._verdicts: OrderedDict[str, str] = OrderedDict()
        self._events: dict[str, asyncio.Event] = {}

    def set(self, call_sid: str, answered_by: str) -> None:
        self._verdicts[call_sid] = answered_by
        while len(self._verdicts) > PENDING_LIMIT:
            self._verdicts.popitem(last=False)
        event = self._events.pop(call_sid, None)
        if event is not None:
            event.set()

    def get(self, call_sid: str) -> str | None:
        return self._verdicts.get(call_sid)

    async def wait(self, call_sid: str) -> str:
        """Twilio's ``AnsweredBy`` for the call (the caller bounds the wait)."""
        if call_sid not in self._verdicts:
            await self._events.setdefault(call_sid, asyncio.Event()).wait()
        return self._verdicts[call_sid]
