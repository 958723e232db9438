"""How a call ended, as the after-stream answer needs it: kept per CallSid, without I/O.

The bridge records an :class:`Outcome` when a call ends; Twilio's ``<Connect action>`` request
for that CallSid then takes it and answers by it (``core.twiml.after_stream_twiml``). The
store is an interface so several instances can share it (Redis); :class:`MemoryOutcomes` is
the per-instance one.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

__all__ = ["MemoryOutcomes", "Outcome", "OutcomeKind", "OutcomeStore"]


class OutcomeKind(enum.Enum):
    HANGUP = "hangup"  # a deliberate ending: the goodbye was heard, nothing more to say
    TRANSFER = "transfer"  # hand the caller to ``destination``
    FAILED = "failed"  # the bridge failed the caller: apologise


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    reason: str = ""  # the call's end reason, for the action's log line
    destination: str = ""  # TRANSFER only

    def encode(self) -> str:
        """One line for a shared store: ``kind|reason|destination``."""
        return f"{self.kind.value}|{self.reason}|{self.destination}"

    @classmethod
    def decode(cls, text: str) -> Outcome | None:
        kind, _, rest = text.partition("|")
        reason, _, destination = rest.partition("|")
        try:
            return cls(OutcomeKind(kind), reason, destination)
        except ValueError:
            return None


class OutcomeStore(Protocol):
    async def put(self, call_sid: str, outcome: Outcome) -> None: ...

    async def take(self, call_sid: str) -> Outcome | None:
        """The call's outcome, removed: Twilio requests the action once per stream."""
        ...


class MemoryOutcomes:
    """Outcomes kept for ``ttl_s`` (Twilio requests the action within seconds), at most ``limit``.

    ``clock`` is the caller's monotonic clock in seconds, so expiry is tested without waiting.
    """

    def __init__(self, ttl_s: float, limit: int, clock: Clock) -> None:
        self.ttl_s = ttl_s
        self.limit = limit
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, Outcome]] = OrderedDict()

    async def put(self, call_sid: str, outcome: Outcome) -> None:
        self._expire()
        self._items[call_sid] = (self.clock() + self.ttl_s, outcome)
        self._items.move_to_end(call_sid)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)  # oldest first: its action came long ago

    async def take(self, call_sid: str) -> Outcome | None:
        self._expire()
        entry = self._items.pop(call_sid, None)
        return entry[1] if entry else None

    def _expire(self) -> None:
        now = self.clock()
        while self._items:
            sid, (expires, _) = next(iter(self._items.items()))
            if expires > now:
                break
            del self._items[sid]


class Clock(Protocol):
    def __call__(self) -> float: ...
