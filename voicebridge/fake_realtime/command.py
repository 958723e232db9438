"""The ``voicebridge fake-realtime`` command: the fake Realtime API server on its own."""

from __future__ import annotations

import argparse
import asyncio

from voicebridge.fake_realtime.server import FakeRealtimeOptions, run_fake_realtime
from voicebridge.startup import configure

__all__ = ["NAME", "add_parser", "run"]

NAME = "fake-realtime"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(NAME, help="run the fake Realtime API server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--speed", type=float, default=5.0, help="audio pacing vs real time")


def run(args: argparse.Namespace) -> int:
    configure(args.env_file)  # for logging, set up as `serve` sets it up
    options = FakeRealtimeOptions(speed=args.speed)
    asyncio.run(run_fake_realtime(args.host, args.port, options))
    return 0
