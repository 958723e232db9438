"""Real servers for tests, each in its own thread and event loop, on loopback port 0.

The bridge runs under a real uvicorn, as in production; the fake Realtime server runs
beside it. Separate loops keep the bridge's own task count observable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import uvicorn

from voicebridge.config import Settings
from voicebridge.fake_realtime.server import FakeRealtimeOptions, FakeRealtimeServer
from voicebridge.server.app import AppState
from voicebridge.server.serve import uvicorn_config

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def call(self, fn: Callable[[], T], timeout: float = 5.0) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout)

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(cancel_all(), timeout=5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


@dataclasses.dataclass
class Bridge:
    url: str  # http://127.0.0.1:PORT
    state: AppState
    settings: Settings
    thread: LoopThread

    @property
    def webhook(self) -> str:
        return self.url + "/twilio/stream"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/realtime"

    def task_count(self) -> int:
        return self.thread.call(lambda: len(asyncio.all_tasks()))


@contextmanager
def running_fake(
    options: FakeRealtimeOptions | None = None,
) -> Iterator[tuple[FakeRealtimeServer, LoopThread]]:
    thread = LoopThread("fake-realtime")
    fake = FakeRealtimeServer(options or FakeRealtimeOptions())
    try:
        thread.run(fake.start("127.0.0.1", 0))
        yield fake, thread
    finally:
        try:
            thread.run(fake.close())
        finally:
            thread.stop()


@contextmanager
def running_uvicorn(
    config: uvicorn.Config, name: str = "uvicorn"
) -> Iterator[tuple[int, LoopThread]]:
    """``config``'s app under a real uvicorn in its own thread and loop: (port, thread)."""
    server = uvicorn.Server(config)
    thread = LoopThread(name)
    started = asyncio.run_coroutine_threadsafe(server.serve(), thread.loop)
    try:
        for _ in range(500):
            if server.started or started.done():
                break
            threading.Event().wait(0.01)
        if started.done():
            started.result()
        assert server.started, "uvicorn did not start"
        yield server.servers[0].sockets[0].getsockname()[1], thread
    finally:
        server.should_exit = True
        try:
            started.result(10)
        finally:
            thread.stop()


@contextmanager
def running_bridge(settings: Settings, **overrides: Any) -> Iterator[Bridge]:
    settings = dataclasses.replace(settings, host="127.0.0.1", port=0, **overrides)
    config = uvicorn_config(settings)
    with running_uvicorn(config, "bridge") as (port, thread):
        yield Bridge(f"http://127.0.0.1:{port}", _find_state(config.app), settings, thread)


def _find_state(app: Any) -> AppState:
    state = app.state.voicebridge
    assert isinstance(state, AppState)
    return state
