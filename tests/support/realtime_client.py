"""A Realtime API client for tests: speaks GA to the fake server over a real socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.support.audio import b64
from tests.support.conformance import CLIENT_EVENT
from voicebridge.fake_realtime.server import FakeRealtimeServer

__all__ = ["GA_PCMU", "Client", "open_client"]

GA_PCMU: dict[str, Any] = {
    "type": "realtime",
    "audio": {
        "input": {"format": {"type": "audio/pcmu"}},
        "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
    },
}


class Client:
    """A Realtime client on a real socket, with a bounded wait for each expected event."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.ws.close()

    async def send(self, event: dict[str, Any], *, check: bool = True) -> None:
        if check:  # the tests themselves must speak GA
            CLIENT_EVENT.validate_python(event)
        await self.ws.send(json.dumps(event))

    async def append(self, frames: list[bytes]) -> None:
        for frame in frames:
            await self.send({"type": "input_audio_buffer.append", "audio": b64(frame)})

    async def recv(self) -> dict[str, Any]:
        async with asyncio.timeout(3):
            event: dict[str, Any] = json.loads(await self.ws.recv())
        self.events.append(event)
        return event

    async def until(self, kind: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The next event of type ``kind`` and the events received before it."""
        before: list[dict[str, Any]] = []
        while (event := await self.recv())["type"] != kind:
            before.append(event)
        return event, before

    async def sync(self) -> list[dict[str, Any]]:
        """Everything the server sent before it processed a marker event sent now."""
        await self.send({"type": "response.cancel", "event_id": "sync"})
        before: list[dict[str, Any]] = []
        while (event := await self.recv())["type"] != "error" or event["error"][
            "event_id"
        ] != "sync":
            before.append(event)
        return before

    async def update(self, session: dict[str, Any]) -> dict[str, Any]:
        await self.send({"type": "session.update", "session": session})
        updated, _ = await self.until("session.updated")
        return updated


async def open_client(
    fake: FakeRealtimeServer, query: str = "?model=gpt-realtime-2.1", **kw: Any
) -> Client:
    """A client connected to ``fake``, past its ``session.created``."""
    client = Client(await connect(fake.url + query, **kw))
    created = await client.recv()
    assert created["type"] == "session.created"
    return client
