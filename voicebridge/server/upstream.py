"""The Realtime API connection: opening it (GA: no ``OpenAI-Beta`` header), and what a call
sees of it.

A call talks to an :class:`UpstreamConnection` obtained from an injected
:data:`ConnectUpstream` callable (httpcore's ``network_backend`` shape), so the shell runs on
in-memory connections in tests. :func:`connect_upstream` is the production one:
:func:`open_upstream`'s retries, then :class:`WebsocketsUpstream`, the one place where
websockets' exceptions become :class:`UpstreamClosed`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.protocol import State

from voicebridge import __version__
from voicebridge.config import Settings
from voicebridge.errors import UpstreamClosed, UpstreamError
from voicebridge.logs import redact

__all__ = [
    "DIRECT_SEND_MAX",
    "ConnectUpstream",
    "UpstreamClosed",
    "UpstreamConnection",
    "WebsocketsUpstream",
    "close_upstream",
    "connect_upstream",
    "open_upstream",
    "upstream_headers",
]

log = logging.getLogger(__name__)

# Closing must not hold a call's cleanup: the closing handshake gets this long, then the
# TCP connection is dropped.
CLOSE_TIMEOUT = 0.5
# Worth another try within the deadline: rate limits, server trouble, slow handshakes.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 1.0
# A message written at once (``can_send_now``) is at most this long: far below the write
# limit (32 KiB) past which websockets' send waits to drain. A μ-law frame's append is ~250
# bytes, a 24 kHz PCM one ~1.3 KB.
DIRECT_SEND_MAX = 4096


class UpstreamConnection(Protocol):
    """An open Realtime connection, as a call uses it."""

    async def send(self, text: str) -> None:
        """Raises ``UpstreamClosed`` once the connection is closing or closed."""
        ...

    async def recv(self) -> str | bytes:
        """The next server event; raises ``UpstreamClosed`` when the connection ends."""
        ...

    def can_send_now(self, size: int) -> bool:
        """Whether ``send`` of a ``size``-character message would return without waiting."""
        ...

    async def close(self) -> None:
        """Close within about a second whatever the peer does; never raises."""
        ...


# Opens a connection within a deadline in seconds; raises UpstreamError.
ConnectUpstream = Callable[[Settings, float], Awaitable[UpstreamConnection]]


def upstream_headers(settings: Settings) -> dict[str, str]:
    """Authentication headers: ``Authorization: Bearer`` (OpenAI, Azure Entra) or ``api-key``."""
    key = settings.openai_api_key.reveal()
    if not key:
        return {}
    if settings.realtime_auth == "api-key":
        return {"api-key": key}
    return {"Authorization": f"Bearer {key}"}


async def open_upstream(
    settings: Settings, deadline: float | None = None, rng: random.Random | None = None
) -> ClientConnection:
    """Connect within ``deadline`` seconds (the connect timeout by default).

    Refusals worth retrying (429, 5xx, a handshake that hangs, a refused connection) are
    retried with exponential backoff and jitter until the deadline; 401 and 403 are not,
    they mean the key is wrong.

    Raises:
        UpstreamError: refused, unreachable or too slow; the message never holds the key.
    """
    budget = deadline if deadline is not None else settings.upstream_connect_timeout_s
    rng = rng or random.Random()
    backoff = FIRST_BACKOFF
    attempts = 0
    last = "no attempt"
    loop = asyncio.get_running_loop()
    ends = loop.time() + budget
    try:
        async with asyncio.timeout(budget):
            while True:
                attempts += 1
                # A hanging handshake is abandoned and retried, but a slow one that would
                # finish in time gets most of what is left.
                attempt_timeout = max((ends - loop.time()) * 0.7, 0.5)
                try:
                    return await connect(
                        settings.upstream_url(),
                        additional_headers=upstream_headers(settings),
                        user_agent_header=f"voicebridge/{__version__}",
                        # As the official SDK: server events (a full session) can be large.
                        max_size=None,
                        # Base64 audio barely compresses; deflate would only cost CPU.
                        compression=None,
                        open_timeout=attempt_timeout,
                        close_timeout=CLOSE_TIMEOUT,
                        # An upstream that stops reading stops answering pings too.
                        ping_interval=settings.upstream_stall_timeout_s / 2,
                        ping_timeout=settings.upstream_stall_timeout_s / 2,
                        proxy=None,
                        **_tls(settings),
                    )
                except InvalidStatus as exc:
                    status = exc.response.status_code
                    if status in (401, 403):
                        raise UpstreamError(
                            f"the Realtime API refused our credentials (HTTP {status}): check "
                            "OPENAI_API_KEY and REALTIME_AUTH",
                            status=status,
                            config_error=True,
                        ) from None
                    if status not in RETRY_STATUSES:
                        raise UpstreamError(
                            f"the Realtime API refused the connection: HTTP {status}",
                            status=status,
                        ) from None
                    last = f"HTTP {status}"
                except (OSError, WebSocketException, TimeoutError) as exc:
                    # InvalidURI quotes the URL, which may carry a key in its query.
                    text = redact(str(exc), settings.secret_values())
                    last = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
                log.info("upstream connect attempt %d failed (%s); retrying", attempts, last)
                await asyncio.sleep(backoff * (0.5 + rng.random()))
                backoff = min(backoff * 2, MAX_BACKOFF)
    except TimeoutError:
        raise UpstreamError(
            f"no connection to the Realtime API within {budget:g} s "
            f"({attempts} attempts, last: {last})"
        ) from None


async def close_upstream(conn: ClientConnection) -> None:
    """Close within about a second whatever the peer does; never raises."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT * 2):
            await conn.close()
    except (TimeoutError, OSError, WebSocketException):
        conn.transport.abort()


def _closed(exc: ConnectionClosed) -> UpstreamClosed:
    """The one mapping of websockets' close exceptions."""
    frame = exc.rcvd
    return UpstreamClosed(str(exc), frame.code if frame else None, frame.reason if frame else "")


class WebsocketsUpstream:
    """:class:`UpstreamConnection` over a websockets ``ClientConnection``."""

    def __init__(self, conn: ClientConnection) -> None:
        self._conn = conn

    async def send(self, text: str) -> None:
        try:
            await self._conn.send(text)
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    async def recv(self) -> str | bytes:
        try:
            return await self._conn.recv()
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    def can_send_now(self, size: int) -> bool:
        # Open (a closing socket makes send wait for the close), not paused by flow control
        # (e.g. TLS's own buffer full), an empty send buffer, and far under the write limit.
        conn = self._conn
        return (
            size <= DIRECT_SEND_MAX
            and conn.state is State.OPEN
            and not conn.transport.get_write_buffer_size()
            and not getattr(conn, "paused", True)
        )

    async def close(self) -> None:
        await close_upstream(self._conn)


def _tls(settings: Settings) -> dict[str, Any]:
    """``ssl=`` for a wss:// upstream whose CAs REALTIME_CA_FILE adds to the system's."""
    if not settings.realtime_ca_file or not settings.realtime_url.startswith("wss://"):
        return {}  # websockets' default context (the system's CAs), or plain ws://
    return {"ssl": _ca_context(settings.realtime_ca_file)}


@functools.cache
def _ca_context(ca_file: str) -> ssl.SSLContext:
    # Built once: loading the system's CAs takes milliseconds, too long for every connect.
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=ca_file)
    return context


async def connect_upstream(settings: Settings, deadline: float) -> UpstreamConnection:
    """The production :data:`ConnectUpstream`: :func:`open_upstream` over websockets."""
    return WebsocketsUpstream(await open_upstream(settings, deadline))
