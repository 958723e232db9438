"""Opening the Realtime API connection (GA: no ``OpenAI-Beta`` header)."""

from __future__ import annotations

import asyncio
import logging
import random

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from voicebridge import __version__
from voicebridge.config import Settings
from voicebridge.errors import UpstreamError

__all__ = ["close_upstream", "open_upstream", "upstream_headers"]

log = logging.getLogger(__name__)

# Closing must not hold a call's cleanup: the closing handshake gets this long, then the
# TCP connection is dropped.
CLOSE_TIMEOUT = 0.5
# Worth another try within the deadline: rate limits, server trouble, slow handshakes.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 1.0


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
                    last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
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
