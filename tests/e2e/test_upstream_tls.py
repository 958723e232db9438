"""A wss:// upstream (the fake, behind a throw-away CA): trusted through REALTIME_CA_FILE."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.support.recordings import trimmed
from tests.support.servers import LoopThread, running_bridge
from voicebridge.config import Settings
from voicebridge.fake_realtime.server import FakeRealtimeOptions, FakeRealtimeServer
from voicebridge.twilio_sim.emulator import place_call
from voicebridge.twilio_sim.recordings import packaged_call


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_fake(ca: trustme.CA) -> Iterator[FakeRealtimeServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    thread = LoopThread("fake-realtime-tls")
    fake = FakeRealtimeServer(FakeRealtimeOptions(speed=10.0, response_delay_ms=50))
    try:
        thread.run(fake.start("127.0.0.1", 0, tls=context))
        yield fake
    finally:
        try:
            thread.run(fake.close())
        finally:
            thread.stop()


async def test_a_call_over_tls_with_the_ca_file(
    tls_fake: FakeRealtimeServer, ca: trustme.CA, tmp_path: Path
) -> None:
    """REALTIME_CA_FILE names the CA: the call reaches the wss:// upstream and ends well."""
    assert tls_fake.url.startswith("wss://")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    settings = Settings(realtime_url=tls_fake.url, realtime_ca_file=str(ca_file))
    with running_bridge(settings) as bridge:
        report = await place_call(
            bridge.webhook, trimmed(packaged_call("books_a_table"), 2000), tail_ms=500
        )
    assert report.closed_by == "caller" and report.close_code == 1000
    assert tls_fake.connections_total == 1


async def test_an_untrusted_certificate_fails_the_call(tls_fake: FakeRealtimeServer) -> None:
    """Without the CA the certificate is refused: no session, the caller hears the apology."""
    settings = Settings(realtime_url=tls_fake.url, upstream_connect_timeout_s=1.0)
    with running_bridge(settings) as bridge:
        report = await place_call(bridge.webhook, trimmed(packaged_call("books_a_table"), 2000))
    assert report.closed_by == "server" and report.after_stream
    assert tls_fake.connections_total == 0
