"""``voicebridge demo --business``: the demo call with a business behind the bridge.

The offline backend serves the table lookup and collects call events on loopback; the
bridge gets a ``TOOLS_FILE`` for it, a fresh ``SIGNING_SECRET`` and ``CALL_EVENTS_URL``; the
fake model calls ``check_table`` on the caller's first turn.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from voicebridge.business_sim.backend import TOOLS_TOML, BusinessBackend, serving
from voicebridge.config import Secret, Settings
from voicebridge.fake_realtime.session import FakeRealtimeOptions

__all__ = ["ARGUMENTS", "business_setup", "business_summary"]

ARGUMENTS = '{"party_size": 4, "time": "19:30"}'


@contextlib.asynccontextmanager
async def business_setup(
    settings: Settings,
) -> AsyncIterator[tuple[Settings, FakeRealtimeOptions, BusinessBackend]]:
    """The backend serving, and the settings and fake-model options that use it."""
    secret = secrets.token_urlsafe(32)
    backend = BusinessBackend(secret)
    with tempfile.TemporaryDirectory(prefix="voicebridge-demo-") as folder:
        async with serving(backend) as url:
            tools = Path(folder) / "tools.toml"
            tools.write_text(TOOLS_TOML.format(url=url, timeout_s=4))
            settings = dataclasses.replace(
                settings,
                tools_file=str(tools),
                signing_secret=Secret(secret),
                call_events_url=url + "/events",
            )
            options = FakeRealtimeOptions(tool_call=("check_table", ARGUMENTS), tool_call_turn=1)
            yield settings, options, backend


def business_summary(backend: BusinessBackend) -> list[str]:
    """What the backend saw: the tool requests and the call events."""
    lines = []
    for request in backend.tool_requests:
        call = request["call"]
        lines.append(
            f"backend: {request['tool']}({json.dumps(request['arguments'])}) for caller "
            f"{call['caller']} (call {call['call_sid']}), signature verified"
        )
    for event in backend.events:
        detail = ""
        if event["type"] == "call.ended":
            detail = f": {event['outcome']}, {event['turns']} turns in the transcript"
        lines.append(f"backend: event {event['type']}{detail}")
    if backend.bad_signatures:
        lines.append(f"backend: {backend.bad_signatures} requests with a bad signature refused")
    return lines
