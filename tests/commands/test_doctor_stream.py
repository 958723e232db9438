"""`voicebridge doctor` checks the stream path end to end, as Twilio would open it.

A real bridge (TWILIO_AUTH_TOKEN, PUBLIC_URL, a shared STREAM_TOKEN_SECRET) reached through
--connect-to as a TLS-terminating proxy would reach it, and the fake upstream that counts its
sessions. A set-up whose stream would fail must fail the check naming the setting to fix.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.doctor import AUTH, KEY, PUBLIC, SECRET, doctor
from tests.support.servers import Bridge, running_bridge, running_fake
from voicebridge.config import Secret, Settings
from voicebridge.doctor.command import doctor as run_checks
from voicebridge.doctor.report import Report
from voicebridge.doctor.stream import check_stream
from voicebridge.doctor.webhook import check_webhook
from voicebridge.fake_realtime.server import FakeRealtimeOptions, FakeRealtimeServer
from voicebridge.fake_realtime.session import FakeSession
from voicebridge.twilio_sim.webhook_client import LocalProxy


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeRealtimeServer]:
    options = FakeRealtimeOptions(api_key=KEY, speed=10.0, response_delay_ms=50)
    with running_fake(options) as (server, _):
        yield server


@pytest.fixture(scope="module")
def bridge(upstream: FakeRealtimeServer) -> Iterator[Bridge]:
    settings = Settings(
        realtime_url=upstream.url,
        openai_api_key=Secret(KEY),
        public_url=PUBLIC,
        twilio_auth_token=Secret(AUTH),
        stream_token_secret=Secret(SECRET),
        stream_token_secret_generated=False,
    )
    with running_bridge(settings) as b:
        yield b


def stream_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line[7:].startswith("stream ")]


def through_the_service(sessions: list[FakeSession]) -> list[FakeSession]:
    """The sessions a call opened (the doctor's own upstream check only updates the session)."""
    return [s for s in sessions if [e["type"] for e in s.received] != ["session.update"]]


@pytest.mark.slow
def test_a_good_setup_streams_one_call_through_the_service(
    bridge: Bridge, upstream: FakeRealtimeServer, tmp_path: Path
) -> None:
    """Signed upgrade, the token minted here accepted, the service's upstream answers the
    keypad digit, `stop` ends the call: ok, and exactly one upstream session was opened for
    it; the call ended as a hang-up, its slot freed."""
    before = len(upstream.sessions)
    result = doctor(bridge, upstream, tmp_path, TWILIO_ACCOUNT_SID=None)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    [line] = stream_lines(out)
    assert line.startswith("[ ok ] stream wss://voice.example.com/realtime: the upgrade and ")
    assert "minted with STREAM_TOKEN_SECRET here" in line and "after `stop`, closed 1000" in line
    assert "holds one call slot" not in out
    [session] = through_the_service(upstream.sessions[before:])
    assert session.headers["authorization"] == f"Bearer {KEY}"
    types = [e["type"] for e in session.received]
    assert types[0] == "session.update" and "response.create" in types
    [call] = [r for r in bridge.state.last_results if r.call_sid.startswith("CAd0c7")][-1:]
    assert (call.outcome, call.admitted) == ("caller_hangup", True)
    assert call.stats.dtmf == 1


@pytest.mark.slow
def test_a_stream_token_secret_the_service_does_not_share_fails(
    bridge: Bridge, upstream: FakeRealtimeServer, tmp_path: Path
) -> None:
    """The webhook passes, but the service refuses a token minted with another secret: the
    stream check fails naming STREAM_TOKEN_SECRET, before any upstream session."""
    before = len(upstream.sessions)
    result = doctor(
        bridge,
        upstream,
        tmp_path,
        TWILIO_ACCOUNT_SID=None,
        STREAM_TOKEN_SECRET="not-the-services-secret-42",
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    [line] = [ln for ln in out.splitlines() if ln.startswith("[FAIL]")]
    assert line.startswith("[FAIL] stream wss://voice.example.com/realtime: the service refused")
    assert "set the same STREAM_TOKEN_SECRET here and on every instance" in line
    assert "[ ok ] webhook POST" in out
    assert through_the_service(upstream.sessions[before:]) == []
    assert "holds one call slot on the service" in out


async def test_a_wrong_handshake_signature_fails_naming_the_auth_token(
    bridge: Bridge, upstream: FakeRealtimeServer
) -> None:
    """An upgrade signed with another Auth Token is refused (403): TWILIO_AUTH_TOKEN is named."""
    proxy = LocalProxy(bridge.url.removeprefix("http://"))
    out = io.StringIO()
    report = Report(out)
    target = await check_webhook(
        report,
        PUBLIC,
        auth_token=AUTH,
        account_sid="",
        proxy=proxy,
        timeout=5,
        failure_say="",
        busy_say="",
    )
    assert target is not None
    streamed = await check_stream(
        report,
        PUBLIC,
        target,
        auth_token="f" * 32,
        secret=SECRET,
        token_ttl=60.0,
        proxy=proxy,
        timeout=5,
    )
    assert not streamed
    [line] = [ln for ln in out.getvalue().splitlines() if ln.startswith("[FAIL]")]
    assert "refused the upgrade's X-Twilio-Signature (HTTP 403)" in line
    assert "set the same TWILIO_AUTH_TOKEN" in line
    assert bridge.state.guard.rejected["bad_signature"] >= 1


async def test_a_ws_stream_url_fails_naming_public_url(upstream: FakeRealtimeServer) -> None:
    """A service that would stream to ws:// (no PUBLIC_URL, the router's X-Forwarded-Proto
    not trusted) answers the failure TwiML: doctor names PUBLIC_URL and FORWARDED_ALLOW_IPS,
    and does not try the stream."""
    settings = Settings(
        realtime_url=upstream.url,
        openai_api_key=Secret(KEY),
        forwarded_allow_ips="10.9.8.7",  # not the proxy's address: its https is not trusted
    )
    with running_bridge(settings) as service:
        out = io.StringIO()
        env = {"PUBLIC_URL": PUBLIC, "REALTIME_URL": upstream.url, "OPENAI_API_KEY": KEY}
        connect_to = service.url.removeprefix("http://")
        assert await run_checks(env, connect_to=connect_to, timeout=5, out=out) == 1
    text = out.getvalue()
    [line] = [ln for ln in text.splitlines() if ln.startswith("[FAIL] webhook")]
    assert "the failure TwiML (FAILURE_SAY)" in line and "not wss://" in line
    assert f"set PUBLIC_URL={PUBLIC} on the service" in line and "FORWARDED_ALLOW_IPS" in line
    assert "the stream is not checked until the webhook answers with one" in text
    assert service.state.metrics.webhook_errors["insecure_stream_url"] == 1


async def test_console_urls_keep_public_urls_scheme() -> None:
    """PUBLIC_URL=http://…: the console block never turns it into https:// (the service
    checks signatures against the URL as configured); the stream would be ws://, said so."""
    out = io.StringIO()
    env = {"PUBLIC_URL": "http://voice.example.com", "REALTIME_URL": "ws://127.0.0.1:9/x"}
    await run_checks(env, timeout=1, out=out)
    console = out.getvalue().split("Twilio console", 1)[1]
    assert "https://" not in console.replace("serve PUBLIC_URL over https://", "")
    assert "URL http://voice.example.com/twilio/stream, HTTP POST" in console
    assert "Twilio opens ws://voice.example.com/realtime" in console
    assert "Twilio streams only to wss://" in console
