"""The HTTP edge: what a client may make the server hold before its request reaches the app.

uvicorn's own options cover part of it; the rest is a small subclass of its h11 protocol.
The subclass only sees plain HTTP: once ``/realtime`` upgrades, uvicorn hands the socket to
its WebSocket protocol, so no media frame ever passes through this module.

Each limit, its setting, and what enforces it:
- header section (request line + headers): HTTP_MAX_HEADER_BYTES; h11's
  ``max_incomplete_event_size``, so a header bomb is cut at that size, answered 431.
- one header line, the request line: HTTP_MAX_HEADER_LINE_BYTES, HTTP_MAX_REQUEST_LINE_BYTES;
  checked here on h11's parsed request (431, 414). h11 has no per-line cap.
- headers from accept (or from a keep-alive request's first byte): HTTP_HEADER_TIMEOUT_S;
  a deadline here (408, or a silent close when nothing came).
- the body once the headers are in: HTTP_BODY_TIMEOUT_S; a deadline here (408).
- idle between requests: HTTP_KEEP_ALIVE_TIMEOUT_S; uvicorn's ``timeout_keep_alive``.
- open connections: HTTP_MAX_CONNECTIONS, lowered to fit the descriptor limit; checked here as
  each is accepted. The soft descriptor limit is raised to the hard one (:func:`raise_fd_limit`).

Why h11 rather than httptools (uvicorn's default when installed): httptools has no limit on
the header section and joins the pieces of a header value by bytes concatenation (its
``parser.pyx``), so one unterminated 96 MiB header cost 9.4 s of CPU and held it in memory.
h11 parses in Python: about 27 us more than httptools per request (an 880-byte Twilio webhook,
28.7 vs 2.1 us on the bench machine), paid by webhooks, health checks and the one upgrade
request per call, never per frame.

What uvicorn lacks: a deadline for the request headers (its keep-alive timer starts only
after a first response, so a connection that sends nothing, or a byte every few seconds, is
held forever) and one for the body. Its ``limit_concurrency`` is checked only once a request's
headers are complete, so it never counts a connection that trickles them, and it answers 503
to the newcomer instead of shedding the idle one.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar, Literal

import h11
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ExceptionHandler
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from voicebridge.config import Settings

__all__ = [
    "EXCEPTION_HANDLERS",
    "EdgeLimits",
    "EdgeProtocol",
    "edge_protocol",
    "fd_limit",
    "raise_fd_limit",
]

log = logging.getLogger(__name__)

# Descriptors kept free of inbound connections: the listener, the event loop, stdio and log
# files (FD_RESERVE), plus each call's upstream socket and the replacement that overlaps it
# during a reconnect, and a recording file being written (FDS_PER_CALL x MAX_CALLS).
FD_RESERVE = 64
FDS_PER_CALL = 3
REPORT_INTERVAL_S = 60.0

_Phase = Literal["headers", "body", "app", "keep-alive", "done"]
_H11_REASONS = {431: "header section too large", 501: "transfer-encoding not supported"}


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    max_header_bytes: int
    max_header_line_bytes: int
    max_request_line_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int  # HTTP_MAX_CONNECTIONS, lowered to fit the descriptor limit

    @classmethod
    def from_settings(cls, settings: Settings, fds: int | None) -> EdgeLimits:
        return cls(
            max_header_bytes=settings.http_max_header_bytes,
            max_header_line_bytes=settings.http_max_header_line_bytes,
            max_request_line_bytes=settings.http_max_request_line_bytes,
            header_timeout_s=settings.http_header_timeout_s,
            body_timeout_s=settings.http_body_timeout_s,
            max_connections=connection_cap(settings, fds),
        )


def fd_limit() -> int | None:
    """The soft RLIMIT_NOFILE, or None where there is none to read (Windows, unlimited)."""
    if sys.platform == "win32":
        return None
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def connection_cap(settings: Settings, fds: int | None) -> int:
    """HTTP_MAX_CONNECTIONS, or fewer so that calls' upstream sockets always find a descriptor."""
    if fds is None:
        return settings.http_max_connections
    room = fds - FD_RESERVE - FDS_PER_CALL * settings.max_calls
    return max(1, min(settings.http_max_connections, room))


def raise_fd_limit(settings: Settings) -> None:
    """Raise the soft descriptor limit to the hard one and log the connection cap, once.

    The soft limit is often 1024 while the hard one is far higher; a server that holds a
    socket per call and per waiting client should use what it is allowed.
    """
    if sys.platform == "win32":
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. macOS: an unlimited hard limit
            log.warning("file descriptors: could not raise the soft limit %d: %s", soft, exc)
    fds = fd_limit()
    cap = connection_cap(settings, fds)
    log.info(
        "file descriptors: soft limit %s (was %s, hard %s); HTTP connections capped at %d%s",
        fds,
        soft,
        hard,
        cap,
        f" (HTTP_MAX_CONNECTIONS={settings.http_max_connections} does not fit)"
        if cap < settings.http_max_connections
        else "",
    )


