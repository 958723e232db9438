"""Telling a stalled consumer from an idle one, by its progress alone (no clock of its own)."""

from __future__ import annotations

__all__ = ["StallWatch"]


class StallWatch:
    """A consumer is stalled when items have been waiting for ``limit`` and it has taken none
    of them in that time (``limit`` and ``now`` in ms, as every time in the core).

    ``check`` is fed, at any interval, the consumer's running count of items taken and the
    number waiting; an empty queue is idle, never stalled.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._taken = -1
        self._stuck_since: float | None = None

    def check(self, taken: int, waiting: int, now: float) -> bool:
        if taken != self._taken or waiting == 0:
            self._taken = taken
            self._stuck_since = now if waiting else None
            return False
        if self._stuck_since is None:
            self._stuck_since = now
        return now - self._stuck_since >= self.limit

    def stuck_for(self, now: float) -> float:
        return 0.0 if self._stuck_since is None else now - self._stuck_since
