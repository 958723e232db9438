"""Running the app under uvicorn, with voicebridge's own ``uvicorn.Server`` object."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
from collections.abc import Generator
from contextlib import AsyncExitStack
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from voicebridge.config import Settings
from voicebridge.server.app import create_app

__all__ = ["BridgeServer", "serve", "uvicorn_config"]

log = logging.getLogger(__name__)


def uvicorn_config(settings: Settings, app: Starlette | None = None) -> uvicorn.Config:
    return uvicorn.Config(
        app if app is not None else create_app(settings),
        host=settings.host,
        port=settings.port,
        # Behind a PaaS router the scheme arrives as X-Forwarded-Proto; trust it only from
        # FORWARDED_ALLOW_IPS (uvicorn's convention; "*" where the router's address varies).
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        ws="websockets-sansio",
        ws_max_size=settings.max_message_bytes,  # Twilio's frames are a few hundred bytes
        ws_per_message_deflate=False,  # base64 audio barely compresses
        lifespan="off",
        log_config=None,  # voicebridge configures logging itself
        server_header=False,
    )


class BridgeServer(uvicorn.Server):
    """uvicorn's server with voicebridge owning SIGTERM and SIGINT.

    uvicorn re-raises a caught SIGTERM after shutting down, so the process would die "by
    signal" instead of exiting 0 as a PaaS expects after a clean stop.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        log.info("received %s: shutting down", signal.Signals(sig).name)
        if self.should_exit:
            self.force_exit = True  # a second signal: stop waiting for connections
        self.should_exit = True


async def serve(settings: Settings, *, fake_upstream: bool = False) -> None:
    """Serve until stopped; with ``fake_upstream`` a built-in fake Realtime server is used."""
    async with AsyncExitStack() as stack:
        if fake_upstream:
            from voicebridge.peers.fake_realtime import FakeRealtimeServer

            fake = await stack.enter_async_context(FakeRealtimeServer())
            settings = dataclasses.replace(settings, realtime_url=fake.url)
            log.warning("using the built-in fake Realtime server at %s: no real model", fake.url)
        else:
            settings.check_can_serve()
        log.info("settings: %s", settings.describe())
        app = create_app(settings)
        app.state.voicebridge.guard.warn_at_startup()
        server = BridgeServer(uvicorn_config(settings, app))
        await server.serve()