class _Report:
    """Counts what the edge refused or closed; logs it at most once a minute.

    A flood of bad or slow clients must not become a flood of log lines.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.next_at = 0.0

    def add(self, what: str) -> None:
        self.counts[what] += 1
        now = time.monotonic()
        if now >= self.next_at:
            summary = ", ".join(f"{what}: {n}" for what, n in self.counts.most_common())
            log.info("HTTP edge, since the last report: %s", summary)
            self.counts.clear()
            self.next_at = now + REPORT_INTERVAL_S


def _refusal(status: int) -> bytes:
    phrase = HTTPStatus(status).phrase
    return (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(phrase)}\r\nconnection: close\r\n\r\n{phrase}"
    ).encode("ascii")


class _LimitedConnection(h11.Connection):
    """h11's server side (it caps the header section), plus the line caps.

    A protocol error is answered here through ``refuse`` and reported as NEED_DATA, so uvicorn
    neither starts the app nor logs a WARNING per bad request.
    """

    def __init__(self, limits: EdgeLimits, refuse: Callable[[int, str], None]) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self._limits = limits
        self._refuse = refuse

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint  # h11's: 431 (the section cap), 501 or 400
            self._refuse(status, _H11_REASONS.get(status, "malformed"))
            return h11.NEED_DATA
        if type(event) is h11.Request:
            # "METHOD SP target SP HTTP/1.1 CRLF" and "name: value CRLF" (RFC 9112 §3, §5)
            if len(event.method) + len(event.target) + 12 > self._limits.max_request_line_bytes:
                self._refuse(414, "request line too long")
                return h11.NEED_DATA
            longest = self._limits.max_header_line_bytes - 4
            if any(len(name) + len(value) > longest for name, value in event.headers):
                self._refuse(431, "header line too long")
                return h11.NEED_DATA
        return event


class EdgeProtocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines, line caps and a connection cap.

    A connection is in one phase at a time: ``headers`` (before a request is complete, or
    from accept: HTTP_HEADER_TIMEOUT_S), ``body`` (HTTP_BODY_TIMEOUT_S), ``app`` (the request
    is the app's, or the socket became a WebSocket: no deadline here), ``keep-alive`` (after
    a response: uvicorn's timer). Connections in ``headers`` or ``keep-alive`` wait for a
    request; at the cap, the one that has waited longest is closed to make room.
    """

    limits: ClassVar[EdgeLimits]
    waiting: ClassVar[dict[EdgeProtocol, None]]  # oldest first
    report: ClassVar[_Report]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn = _LimitedConnection(self.limits, self._refuse)
        self._phase: _Phase = "app"
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            self._close("refused at the connection cap")
            return
        self._enter("headers")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow("headers")

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timer
        self._follow("keep-alive")

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._enter("done")  # the WebSocket protocol owns the socket from here
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._enter("done")
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if not self.transport.is_closing():  # else refused here: h11 may be mid-request
            super().shutdown()

    def _follow(self, when_idle: _Phase) -> None:
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            self._enter(when_idle)
        elif state is h11.SEND_BODY:
            self._enter("body")
        else:
            self._enter("app")

    def _enter(self, phase: _Phase) -> None:
        if phase == self._phase or self._phase == "done":
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.waiting.pop(self, None)
        self._phase = phase
        if phase == "headers" or phase == "keep-alive":
            self.waiting[self] = None
        if phase == "headers":
            self._deadline = self.loop.call_later(self.limits.header_timeout_s, self._expired)
        elif phase == "body":
            self._deadline = self.loop.call_later(self.limits.body_timeout_s, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        if self._phase == "body":
            if self.cycle is not None and not self.cycle.response_started:
                self._refuse(408, "body timeout")
            else:
                self._close("body timeout")
        elif self.conn.trailing_data[0]:
            self._refuse(408, "header timeout")
        else:
            self._close("idle until the header timeout")

    def _make_room(self) -> bool:
        oldest = next(iter(self.waiting), None)
        if oldest is None:
            return False
        oldest._close("closed at the connection cap (waited longest)")
        return True

    def _refuse(self, status: int, reason: str) -> None:
        if not self.transport.is_closing():
            self.transport.write(_refusal(status))
        self._close(f"{status} {reason}")

    def _close(self, reason: str) -> None:
        self._enter("done")
        self.report.add(reason)
        self.transport.close()


def edge_protocol(settings: Settings) -> type[EdgeProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, with its own waiting list."""
    edge_limits = EdgeLimits.from_settings(settings, fd_limit())

    class Edge(EdgeProtocol):
        limits = edge_limits
        waiting = {}
        report = _Report()

    return Edge


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client left, or HTTP_BODY_TIMEOUT_S answered 408 and closed, before the body was
    # read: nobody to answer (uvicorn drops this response) and no server error to log.
    return Response(status_code=400)


# For Starlette(exception_handlers=...): without it, ClientDisconnect ends in an ERROR traceback.
EXCEPTION_HANDLERS: dict[Any, ExceptionHandler] = {ClientDisconnect: _client_gone}
