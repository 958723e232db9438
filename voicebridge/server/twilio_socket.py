"""The Media Streams socket as a call sees it: receive, send text, close; Starlette's behind it.

``Call`` talks to a :class:`TwilioSocket`, never to Starlette, so the shell runs on an
in-memory socket in tests. :class:`StarletteTwilioSocket` adapts Starlette's ``WebSocket``
and is the one place where Starlette's and the transport's exceptions become
:class:`TwilioClosed` (``_closed``, as httpcore's ``map_exceptions``).
"""

from __future__ import annotations

from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from voicebridge.errors import TwilioClosed

__all__ = ["StarletteTwilioSocket", "TwilioClosed", "TwilioSocket"]


class TwilioSocket(Protocol):
    """An accepted Media Streams WebSocket."""

    @property
    def closed(self) -> bool:
        """True once our side has closed it (nothing more can be sent)."""
        ...

    async def receive(self) -> str | bytes:
        """The next frame: text, or a binary frame (Twilio sends none).

        Raises:
            TwilioClosed: the socket closed; ``code`` 1009 for a message over the size limit.
        """
        ...

    async def send_text(self, text: str) -> None:
        """Raises ``TwilioClosed`` when the socket is gone."""
        ...

    async def close(self, code: int) -> None:
        """Close with ``code``; raises ``TwilioClosed`` when it was gone already."""
        ...


# What Starlette's WebSocket and the transport under it raise once the socket is gone.
_ERRORS = (WebSocketDisconnect, RuntimeError, OSError)


def _closed(exc: BaseException) -> TwilioClosed:
    """The one mapping of Starlette's and the transport's exceptions (try/except at each call
    site costs nothing per frame; a context manager would)."""
    code = exc.code if isinstance(exc, WebSocketDisconnect) else None
    return TwilioClosed(code, repr(exc))


class StarletteTwilioSocket:
    """:class:`TwilioSocket` over an accepted Starlette ``WebSocket``."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    @property
    def closed(self) -> bool:
        return self._ws.application_state is WebSocketState.DISCONNECTED

    async def receive(self) -> str | bytes:
        try:
            message = await self._ws.receive()
        except _ERRORS as exc:
            raise _closed(exc) from exc
        if message["type"] == "websocket.disconnect":
            raise TwilioClosed(message.get("code"))
        text: str | None = message.get("text")
        if text is not None:
            return text
        data: bytes | None = message.get("bytes")
        return data or b""

    async def send_text(self, text: str) -> None:
        try:
            await self._ws.send_text(text)
        except _ERRORS as exc:
            raise _closed(exc) from exc

    async def close(self, code: int) -> None:
        try:
            await self._ws.close(code)
        except _ERRORS as exc:
            raise _closed(exc) from exc
