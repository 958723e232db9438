"""CPU per upstream frame over wss:// against ws://, on the bridge's side only (bench only).

The bridge's upstream leg in isolation: CONNS websockets connections (the bridge's client
options: no compression, uvloop) to a sink in another process, each sending one caller frame
(``input_audio_buffer.append`` of 20 ms of μ-law, as the bridge sends it) and reading one
model delta of the same size back, one after the other, FRAMES times. What is measured is
this process's CPU time (utime + stime) per frame sent and delta received, so another
process's load on the host barely moves it, unlike the full run's latencies.

    .venv/bin/python bench/tls_cost.py --frames 20000 --conns 50
"""

# ruff: noqa: T201  (a command-line tool: it prints)

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import ssl
import statistics
import tempfile
import time
from pathlib import Path

import uvloop
from tls import throwaway_certs  # bench/tls.py, beside this script
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

FRAME = json.dumps(
    {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\xff" * 160).decode()}
)


def _sink(port: int, pem: str | None, ready: multiprocessing.synchronize.Event) -> None:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        context = None
        if pem:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(pem)
        async with serve(echo, "127.0.0.1", port, ssl=context, compression=None):
            ready.set()
            await asyncio.Future()

    uvloop.run(main())


async def _measure(url: str, ca: str | None, conns: int, frames: int) -> float:
    context = ssl.create_default_context(cafile=ca) if ca else None
    each = frames // conns

    async def one() -> None:
        async with connect(url, ssl=context, compression=None, max_size=None) as ws:
            for _ in range(each):
                await ws.send(FRAME)
                await ws.recv()

    await one_warm(url, context)
    started = time.process_time()
    async with asyncio.TaskGroup() as tg:
        for _ in range(conns):
            tg.create_task(one())
    return (time.process_time() - started) * 1e6 / (each * conns)


async def one_warm(url: str, context: ssl.SSLContext | None) -> None:
    async with connect(url, ssl=context, compression=None) as ws:
        await ws.send(FRAME)
        await ws.recv()


def run(tls: bool, conns: int, frames: int, directory: Path) -> float:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ca, pem = throwaway_certs(directory) if tls else (None, None)
    ready = multiprocessing.get_context("spawn").Event()
    sink = multiprocessing.get_context("spawn").Process(
        target=_sink, args=(port, str(pem) if pem else None, ready), daemon=True
    )
    sink.start()
    try:
        ready.wait(10)
        url = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/"
        return uvloop.run(_measure(url, str(ca) if ca else None, conns, frames))
    finally:
        sink.terminate()
        sink.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="A B B A rounds")
    args = parser.parse_args()
    found: dict[str, list[float]] = {"ws": [], "wss": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            order = ("ws", "wss", "wss", "ws") if i % 2 == 0 else ("wss", "ws", "ws", "wss")
            for kind in order:
                us = run(kind == "wss", args.conns, args.frames, Path(tmp))
                found[kind].append(us)
                print(f"round {i + 1} {kind:3}: {us:6.1f} µs CPU per frame sent + delta received")
    plain, tls = statistics.median(found["ws"]), statistics.median(found["wss"])
    print(f"median: ws {plain:.1f} µs, wss {tls:.1f} µs: TLS adds {tls - plain:.1f} µs per frame")


if __name__ == "__main__":
    main()
