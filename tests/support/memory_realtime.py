"""The project's fake Realtime server (``FakeConnection``), served over an in-memory pipe.

``MemoryRealtime.connect`` is a ``ConnectUpstream``: each call opens a pipe whose far end is
served by the same ``FakeConnection`` the loopback server runs, so the shell's tests speak
the GA protocol as the end-to-end tests do, without sockets and on the loop's clock. The
pipe is bounded towards the server (``buffer`` messages, as a socket's buffers): a fake that
stops reading (``stall_after_ms``) makes the bridge's sends wait, as a stalled peer does.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from websockets.exceptions import ConnectionClosedOK

from voicebridge.config import Settings
from voicebridge.errors import UpstreamError
from voicebridge.fake_realtime.connection import FakeConnection
from voicebridge.fake_realtime.session import FakeRealtimeOptions, FakeSession
from voicebridge.server.upstream import DIRECT_SEND_MAX, UpstreamClosed, UpstreamConnection

__all__ = ["MemoryRealtime", "Pipe"]


class _Inbox:
    """One direction of the pipe: bounded or not, with one waiting reader and writers."""

    def __init__(self, limit: int | None) -> None:
        self.items: deque[str] = deque()
        self.limit = limit
        self.changed = asyncio.Event()

    def full(self) -> bool:
        return self.limit is not None and len(self.items) >= self.limit

    def put(self, text: str) -> None:
        self.items.append(text)
        self.changed.set()

    def take(self) -> str:
        self.changed.set()  # a writer waiting for room may go on
        return self.items.popleft()


class Pipe:
    """Both ends of one connection: the bridge's (``UpstreamConnection``) and the fake's."""

    def __init__(self, buffer: int) -> None:
        self.to_server = _Inbox(buffer)
        self.to_client = _Inbox(None)
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed_by: str | None = None  # "client" or "server"
        self.opened_at = asyncio.get_running_loop().time()
        self.closed_at: float | None = None
        # Every message with the loop time it was written: (time, "client" | "server", text).
        self.wire: list[tuple[float, str, str]] = []
        self.server = _ServerEnd(self)

    def events(self, by: str, kind: str) -> list[tuple[float, dict[str, Any]]]:
        """The ``kind`` events ``by`` wrote, with their loop times."""
        out = []
        for at, who, text in self.wire:
            if who == by and f'"{kind}"' in text:
                event = json.loads(text)
                if event.get("type") == kind:
                    out.append((at, event))
        return out

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def close_now(self, code: int, reason: str, by: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason, self.closed_by = code, reason, by
            self.closed_at = asyncio.get_running_loop().time()
        self.to_server.changed.set()
        self.to_client.changed.set()

    def _gone(self) -> UpstreamClosed:
        return UpstreamClosed(
            f"closed by the {self.closed_by}: {self.close_code} {self.close_reason}".strip(),
            self.close_code,
            self.close_reason,
        )

    # -- the bridge's end: UpstreamConnection --------------------------------------------

    async def send(self, text: str) -> None:
        while True:
            if self.closed:
                raise self._gone()
            if not self.to_server.full():
                self.wire.append((asyncio.get_running_loop().time(), "client", text))
                self.to_server.put(text)
                return
            self.to_server.changed.clear()
            await self.to_server.changed.wait()

    async def recv(self) -> str:
        while not self.to_client.items:
            if self.closed:
                raise self._gone()
            self.to_client.changed.clear()
            await self.to_client.changed.wait()
        return self.to_client.take()

    def can_send_now(self, size: int) -> bool:
        return not self.closed and not self.to_server.items and size <= DIRECT_SEND_MAX

    async def close(self) -> None:
        self.close_now(1000, "", "client")


class _ServerEnd:
    """What ``FakeConnection`` uses of a websockets ``ServerConnection``."""

    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe

    @property
    def close_code(self) -> int | None:
        return self._pipe.close_code

    async def send(self, text: str) -> None:
        if self._pipe.closed:
            raise ConnectionClosedOK(None, None)
        self._pipe.wire.append((asyncio.get_running_loop().time(), "server", text))
        self._pipe.to_client.put(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._pipe.close_now(code, reason, "server")

    async def wait_closed(self) -> None:
        while not self._pipe.closed:
            self._pipe.to_server.changed.clear()
            await self._pipe.to_server.changed.wait()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str]:
        inbox = self._pipe.to_server
        while True:
            while inbox.items:
                yield inbox.take()
            if self._pipe.closed:
                return
            inbox.changed.clear()
            await inbox.changed.wait()


class MemoryRealtime:
    """A fake Realtime API reached through ``connect``; ``sessions`` as the server's."""

    def __init__(
        self,
        options: FakeRealtimeOptions = FakeRealtimeOptions(),  # noqa: B008 (frozen)
        *,
        buffer: int = 64,
        refuse: int = 0,
    ) -> None:
        self.options = options
        self.buffer = buffer
        self.refuse = refuse  # the next N connects fail as unreachable
        self.sessions: list[FakeSession] = []
        self.pipes: list[Pipe] = []
        self.connects = 0
        self._release = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(self, settings: Settings, deadline: float) -> UpstreamConnection:
        self.connects += 1
        if self.refuse:
            self.refuse -= 1
            raise UpstreamError("the fake Realtime API refused the connection: HTTP 503")
        pipe = Pipe(self.buffer)
        record = FakeSession(
            path="/v1/realtime?model=gpt-realtime", headers={}, model=None, index=len(self.sessions)
        )
        self.sessions.append(record)
        self.pipes.append(pipe)
        conn = FakeConnection(pipe.server, record, self.options, release=self._release)  # type: ignore[arg-type]
        task = asyncio.create_task(self._serve(conn, pipe, record), name="memory-realtime")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return pipe

    async def _serve(self, conn: FakeConnection, pipe: Pipe, record: FakeSession) -> None:
        try:
            await conn.run()
        finally:
            record.close_code = pipe.close_code

    @property
    def active(self) -> int:
        return sum(not pipe.closed for pipe in self.pipes)

    async def aclose(self) -> None:
        """Release stalled sessions, close every pipe, and wait for the fake to finish."""
        self._release.set()
        for pipe in self.pipes:
            pipe.close_now(1001, "", "server")
        if self._tasks:
            await asyncio.wait(self._tasks)
