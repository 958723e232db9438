"""POST /calls on the virtual clock: a burst of 20 is started one call a second."""

from __future__ import annotations

import asyncio
import json

import httpx
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route

from voicebridge.config import Secret, Settings
from voicebridge.server.http_client import OutboundHttp
from voicebridge.server.outbound import Outbound

TOKEN = "outbound-api-token-0123456789"


def outbound(rate: float, created: list[float]) -> Outbound:
    def twilio(request: httpx.Request) -> httpx.Response:
        created.append(asyncio.get_running_loop().time())
        return httpx.Response(201, json={"sid": f"CA{len(created):032x}", "status": "queued"})

    async def has_room() -> bool:
        return True

    settings = Settings(
        public_url="https://voice.example.com",
        twilio_account_sid="AC" + "5" * 32,
        twilio_auth_token=Secret("twilio-auth-token"),
        api_token=Secret(TOKEN),
        outbound_caller_id="+14155550100",
        outbound_calls_per_s=rate,
    )
    http = OutboundHttp(httpx.MockTransport(twilio))
    return Outbound(settings, http, CollectorRegistry(), profiles=["default"], has_room=has_room)


async def burst(service: Outbound, count: int) -> list[int]:
    app = Starlette(routes=[Route("/calls", service.place, methods=["POST"])])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:

        async def one(n: int) -> int:
            answer = await client.post(
                "/calls",
                content=json.dumps({"to": f"+1415555{n:04d}"}),
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            return answer.status_code

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(n)) for n in range(count)]
    return [t.result() for t in tasks]


async def test_a_burst_of_twenty_is_started_one_a_second() -> None:
    """20 requests at once: all answered 202, Twilio asked at 0, 1, … 19 s, never closer."""
    created: list[float] = []
    service = outbound(1.0, created)
    t0 = asyncio.get_running_loop().time()
    statuses = await burst(service, 20)
    assert statuses == [202] * 20
    starts = sorted(round(t - t0, 3) for t in created)
    assert starts == [float(n) for n in range(20)]


async def test_a_backlog_past_thirty_seconds_is_told_to_retry() -> None:
    """At one call every 2 s, the 17th request of a burst would wait over 30 s: a 429."""
    created: list[float] = []
    statuses = await burst(outbound(0.5, created), 20)
    assert statuses.count(202) == 16 and statuses.count(429) == 4
    assert len(created) == 16
