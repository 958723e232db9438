"""Which CallSids have had a call: one call per CallSid, kept for hours, without I/O.

A captured, signed webhook can be replayed: each replay mints a fresh stream token, and each
token would open a new (paid) upstream session once the previous call ended. Twilio places a
CallSid's stream once, so the bridge remembers every CallSid that opened a call for
``CALL_SID_MEMORY_S``: the webhook answers a replay without a stream, and a stream for a
CallSid that already had one is refused. The store is an interface so several instances
can share it (Redis: ``SET sid 1 NX EX ttl`` is :meth:`CallSidStore.claim`);
:class:`MemoryCallSids` is the per-instance one.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from voicebridge.core.outcomes import Clock

__all__ = ["CALL_SID_LIMIT", "CallSidStore", "MemoryCallSids"]

# CallSids remembered per instance at most (about 150 bytes each): far above what an
# instance answers in hours (50 calls of 3 minutes is 4,000 in 4 h); the oldest go first.
CALL_SID_LIMIT = 100_000


class CallSidStore(Protocol):
    async def had_call(self, call_sid: str) -> bool:
        """Whether a call was opened for ``call_sid`` within the memory window."""
        ...

    async def claim(self, call_sid: str) -> bool:
        """Record a call for ``call_sid``; False when it already had one (atomically)."""
        ...


class MemoryCallSids:
    """CallSids with a call, each kept ``ttl_s`` seconds (0: none kept), at most ``limit``.

    ``clock`` is the caller's monotonic clock in seconds, so expiry is tested without waiting.
    """

    def __init__(self, ttl_s: float, clock: Clock, limit: int = CALL_SID_LIMIT) -> None:
        self.ttl_s = ttl_s
        self.limit = limit
        self.clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()  # oldest claim first

    def __len__(self) -> int:
        return len(self._expiry)

    async def had_call(self, call_sid: str) -> bool:
        self._expire()
        return call_sid in self._expiry

    async def claim(self, call_sid: str) -> bool:
        self._expire()
        if call_sid in self._expiry:
            return False
        if self.ttl_s > 0:
            self._expiry[call_sid] = self.clock() + self.ttl_s
            while len(self._expiry) > self.limit:
                self._expiry.popitem(last=False)
        return True

    def _expire(self) -> None:
        # Claims are appended in time order with one ttl, so expiries rise: stop at a live one.
        now = self.clock()
        while self._expiry:
            sid, expires = next(iter(self._expiry.items()))
            if expires > now:
                break
            del self._expiry[sid]
