"""The one HTTP client for everything voicebridge sends out: Twilio's REST API, HTTP tools,
call events.

One ``httpx.AsyncClient`` per app, made on first use in the serving loop, so its connection
pool is shared (a tool called every turn reuses its TLS connection) and bounded. Every
request carries a timeout; httpx's exceptions are mapped here, once, to
:class:`OutboundError`, so callers never import httpx. Tests pass a ``transport``
(``httpx.MockTransport``, or an ``httpx.ASGITransport`` serving the offline business
backend in memory, on the test's own clock).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from voicebridge import __version__
from voicebridge.errors import OutboundError

__all__ = ["Answer", "OutboundError", "OutboundHttp"]

log = logging.getLogger(__name__)
# httpx logs every request at INFO, URL and all (a query may hold a key): our own lines say
# what matters, without secrets.
logging.getLogger("httpx").setLevel(logging.WARNING)

CONNECT_TIMEOUT_S = 3.0
DEFAULT_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 100  # across every host: tools, events and Twilio together
MAX_KEEPALIVE = 20
MAX_ANSWER_BYTES = 64 * 1024  # a tool's result goes into the model's context: keep it small
CLOSE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class OutboundHttp:
    """A pooled async HTTP client, opened lazily and closed with the app."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _get(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                timeout=httpx.Timeout(DEFAULT_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                limits=httpx.Limits(
                    max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE
                ),
                headers={"User-Agent": f"voicebridge/{__version__}"},
                follow_redirects=False,  # a signed request is for the URL configured, only
            )
        return self._client

    async def post(
        self,
        url: str,
        *,
        content: bytes,
        headers: Mapping[str, str],
        timeout_s: float,
        auth: tuple[str, str] | None = None,
        max_bytes: int = MAX_ANSWER_BYTES,
    ) -> Answer:
        """POST ``content``; the whole exchange, connecting included, within ``timeout_s``.

        Raises:
            OutboundError: no answer in time, unreachable, or an answer over ``max_bytes``.
        """
        client = self._get()
        try:
            # httpx's timeouts are per phase (connect, each read); the call is bounded whole.
            async with asyncio.timeout(timeout_s):
                async with client.stream(
                    "POST",
                    url,
                    content=content,
                    headers=dict(headers),
                    auth=auth,
                    timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S)),
                ) as response:
                    body = b""
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            raise OutboundError("too_big", f"answer over {max_bytes} bytes")
                    return Answer(
                        response.status_code, body, response.headers.get("content-type", "")
                    )
        except TimeoutError:
            raise OutboundError("timeout", f"no answer within {timeout_s:g} s") from None
        except httpx.TimeoutException:
            raise OutboundError("timeout", f"no answer within {timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise OutboundError("unreachable", type(exc).__name__ + _detail(exc)) from None

    async def aclose(self) -> None:
        """Close the pool (the app's shutdown); a later request opens a new one."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await client.aclose()
        except TimeoutError:
            log.warning("outbound HTTP connections not closed within %g s", CLOSE_TIMEOUT_S)


def _detail(exc: httpx.HTTPError) -> str:
    text = str(exc)[:120]
    return f" ({text})" if text else ""
