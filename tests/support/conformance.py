"""Checking traffic against the OpenAI SDK's GA Realtime event types."""

from __future__ import annotations

import openai.types.realtime as ort
import pydantic

from voicebridge.fake_realtime.server import FakeRealtimeServer, FakeSession

__all__ = ["CLIENT_EVENT", "SERVER_EVENT", "assert_events_valid", "assert_protocol_clean"]

CLIENT_EVENT = pydantic.TypeAdapter(ort.RealtimeClientEvent)
SERVER_EVENT = pydantic.TypeAdapter(ort.RealtimeServerEvent)


def assert_events_valid(sessions: list[FakeSession]) -> None:
    """Every event the fake sent (injected raw frames excepted) and received is GA-valid."""
    for session in sessions:
        for event in session.sent:
            SERVER_EVENT.validate_python(event)
        for event in session.received:
            CLIENT_EVENT.validate_python(event)


def assert_protocol_clean(fake: FakeRealtimeServer) -> None:
    """Every event of every session is GA-valid, and no beta header was sent."""
    assert_events_valid(fake.sessions)
    for session in fake.sessions:
        assert not any("beta" in h for h in session.headers if h.startswith("openai"))
