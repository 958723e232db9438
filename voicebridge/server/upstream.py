"""Opening the Realtime API connection (GA: no ``OpenAI-Beta`` header)."""

from __future__ import annotations

import asyncio
import logging

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from voicebridge import __version__
from voicebridge.config import Settings
from voicebridge.errors import UpstreamError

__all__ = ["close_upstream", "open_upstream"]

log = logging.getLogger(__name__)

# Closing must not hold a call's cleanup: the closing handshake gets this long, then the
# TCP connection is dropped.
CLOSE_TIMEOUT = 0.5


async def open_upstream(settings: Settings) -> ClientConnection:
    """Connect to ``settings.upstream_url()`` within the connect timeout.

    Raises:
        UpstreamError: refused, unreachable or too slow; the message never holds the key.
    """
    headers: dict[str, str] = {}
    if settings.openai_api_key:
        headers["Authorization"] = f"Bearer {settings.openai_api_key.reveal()}"
    try:
        async with asyncio.timeout(settings.upstream_connect_timeout):
            return await connect(
                settings.upstream_url(),
                additional_headers=headers,
                user_agent_header=f"voicebridge/{__version__}",
                # As the official SDK: server events (e.g. a full session) can be large.
                max_size=None,
                # Base64 audio barely compresses; deflate would only cost CPU per frame.
                compression=None,
                open_timeout=None,  # the asyncio.timeout above covers the whole open
                close_timeout=CLOSE_TIMEOUT,
                proxy=None,
            )
    except TimeoutError:
        raise UpstreamError(
            f"no connection to the Realtime API within {settings.upstream_connect_timeout:g} s"
        ) from None
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise UpstreamError(f"Realtime API refused the connection: HTTP {status}") from None
    except (OSError, WebSocketException) as exc:
        raise UpstreamError(f"cannot connect to the Realtime API: {exc}") from None


async def close_upstream(conn: ClientConnection) -> None:
    """Close within about a second whatever the peer does; never raises."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT * 2):
            await conn.close()
    except TimeoutError:
        conn.transport.abort()
    except (OSError, WebSocketException):
        conn.transport.abort()
