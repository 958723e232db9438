"""The built-in fake Realtime server, run for the capacity benchmark (bench only).

``voicebridge fake-realtime`` with the fake's bench options on: no per-event records (a long
load run would grow without bound), and every caller frame's arrival written to ``--arrivals``
as ``KIND KEY`` lines, and their ``time.monotonic()`` as float64 in ``FILE.bin``, once a
second (see ``voicebridge/fake_realtime/bench.py``).
Bounded: it stops by itself after ``--lifetime`` seconds, or on SIGTERM / SIGINT. With
``--tls-port`` and ``--tls-pem`` (certificate chain and key) it also serves wss:// there.

    python bench/fake.py --port 8765 --arrivals /tmp/arrivals.txt --lifetime 120
"""

# ruff: noqa: T201  (a command-line tool: it prints)

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
from pathlib import Path

from voicebridge.fake_realtime.server import FakeRealtimeOptions, FakeRealtimeServer


def _flush(servers: list[FakeRealtimeServer], out: Path) -> None:
    """Append the new arrivals: ``KIND KEY`` lines to OUT, their times (float64) to OUT.bin."""
    for server in servers:
        _flush_one(server, out)


def _flush_one(server: FakeRealtimeServer, out: Path) -> None:
    kinds, keys, times = server.arrivals.take()
    if keys:
        with out.open("a", encoding="ascii") as f:
            f.write("".join([f"{kind} {key}\n" for kind, key in zip(kinds, keys, strict=True)]))
        with out.with_suffix(".bin").open("ab") as b:
            times.tofile(b)


async def main(args: argparse.Namespace) -> None:
    options = FakeRealtimeOptions(speed=args.speed, keep_records=False, bench_arrivals=True)
    server = FakeRealtimeServer(options)
    servers = [server]
    args.arrivals.write_text("", encoding="ascii")
    args.arrivals.with_suffix(".bin").write_bytes(b"")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start(args.host, args.port)
    print(f"fake Realtime (bench) listening on {server.url}", flush=True)
    if args.tls_port:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_pem)
        servers.append(FakeRealtimeServer(options))
        await servers[1].start(args.host, args.tls_port, tls=tls)
        print(f"fake Realtime (bench) listening on {servers[1].url}", flush=True)
    deadline = loop.time() + args.lifetime
    try:
        while not stop.is_set() and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(1.0, max(0.0, deadline - loop.time()))):
                    await stop.wait()
            _flush(servers, args.arrivals)
    finally:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3.0):
                for each in servers:
                    await each.close()
        _flush(servers, args.arrivals)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--speed", type=float, default=5.0, help="model audio vs real time")
    parser.add_argument("--arrivals", type=Path, required=True, metavar="FILE")
    parser.add_argument("--lifetime", type=float, default=300.0, metavar="S")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--tls-port", type=int, default=0, help="also serve wss:// here")
    parser.add_argument("--tls-pem", type=Path, help="its certificate chain and key")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="fake: %(levelname)s %(message)s")
    if args.loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main(args))
    else:
        asyncio.run(main(args))
