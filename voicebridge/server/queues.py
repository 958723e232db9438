"""Bounded queues between a call's receive and send halves.

Twilio cannot be slowed down and the model produces audio in bursts, so audio is never
allowed to pile up without limit: each queue holds at most ``max_audio`` audio items and,
when full, **drops the oldest** (the newest audio is the one still worth hearing) and
counts it. Control items (``clear``, marks, ``truncate``, ``session.update``...) are never
dropped and go out before queued audio; more than ``max_control`` of them waiting means the
peer has stopped reading, and :class:`QueueOverflow` ends the call.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from voicebridge.errors import QueueOverflow

__all__ = ["FrameQueue", "QueueOverflow", "QueueStats"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class QueueStats:
    audio_waiting: int
    control_waiting: int
    max_audio: int
    dropped: int


class FrameQueue(Generic[T]):
    """Two lanes (control first, then audio), one waiting consumer."""

    def __init__(self, max_audio: int, max_control: int = 256) -> None:
        self._audio: deque[T] = deque()
        self._control: deque[T] = deque()
        self._max_audio = max_audio
        self._max_control = max_control
        # The one consumer's wake-up; a bare future costs less per frame than an Event.
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = 0
        self.taken = 0  # items handed to the consumer: its progress, for stall checks

    def put_audio(self, item: T) -> bool:
        """Queue audio; returns False when the oldest queued item was dropped for it."""
        dropped = len(self._audio) >= self._max_audio
        if dropped:
            self._audio.popleft()
            self.dropped += 1
        self._audio.append(item)
        self._wake()
        return not dropped

    def put_control(self, item: T) -> None:
        if len(self._control) >= self._max_control:
            raise QueueOverflow(f"{len(self._control)} control messages waiting")
        self._control.append(item)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def drain_audio(self) -> int:
        """Forget queued audio (barge-in); returns how many items were dropped."""
        n = len(self._audio)
        self._audio.clear()
        return n

    def drain_control(self) -> int:
        """Forget queued control items (they were meant for a session that is gone)."""
        n = len(self._control)
        self._control.clear()
        return n

    async def get(self) -> T:
        while not (self._control or self._audio):
            if self._waiter is not None:
                raise RuntimeError("FrameQueue has one consumer")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.taken += 1
        return self._control.popleft() if self._control else self._audio.popleft()

    def get_nowait(self) -> T | None:
        if self._control:
            self.taken += 1
            return self._control.popleft()
        if self._audio:
            self.taken += 1
            return self._audio.popleft()
        return None

    def waiting(self) -> int:
        return len(self._audio) + len(self._control)

    def statistics(self) -> QueueStats:
        return QueueStats(len(self._audio), len(self._control), self._max_audio, self.dropped)
