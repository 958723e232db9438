"""Where call slots, used tokens and opened CallSids are kept: the interface, and memory.

The guard asks a :class:`CallSlots` at the webhook (reserve), at Twilio's ``start`` (claim)
and when a call ends (release). :class:`MemorySlots` keeps them in this process (one
instance's :class:`~voicebridge.core.admission.Admission`); ``server.redis_state`` keeps them
in Redis so every instance sees every reservation, call and token.
"""

from __future__ import annotations

from typing import Literal, Protocol

from voicebridge.core.admission import Admission
from voicebridge.core.outcomes import Clock

__all__ = ["BUSY", "CLUSTER_BUSY", "CallSlots", "MemorySlots", "Refusal", "worker_share"]

Refusal = Literal["busy", "busy_cluster"]
BUSY: Refusal = "busy"  # this instance's MAX_CALLS
CLUSTER_BUSY: Refusal = "busy_cluster"  # the cluster's MAX_CALLS_TOTAL


class CallSlots(Protocol):
    async def reserve(self, call_sid: str) -> Refusal | None:
        """Hold a slot for a call the webhook is answering; the refusal, or None."""
        ...

    async def claim(self, call_sid: str, nonce: str, expires: float) -> None:
        """Turn the call's reservation (made wherever its webhook was answered) into an
        active call here. ``expires`` is the token's wall-clock expiry: its nonce is
        remembered until then.

        Raises:
            TokenError: ``reused_token``, ``no_reservation`` or ``busy``.
        """
        ...

    async def release(self, call_sid: str) -> None: ...

    async def has_room(self) -> bool:
        """Whether this instance would reserve a slot now (for ``/readyz``)."""
        ...


class MemorySlots:
    """This process's slots: today's per-instance behaviour, behind the interface."""

    def __init__(self, admission: Admission, clock: Clock, *, shared_secret: bool) -> None:
        self.admission = admission
        self.clock = clock
        self.shared_secret = shared_secret

    async def reserve(self, call_sid: str) -> Refusal | None:
        return None if self.admission.reserve(call_sid, self.clock()) else BUSY

    async def claim(self, call_sid: str, nonce: str, expires: float) -> None:
        self.admission.claim(call_sid, nonce, self.clock(), shared_secret=self.shared_secret)

    async def release(self, call_sid: str) -> None:
        self.admission.release(call_sid)

    async def has_room(self) -> bool:
        return self.admission.has_room(self.clock())


def worker_share(max_calls: int, workers: int, index: int) -> int:
    """Worker ``index``'s part of ``max_calls`` when ``workers`` processes share one port
    with no shared store: the parts add up to ``max_calls``, the first ones one larger."""
    return max_calls // workers + (1 if index < max_calls % workers else 0)
