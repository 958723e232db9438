"""The ``voicebridge fake-realtime`` command: the fake Realtime API server on its own."""

from __future__ import annotations

import argparse
import asyncio

from voicebridge.errors import ConfigError
from voicebridge.fake_realtime.server import FakeRealtimeOptions, run_fake_realtime
from voicebridge.startup import configure

__all__ = ["NAME", "add_parser", "run"]

NAME = "fake-realtime"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(NAME, help="run the fake Realtime API server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--speed", type=float, default=5.0, help="audio pacing vs real time")
    p.add_argument(
        "--tool-call",
        metavar="NAME=JSON",
        help="call this function with these arguments on the caller's turn, e.g. "
        'check_table=\'{"party_size": 4, "time": "19:30"}\' (when the session declares it)',
    )
    p.add_argument(
        "--tool-call-turn",
        type=int,
        default=0,
        metavar="N",
        help="only on the Nth caller turn (default: every turn's first response)",
    )


def run(args: argparse.Namespace) -> int:
    configure(args.env_file)  # for logging, set up as `serve` sets it up
    tool_call = None
    if args.tool_call:
        name, sep, arguments = args.tool_call.partition("=")
        if not sep:
            raise ConfigError(f"--tool-call {args.tool_call!r}: give NAME=JSON")
        tool_call = (name, arguments)
    try:
        options = FakeRealtimeOptions(
            speed=args.speed, tool_call=tool_call, tool_call_turn=args.tool_call_turn
        )
    except ValueError as exc:
        raise ConfigError(f"--tool-call {args.tool_call!r}: {exc}") from None
    asyncio.run(run_fake_realtime(args.host, args.port, options))
    return 0
