"""A small business backend for tests and ``voicebridge demo``: a restaurant's table lookup
(an HTTP tool) and a collector of call events, both checking ``X-Voicebridge-Signature``.

It is a Starlette app: the end-to-end tests and the demo serve it under uvicorn on
loopback (:func:`serving`); the shell's tests reach it in memory through
``httpx.ASGITransport``, on their virtual clock. ``hang_s``, ``tool_status`` and
``events_down`` play a backend that is slow, failing or down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voicebridge.core.signing import SIGNATURE_HEADER, verify

__all__ = ["TOOLS_TOML", "BusinessBackend", "serving"]

# The tool as an operator declares it (TOOLS_FILE), its URL filled in by the caller.
TOOLS_TOML = """\
[tools.check_table]
url = "{url}/tools/check_table"
description = "Check whether a table is free at the restaurant for a party at a time."
timeout_s = {timeout_s}
parameters = '''
{{"type": "object",
  "properties": {{
    "party_size": {{"type": "integer", "minimum": 1, "maximum": 12}},
    "time": {{"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"}}
  }},
  "required": ["party_size", "time"],
  "additionalProperties": false}}
'''
"""


@dataclass
class BusinessBackend:
    """The backend's state: what it received, and how it misbehaves."""

    secret: str
    hang_s: float = 0.0  # the tool answers this late
    tool_status: int = 200
    events_down: bool = False  # the events endpoint answers 503
    tool_requests: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    event_attempts: int = 0
    bad_signatures: int = 0

    def _signed(self, request: Request, body: bytes) -> bool:
        ok = verify(self.secret, request.headers.get(SIGNATURE_HEADER, ""), body, time.time())
        self.bad_signatures += not ok
        return ok

    async def check_table(self, request: Request) -> Response:
        body = await request.body()
        if not self._signed(request, body):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        payload = json.loads(body)
        self.tool_requests.append(payload)
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        if self.tool_status != 200:
            return JSONResponse({"error": "unavailable"}, status_code=self.tool_status)
        args = payload["arguments"]
        free = args["party_size"] <= 6  # the restaurant seats parties of up to six
        answer = {"available": free, "time": args["time"], "party_size": args["party_size"]}
        if not free:
            answer["alternative"] = "two tables at 21:30"
        return JSONResponse(answer)

    async def receive_event(self, request: Request) -> Response:
        body = await request.body()
        self.event_attempts += 1
        if self.events_down:
            return Response(status_code=503)
        if not self._signed(request, body):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        event = json.loads(body)
        if all(e["id"] != event["id"] for e in self.events):  # retries are de-duplicated
            self.events.append(event)
        return Response(status_code=204)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/tools/check_table", self.check_table, methods=["POST"]),
                Route("/events", self.receive_event, methods=["POST"]),
            ]
        )


@contextlib.asynccontextmanager
async def serving(backend: BusinessBackend) -> AsyncIterator[str]:
    """Serve ``backend`` on a free loopback port; yields its base URL."""
    config = uvicorn.Config(backend.app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="business-backend")
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
