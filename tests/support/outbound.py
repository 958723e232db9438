"""A bridge with outbound calls on, beside the fake Twilio REST API that places them."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from tests.support.servers import Bridge, running_bridge
from voicebridge.config import Secret, Settings
from voicebridge.twilio_sim.callee import Callee
from voicebridge.twilio_sim.twilio_api import FakeTwilioApi
from voicebridge.twilio_sim.webhook_client import LocalProxy

__all__ = ["outbound", "post_call"]

AUTH_TOKEN = "twilio-auth-token-0123456789"
ACCOUNT = "AC" + "5" * 32
API_TOKEN = "outbound-api-token-0123456789"
PUBLIC = "https://voice.example.com"
CALLER_ID = "+14155550100"
CALLEE = "+14155550199"


@contextlib.asynccontextmanager
async def outbound(
    settings: Settings, callee: Callable[[str], Callee], **overrides: Any
) -> AsyncIterator[tuple[Bridge, FakeTwilioApi]]:
    api = FakeTwilioApi(callee, auth_token=AUTH_TOKEN, credentials={f"{ACCOUNT}:{AUTH_TOKEN}"})
    async with api.serving() as api_url:
        given: dict[str, Any] = {
            "twilio_auth_token": Secret(AUTH_TOKEN),
            "twilio_account_sid": ACCOUNT,
            "twilio_api_base": api_url,
            "public_url": PUBLIC,
            "api_token": Secret(API_TOKEN),
            "outbound_caller_id": CALLER_ID,
        }
        s = dataclasses.replace(settings, **{**given, **overrides})
        with running_bridge(s) as bridge:
            api.proxy = LocalProxy(bridge.url.removeprefix("http://"))
            yield bridge, api


async def post_call(
    bridge: Bridge, body: dict[str, Any], token: str | None = API_TOKEN
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as client:
        return await client.post(bridge.url + "/calls", json=body, headers=headers)
