"""The ``voicebridge serve`` command: the bridge under uvicorn, or beside a built-in fake model."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging

from voicebridge.config import Settings
from voicebridge.errors import ConfigError
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.server.serve import event_loop_factory, serve
from voicebridge.server.workers import run_workers
from voicebridge.startup import configure

__all__ = ["NAME", "add_parser", "run"]

NAME = "serve"

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(NAME, help="serve the Twilio webhook and the call WebSocket")
    p.add_argument(
        "--fake-upstream", action="store_true", help="use the built-in fake Realtime server"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes serving one port, each with its own event loop "
        "(default: WEB_CONCURRENCY, else 1)",
    )


async def _serve_with_fake(settings: Settings) -> None:
    async with FakeRealtimeServer() as fake:
        log.warning("using the built-in fake Realtime server at %s: no real model", fake.url)
        await serve(dataclasses.replace(settings, realtime_url=fake.url))


def run(args: argparse.Namespace) -> int:
    settings = configure(args.env_file)
    if args.workers is not None:
        if args.workers < 1:
            raise ConfigError(f"--workers {args.workers}: give 1 or more")
        settings = dataclasses.replace(settings, workers=args.workers)
        settings.validate()  # MAX_CALLS against the new count
    if settings.workers > 1:
        if args.fake_upstream:
            raise ConfigError(
                "--fake-upstream runs in one process: start `voicebridge fake-realtime` and "
                "point REALTIME_URL at it to serve it with --workers"
            )
        return run_workers(settings, settings.workers)
    main = _serve_with_fake(settings) if args.fake_upstream else serve(settings)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(main)
    return 0
