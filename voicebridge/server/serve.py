"""Running the app under uvicorn, with voicebridge's own ``uvicorn.Server`` object."""

from __future__ import annotations

import dataclasses
import logging
from contextlib import AsyncExitStack

import uvicorn

from voicebridge.config import Settings
from voicebridge.server.app import create_app

__all__ = ["serve", "uvicorn_config"]

log = logging.getLogger(__name__)


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # Behind a PaaS router the scheme arrives as X-Forwarded-Proto; trust it only from
        # FORWARDED_ALLOW_IPS (uvicorn's convention; "*" where the router's address varies).
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # base64 audio barely compresses
        lifespan="off",
        log_config=None,  # voicebridge configures logging itself
        server_header=False,
    )


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
        server = uvicorn.Server(uvicorn_config(settings))
        await server.serve()
