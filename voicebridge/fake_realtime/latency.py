"""A distant Realtime server: every server event leaves a fixed time after it was made.

The fake's protocol decisions stay instant; only the wire is late, as for a server far
from the bridge (``FakeRealtimeOptions.event_delay_ms``). Events keep their order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from websockets.exceptions import ConnectionClosed

__all__ = ["LateEvents"]


class LateEvents:
    """Sends each event ``delay_ms`` after :meth:`take` got it, in order, from one task."""

    def __init__(
        self,
        delay_ms: int,
        send: Callable[[str], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]],
    ) -> None:
        self._delay = delay_ms / 1000.0
        self._send = send
        self._spawn = spawn
        self._due: deque[tuple[float, str]] = deque()  # (loop time, text)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def take(self, outbox: deque[str]) -> None:
        """Move every pending event out of ``outbox``; each leaves ``delay_ms`` from now."""
        due = asyncio.get_running_loop().time() + self._delay
        while outbox:
            self._due.append((due, outbox.popleft()))
        if self._task is None:
            self._task = self._spawn(self._run(), "fake-late-events")
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._due:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, text = self._due[0]
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
                continue
            self._due.popleft()
            try:
                await self._send(text)
            except ConnectionClosed:
                return  # the client went away: what was still due is never sent
