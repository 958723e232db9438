"""`voicebridge doctor` as an operator runs it: a real bridge, the fake upstream, a subprocess.

The bridge has TWILIO_AUTH_TOKEN, PUBLIC_URL and a shared STREAM_TOKEN_SECRET and is
reached through --connect-to, as a TLS-terminating proxy would reach it; the fake upstream
requires the key. Each broken setup must fail (exit 1) with its own fix.
"""

from __future__ import annotations

import io
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.support.doctor import ACCOUNT, AUTH, KEY, PUBLIC, SECRET, doctor
from tests.support.servers import Bridge, running_bridge, running_fake
from voicebridge.config import Secret, Settings
from voicebridge.doctor.command import doctor as run_checks
from voicebridge.fake_realtime.server import FakeRealtimeOptions, FakeRealtimeServer

# Only what a process needs to run: none of the developer's own settings leak in.
STATUS = re.compile(r"^\[( ok |FAIL|warn)\] ", re.M)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeRealtimeServer]:
    with running_fake(FakeRealtimeOptions(api_key=KEY)) as (server, _):
        yield server


@pytest.fixture(scope="module")
def bridge(upstream: FakeRealtimeServer) -> Iterator[Bridge]:
    settings = Settings(
        realtime_url=upstream.url,
        openai_api_key=Secret(KEY),
        public_url=PUBLIC,
        twilio_auth_token=Secret(AUTH),
        twilio_account_sid=ACCOUNT,
        stream_token_secret=Secret(SECRET),
        stream_token_secret_generated=False,
    )
    with running_bridge(settings) as b:
        yield b


def statuses(out: str) -> list[str]:
    return STATUS.findall(out)


def fail_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("[FAIL]")]


@pytest.mark.slow
def test_a_good_setup_passes_and_prints_the_console_settings(
    bridge: Bridge, upstream: FakeRealtimeServer, tmp_path: Path
) -> None:
    """Every check ok, exit 0, the console block with the public host; the key never shown."""
    sessions = len(upstream.sessions)
    result = doctor(bridge, upstream, tmp_path)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert statuses(out) and set(statuses(out)) == {" ok "}, out
    # PUBLIC_URL, webhook, fallback, unsigned, stream, upstream, 3 secrets
    assert len(statuses(out)) == 9
    assert 'Stream url="wss://voice.example.com/realtime"' in out
    assert "[ ok ] stream wss://voice.example.com/realtime: " in out
    assert "A call comes in: Webhook, URL https://voice.example.com/twilio/stream, HTTP POST" in out
    assert "Primary handler fails: URL https://voice.example.com/twilio/fallback, HTTP POST" in out
    assert "never a wss:// URL" in out
    assert KEY not in out + result.stderr and AUTH not in out + result.stderr
    # The upstream got the key and the bridge's own session.update; the stream's call opened
    # one session through the service (tests/commands/test_doctor_stream.py).
    [session] = [s for s in upstream.sessions[sessions:] if len(s.received) == 1]
    assert session.headers["authorization"] == f"Bearer {KEY}"
    assert [e["type"] for e in session.received] == ["session.update"]
    assert len(upstream.sessions) - sessions == 2
    # The webhook's CallSid was the stream's call; the unsigned probe took no slot.
    assert any(r.call_sid.startswith("CAd0c7") for r in bridge.state.last_results)
    assert (
        bridge.state.guard.rejected["bad_signature"]
        + bridge.state.guard.rejected["missing_signature"]
        >= 1
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("public_url", "fix"),
    [
        ("wss://voice.example.com", "set PUBLIC_URL=https://voice.example.com — the https://"),
        ("http://example.com", "set PUBLIC_URL=https://example.com"),
    ],
)
def test_public_url_must_be_https(
    bridge: Bridge, upstream: FakeRealtimeServer, tmp_path: Path, public_url: str, fix: str
) -> None:
    """A wss:// or http:// PUBLIC_URL fails with the https:// value to set; the rest still runs."""
    result = doctor(bridge, upstream, tmp_path, PUBLIC_URL=public_url)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    [failed] = fail_lines(out)
    assert failed.startswith(f"[FAIL] PUBLIC_URL={public_url} ") and fix in failed
    assert "[ ok ] upstream" in out  # the settings minus PUBLIC_URL still reach the upstream
    # PUBLIC_URL's own scheme (what signatures are checked against): wss:// is https://.
    base = public_url.replace("wss://", "https://")
    assert f"A call comes in: Webhook, URL {base}/twilio/stream, HTTP POST" in out
    assert "once PUBLIC_URL is fixed" in out


@pytest.mark.slow
def test_wrong_key_is_refused(bridge: Bridge, upstream: FakeRealtimeServer, tmp_path: Path) -> None:
    """The upstream answers 401: the key is refused, and the fix names both settings."""
    result = doctor(bridge, upstream, tmp_path, OPENAI_API_KEY="sk-wrong-key-000000")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    [failed] = fail_lines(out)
    assert "the key is refused (HTTP 401)" in failed
    assert "check OPENAI_API_KEY / REALTIME_AUTH" in failed
    assert "sk-wrong-key-000000" not in out + result.stderr


