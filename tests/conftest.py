from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import running_fake
from voicebridge.config import Settings
from voicebridge.fake_realtime.server import FakeRealtimeOptions, FakeRealtimeServer

MS = 0.001  # seconds


@pytest.fixture
def fake() -> Iterator[FakeRealtimeServer]:
    with running_fake(FakeRealtimeOptions(speed=10.0, response_delay_ms=50)) as (server, _):
        yield server


@pytest.fixture
def settings(fake: FakeRealtimeServer) -> Settings:
    return Settings(
        realtime_url=fake.url,
        start_timeout_s=5.0,
        upstream_connect_timeout_s=3.0,
        # The emulator plays calls faster than real time (speed=8): no pacing of caller audio
        # here; tests/e2e/test_hostile_clients.py checks it at the default.
        caller_burst_ms=0,
    )
