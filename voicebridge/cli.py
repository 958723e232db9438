"""The ``voicebridge`` command: serve, demo, fake-realtime."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from voicebridge.config import RENAMED, Settings, load_environ
from voicebridge.errors import ConfigError
from voicebridge.logs import setup_logging

__all__ = ["main", "setup_logging"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebridge", description=__doc__)
    parser.add_argument(
        "--env-file",
        default=None,  # .env when present; a file named here must exist
        help="dotenv file to read (default: .env in the working directory, if there is one)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the Twilio webhook and the call WebSocket")
    serve.add_argument(
        "--fake-upstream", action="store_true", help="use the built-in fake Realtime server"
    )

    fake = sub.add_parser("fake-realtime", help="run the fake Realtime API server")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8765)
    fake.add_argument("--speed", type=float, default=5.0, help="audio pacing vs real time")

    demo = sub.add_parser("demo", help="a whole call offline: bridge, fake model, emulated caller")
    demo.add_argument("--call", default="interrupts", help="a packaged call name or a .jsonl path")
    demo.add_argument("--wav", default="demo-call.wav", help="stereo WAV: caller left, heard right")
    demo.add_argument("--network-ms", type=float, default=60.0, help="one-way delay each way")

    from voicebridge.replay.command import add_replay_parser

    add_replay_parser(sub)
    from voicebridge.doctor import add_doctor_parser

    add_doctor_parser(sub)
    return parser


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when installed (uvicorn[standard] brings it), else asyncio's.

    ``asyncio.run`` would always use the stdlib loop, so uvicorn's own choice of uvloop never
    applies to a server it does not create; bench/RESULTS.md measures the difference (about a
    quarter less CPU per frame at 150 calls, and far lower tail latency).
    """
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "replay":  # a client: no server settings, no .env
        from voicebridge.replay.command import run_replay_command

        return run_replay_command(args)
    try:
        environ = load_environ(args.env_file)
    except ConfigError as exc:
        print(f"voicebridge: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "doctor":  # a configuration error is one of its failed checks
        from voicebridge.doctor import run_doctor

        return run_doctor(args, environ)
    try:
        settings = Settings.from_env(environ)
    except ConfigError as exc:
        print(f"voicebridge: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format, wire=settings.log_wire)
    for old in settings.deprecated_names:
        logging.getLogger("voicebridge").warning(
            "%s is deprecated: rename it %s (the old name is read until the next release)",
            old,
            RENAMED[old],
        )
    try:
        if args.command == "serve":
            from voicebridge.server.serve import serve

            with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
                runner.run(serve(settings, fake_upstream=args.fake_upstream))
        elif args.command == "fake-realtime":
            from voicebridge.fake_realtime.server import FakeRealtimeOptions, run_fake_realtime

            options = FakeRealtimeOptions(speed=args.speed)
            asyncio.run(run_fake_realtime(args.host, args.port, options))
        elif args.command == "demo":
            from voicebridge.demo import run_demo

            return asyncio.run(run_demo(settings, args.call, args.wav, args.network_ms))
    except ConfigError as exc:
        print(f"voicebridge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
