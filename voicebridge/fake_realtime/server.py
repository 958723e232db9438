"""A loopback stand-in for ``wss://api.openai.com/v1/realtime`` speaking the GA protocol.

It lets the whole project run and be tested offline: the handshake checks (path, API key, the
retired ``OpenAI-Beta`` header), server VAD over the appended audio, and responses that speak
packaged speech clips faster than real time. It also does ``idle_timeout_ms`` re-prompts,
placeholder input transcription, per-field ``session.update`` validation, one scripted
function call (``tool_call``) and failed / incomplete responses (``FakeRealtimeOptions``).
Upstream faults, for tests, all off by default: refused (``refuse_handshakes``) or slow
(``accept_delay_ms``) handshakes, connections closed mid-call or before the session is
confirmed (``close_*``), connections that stall (``stall_after_ms``) and raw garbage sent
to the client (``inject``); ``fault_sessions`` picks which sessions get them.
Every connection is recorded in a ``FakeSession`` for tests to inspect afterwards. Protocol
reference: PROTOCOLS.md section B. For the capacity benchmark (``bench/``) only, off by
default: ``keep_records=False`` and ``bench_arrivals`` (see ``fake_bench``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from http import HTTPStatus
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .bench import SINK_KINDS, Arrivals, frame_key
from .connection import FakeConnection
from .session import FakeItem, FakeRealtimeOptions, FakeSession

__all__ = [
    "FakeItem",
    "FakeRealtimeOptions",
    "FakeRealtimeServer",
    "FakeSession",
    "run_fake_realtime",
]

log = logging.getLogger(__name__)

REALTIME_PATH = "/v1/realtime"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # input_audio_buffer.append may carry up to 15 MiB (B.4)
CLOSE_TIMEOUT_S = 0.5  # keeps close() well under a second even if a client never answers


class FakeRealtimeServer:
    """The fake upstream; ``async with FakeRealtimeServer(options) as fake: fake.url``."""

    def __init__(self, options: FakeRealtimeOptions = FakeRealtimeOptions()) -> None:  # noqa: B008
        # (a frozen dataclass: sharing the default instance is safe)
        self.options = options
        self.sessions: list[FakeSession] = []
        self.connections_total = 0  # handshakes accepted
        self.active = 0  # connections currently open
        self.handshake_attempts = 0  # opening handshakes received, whatever their outcome
        self.handshakes_refused = 0  # by the refuse_handshakes fault
        # (time.monotonic() on arrival, the refuse_handshakes status or None), per attempt.
        self.handshake_log: list[tuple[float, int | None]] = []
        # Bench only (options.bench_arrivals): every caller frame's arrival, see fake_bench.
        self.arrivals = Arrivals()
        self._server: Server | None = None
        self._host = "127.0.0.1"
        self._scheme = "ws"
        self._closing = asyncio.Event()

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: ssl.SSLContext | None = None
    ) -> None:
        """Listen on ``host:port`` (0 picks a free port); ``tls``: wss:// as OpenAI serves."""
        if self._server is not None:
            raise RuntimeError("fake Realtime server already started")
        self._host = host
        self._scheme = "wss" if tls is not None else "ws"
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._process_request,
            max_size=MAX_MESSAGE_BYTES,
            compression=None,
            close_timeout=CLOSE_TIMEOUT_S,
            ssl=tls,
        )
        log.debug("fake Realtime listening on %s", self.url)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("fake Realtime server not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{self._scheme}://{host}:{self.port}{REALTIME_PATH}"

    async def close(self) -> None:
        """Close every connection (1001) and the listener; stalled connections are released."""
        if self._server is None:
            return
        self._closing.set()  # cuts any accept_delay_ms short
        self._server.close(close_connections=True)
        await self._server.wait_closed()

    async def __aenter__(self) -> FakeRealtimeServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        options = self.options  # tests may swap options between calls: one set per handshake
        attempt = self.handshake_attempts
        self.handshake_attempts += 1
        refusal = options.refusal(attempt)
        self.handshake_log.append((time.monotonic(), refusal))
        if options.accept_delay_ms > 0:
            try:
                async with asyncio.timeout(options.accept_delay_ms / 1000):
                    await self._closing.wait()
            except TimeoutError:
                pass
            else:
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Server closing\n")
        if urlsplit(request.path).path != REALTIME_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        key = options.api_key
        if key is not None and request.headers.get("Authorization") != f"Bearer {key}":
            body = {
                "error": {
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                    "message": "Incorrect API key provided.",
                    "param": None,
                }
            }
            return connection.respond(HTTPStatus.UNAUTHORIZED, json.dumps(body) + "\n")
        if refusal is not None:
            self.handshakes_refused += 1
            log.debug("fault: refusing handshake %d with HTTP %d", attempt, refusal)
            return connection.respond(refusal, json.dumps(_refusal_body(refusal)) + "\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        options = self.options  # before connections_total moves: tests swap options on it
        request = ws.request
        assert request is not None  # set once the handshake completed
        query = parse_qs(urlsplit(request.path).query)
        if options.bench_arrivals and query.get("bench"):
            await self._sink(ws, SINK_KINDS.get(query["bench"][0], "?"))
            return
        model = query.get("model", [None])[0]
        record = FakeSession(
            path=request.path,
            headers={name.lower(): value for name, value in request.headers.raw_items()},
            model=model,
            index=len(self.sessions),
        )
        self.sessions.append(record)
        self.connections_total += 1
        self.active += 1
        log.debug("fake Realtime: connection %d opened (model=%s)", self.connections_total, model)
        try:
            arrivals = self.arrivals if options.bench_arrivals else None
            await FakeConnection(
                ws, record, options, release=self._closing, arrivals=arrivals
            ).run()
        finally:
            self.active -= 1
            record.closed_at = time.monotonic()
            record.close_code = ws.close_code

    async def _sink(self, ws: ServerConnection, kind: str) -> None:
        """Bench only: note each frame's arrival; no session, nothing sent back."""
        arrivals = self.arrivals
        try:
            async for message in ws:
                at = time.monotonic()
                key = frame_key(message)
                if key is not None:
                    arrivals.add(key, at, kind)
        except ConnectionClosed:
            pass


def _refusal_body(status: int) -> dict[str, object]:
    """The JSON error body of a refused handshake, shaped like the real API's."""
    if status == 429:
        kind, code, message = "requests", "rate_limit_exceeded", "Rate limit reached."
    elif status >= 500:
        kind, code, message = "server_error", None, "The server is overloaded or not ready yet."
    else:
        kind, code, message = "invalid_request_error", None, HTTPStatus(status).phrase
    return {"error": {"type": kind, "code": code, "message": message, "param": None}}


async def run_fake_realtime(host: str, port: int, options: FakeRealtimeOptions) -> None:
    """Serve the fake until cancelled."""
    server = FakeRealtimeServer(options)
    await server.start(host, port)
    log.info("fake Realtime API listening on %s", server.url)
    try:
        await asyncio.Event().wait()  # until cancelled
    finally:
        await server.close()
