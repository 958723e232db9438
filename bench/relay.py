"""A bare reference relay: the practical limit of voicebridge's stack (bench only).

One uvicorn WebSocket endpoint, ``/realtime``, built exactly as voicebridge's: the same
``uvicorn.Config`` (``voicebridge.server.serve.uvicorn_config``: ``websockets-sansio``, the
same limits, no deflate), a Starlette ``WebSocketRoute``, and per connection one ``websockets``
client connection opened by voicebridge's own ``open_upstream`` (same options:
``compression=None``, pings, limits). Each text frame from the caller is forwarded to the
upstream as it is, and each upstream frame back to the caller; nothing else — no parsing, no
queues, no tokens. ``GET /metrics`` gives the frames forwarded each way.

Settings come from the environment like ``voicebridge serve`` (``HOST``, ``PORT``,
``REALTIME_URL``...). It runs on the event loop ``voicebridge serve`` runs on (uvloop when
installed), or with ``--loop asyncio`` on the stdlib's. Bounded: it stops by itself after
``--lifetime`` seconds, or on SIGTERM.

    REALTIME_URL='ws://127.0.0.1:8765/v1/realtime?bench=relay' PORT=8001 \\
        python bench/relay.py --lifetime 120
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from voicebridge.config import Settings
from voicebridge.errors import UpstreamError
from voicebridge.server.serve import event_loop_factory, uvicorn_config
from voicebridge.server.upstream import close_upstream, open_upstream


def relay_app(settings: Settings) -> Starlette:
    counts = {"up": 0, "down": 0, "calls": 0, "active": 0}

    async def relay(ws: WebSocket) -> None:
        await ws.accept()
        try:
            conn = await open_upstream(settings)
        except UpstreamError:
            await ws.close(1011)
            return
        counts["calls"] += 1
        counts["active"] += 1

        async def up() -> None:
            while True:
                message = await ws.receive()
                text = message.get("text")
                if message["type"] == "websocket.disconnect":
                    return
                if text is not None:
                    await conn.send(text)
                    counts["up"] += 1

        async def down() -> None:
            async for text in conn:
                await ws.send_text(text if isinstance(text, str) else text.decode())
                counts["down"] += 1

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            counts["active"] -= 1
            await close_upstream(conn)
            with contextlib.suppress(Exception):
                await ws.close()

    async def metrics(request: Request) -> Response:
        lines = [
            f"relay_frames_up_total {counts['up']}",
            f"relay_frames_down_total {counts['down']}",
            f"relay_calls_total {counts['calls']}",
            f"relay_active_calls {counts['active']}",
        ]
        return PlainTextResponse("\n".join(lines) + "\n")

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    return Starlette(
        routes=[
            WebSocketRoute("/realtime", relay),
            Route("/metrics", metrics),
            Route("/healthz", healthz),
        ]
    )


async def serve(settings: Settings, lifetime: float) -> None:
    server = uvicorn.Server(uvicorn_config(settings, relay_app(settings)))

    async def bound() -> None:
        await asyncio.sleep(lifetime)
        server.should_exit = True

    timer = asyncio.create_task(bound())
    try:
        await server.serve()
    finally:
        timer.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lifetime", type=float, default=300.0, metavar="S")
    parser.add_argument(
        "--loop",
        choices=("serve", "asyncio"),
        default="serve",
        help="serve: the loop `voicebridge serve` runs on (uvloop when installed); "
        "asyncio: the stdlib loop",
    )
    args = parser.parse_args()
    settings = Settings.from_env(os.environ)
    coro: Any = serve(settings, args.lifetime)
    factory = event_loop_factory() if args.loop == "serve" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(coro)


if __name__ == "__main__":
    main()