@pytest.mark.slow
def test_no_key_for_openai(bridge: Bridge, upstream: FakeRealtimeServer, tmp_path: Path) -> None:
    """An empty key with OpenAI's URL is not even tried."""
    result = doctor(bridge, upstream, tmp_path, OPENAI_API_KEY=None, REALTIME_URL=None)
    assert result.returncode == 1
    [failed] = fail_lines(result.stdout)
    assert "OPENAI_API_KEY is empty" in failed and "set OPENAI_API_KEY" in failed


@pytest.mark.slow
def test_wrong_auth_token_is_a_403(
    bridge: Bridge, upstream: FakeRealtimeServer, tmp_path: Path
) -> None:
    """Signed with another Auth Token, the webhook is refused: the tokens differ."""
    result = doctor(bridge, upstream, tmp_path, TWILIO_AUTH_TOKEN="f" * 32)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    [failed] = fail_lines(out)
    assert "HTTP 403" in failed
    assert "TWILIO_AUTH_TOKEN differs between the service and this environment" in failed
    assert "[ ok ] upstream" in out


@pytest.mark.slow
def test_missing_account_sid(bridge: Bridge, upstream: FakeRealtimeServer, tmp_path: Path) -> None:
    """No TWILIO_ACCOUNT_SID is fine: calls end and transfer through the after-stream answer."""
    result = doctor(bridge, upstream, tmp_path, TWILIO_ACCOUNT_SID=None)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert fail_lines(out) == []
    assert (
        "[ ok ] TWILIO_ACCOUNT_SID is not set: calls end and transfer without the REST API" in out
    )


@pytest.mark.slow
def test_missing_secrets_and_a_bad_setting(
    bridge: Bridge, upstream: FakeRealtimeServer, tmp_path: Path
) -> None:
    """A setting that does not load is a failed check, not a crash; what can run, runs."""
    result = doctor(
        bridge,
        upstream,
        tmp_path,
        PORT="eighty",
        STREAM_TOKEN_SECRET=None,
        TWILIO_AUTH_TOKEN=None,
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    failed = fail_lines(out)
    assert any("the settings do not load: PORT='eighty'" in line for line in failed)
    assert any("several instances" in line for line in failed)
    assert any("signatures are not checked" in line for line in failed)
    # Unsigned, the bridge (which checks signatures) refuses the webhook: said plainly.
    assert any("TWILIO_AUTH_TOKEN is not set here" in line for line in failed)
    assert "A call comes in: Webhook, URL https://voice.example.com/twilio/stream" in out


@pytest.mark.slow
def test_unreachable_upstream(bridge: Bridge, upstream: FakeRealtimeServer, tmp_path: Path) -> None:
    """Nothing listens at REALTIME_URL: unreachable within --timeout, with what to check."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    result = doctor(
        bridge,
        upstream,
        tmp_path,
        "--timeout",
        "1",
        REALTIME_URL=f"ws://127.0.0.1:{port}/v1/realtime",
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    [failed] = fail_lines(out)
    assert f"upstream ws://127.0.0.1:{port}/v1/realtime?model=" in failed
    assert "unreachable" in failed and "check REALTIME_URL" in failed
    assert time.monotonic() - t0 < 15  # a subprocess under a loaded CI; the wait itself is 1 s


@pytest.mark.slow
def test_bad_arguments_exit_2(bridge: Bridge, upstream: FakeRealtimeServer, tmp_path: Path) -> None:
    result = doctor(bridge, upstream, tmp_path, "--connect-to", "nowhere")
    assert result.returncode == 2 and "HOST:PORT" in result.stderr


def upstream_lines(out: str) -> list[str]:
    return [
        line for line in out.splitlines() if STATUS.match(line) and line[7:].startswith("upstream")
    ]


@pytest.mark.parametrize("how", ["error_event", "close_4000"])
async def test_upstream_refusing_the_session_is_shown(how: str) -> None:
    """An `error` event, or the beta-shape close 4000, is shown with its code and a fix."""

    async def refuse(ws: ServerConnection) -> None:
        await ws.recv()  # the session.update
        if how == "error_event":
            error = {"type": "invalid_request_error", "code": "invalid_value", "param": "x.y"}
            await ws.send(json.dumps({"type": "error", "error": {**error, "message": "nope"}}))
        await ws.close(4000, "beta_api_shape_disabled")

    async with serve(refuse, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        out = io.StringIO()
        env = {"REALTIME_URL": f"ws://127.0.0.1:{port}/v1/realtime", "OPENAI_API_KEY": "k"}
        assert await run_checks(env, timeout=3, out=out) == 1
    [line] = upstream_lines(out.getvalue())
    assert line.startswith("[FAIL]")
    if how == "error_event":
        assert "error invalid_value (x.y): nope" in line
    else:
        assert "4000 beta_api_shape_disabled" in line and "GA Realtime API" in line


async def test_upstream_answering_another_format_fails() -> None:
    """session.updated with other audio formats than asked: a failed check naming both."""
    with running_fake(FakeRealtimeOptions(echo_output_format="audio/pcma")) as (fake, _):
        out = io.StringIO()
        env = {"REALTIME_URL": fake.url, "OPENAI_API_KEY": "k", "PUBLIC_URL": ""}
        assert await run_checks(env, timeout=3, out=out) == 1
    [line] = upstream_lines(out.getvalue())
    assert line.startswith("[FAIL]") and "audio/pcma" in line and "UPSTREAM_AUDIO" in line
