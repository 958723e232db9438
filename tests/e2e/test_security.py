"""Nobody but Twilio placing a call we answered reaches the upstream, through real sockets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.request
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.servers import Bridge, running_bridge
from tests.support.waiting import wait_until
from voicebridge.config import Secret, Settings
from voicebridge.core.admission import mint_token
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.emulator import EmulatedCall, place_call
from voicebridge.twilio_sim.recordings import packaged_call
from voicebridge.twilio_sim.webhook_client import LocalProxy, call_params, new_sid, parse_twiml

AUTH = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://voice.example.com"
SECRET = "a-shared-stream-token-secret-0123456789"


@pytest.fixture
def secure(settings: Settings) -> Settings:
    return Settings(
        **{
            **settings.__dict__,
            "twilio_auth_token": Secret(AUTH),
            "public_url": PUBLIC,
            "stream_token_secret": Secret(SECRET),
            "stream_token_secret_generated": False,
        }
    )


def post(bridge: Bridge, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    req = urllib.request.Request(
        bridge.url + path, data=body, headers={"Host": "voice.example.com", **headers}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def signed_form(url: str, params: dict[str, str], token: str = AUTH) -> dict[str, str]:
    return {**FORM, "X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


def params() -> dict[str, str]:
    return call_params(new_sid("CA"), new_sid("AC"), from_="+14155550123", to="+18005550100")


def test_reference_signatures_are_accepted(secure: Settings) -> None:
    """Signatures made by twilio's RequestValidator pass: form, port, GET, JSON body."""
    with running_bridge(secure) as bridge:
        p = params()
        url = PUBLIC + "/twilio/stream"
        status, body = post(bridge, "/twilio/stream", urlencode(p).encode(), signed_form(url, p))
        assert status == 200 and parse_twiml(body).stream_url == "wss://voice.example.com/realtime"
        # Twilio sometimes signs https URLs with the default port.
        p = params()
        status, _ = post(
            bridge,
            "/twilio/stream",
            urlencode(p).encode(),
            signed_form("https://voice.example.com:443/twilio/stream", p),
        )
        assert status == 200
        # GET: the parameters are in the signed URL.
        p = params()
        query_url = url + "?" + urlencode(p)
        sig = RequestValidator(AUTH).compute_signature(query_url, {})
        req = urllib.request.Request(
            bridge.url + "/twilio/stream?" + urlencode(p),
            headers={"Host": "voice.example.com", "X-Twilio-Signature": sig},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        # JSON body: bodySHA256 in the URL, no parameters appended.
        raw = json.dumps({"ErrorCode": "11200"}).encode()
        fallback = f"{PUBLIC}/twilio/fallback?bodySHA256={hashlib.sha256(raw).hexdigest()}"
        sig = RequestValidator(AUTH).compute_signature(fallback, {})
        assert RequestValidator(AUTH).validate(fallback, raw.decode(), sig)
        status, _ = post(
            bridge,
            "/twilio/fallback?" + fallback.split("?")[1],
            raw,
            {"Content-Type": "application/json", "X-Twilio-Signature": sig},
        )
        assert status == 200
        assert not bridge.state.guard.rejected


def test_public_url_with_a_port_is_signed_without_it(settings: Settings) -> None:
    """For HTTPS voice webhooks Twilio drops a non-default port before signing."""
    s = Settings(
        **{
            **settings.__dict__,
            "twilio_auth_token": Secret(AUTH),
            "public_url": "https://voice.example.com:8443",
        }
    )
    with running_bridge(s) as bridge:
        p = params()
        status, _ = post(
            bridge,
            "/twilio/stream",
            urlencode(p).encode(),
            signed_form("https://voice.example.com/twilio/stream", p),
        )
    assert status == 200


@pytest.mark.parametrize("tamper", ["value", "extra", "missing", "token", "path", "empty", "json"])
def test_tampered_requests_are_refused(secure: Settings, tamper: str) -> None:
    """Every altered or unsigned request gets 403 and reserves nothing."""
    p = params()
    url = PUBLIC + "/twilio/stream"
    headers = signed_form(url, p)
    body = urlencode(p).encode()
    path = "/twilio/stream"
    if tamper == "value":
        body = urlencode({**p, "From": "+19995550000"}).encode()
    elif tamper == "extra":
        body = urlencode({**p, "Evil": "1"}).encode()
    elif tamper == "missing":
        del headers["X-Twilio-Signature"]
    elif tamper == "token":
        headers = signed_form(url, p, token="f" * 32)
    elif tamper == "path":
        headers = signed_form(PUBLIC + "/other", p)
    elif tamper == "empty":
        headers["X-Twilio-Signature"] = ""
    elif tamper == "json":
        raw = b'{"ErrorCode": "11200"}'
        signed = f"{PUBLIC}/twilio/fallback?bodySHA256={hashlib.sha256(raw).hexdigest()}"
        headers = {
            "Content-Type": "application/json",
            "X-Twilio-Signature": RequestValidator(AUTH).compute_signature(signed, {}),
        }
        body, path = b'{"ErrorCode": "99999"}', "/twilio/fallback?" + signed.split("?")[1]
    with running_bridge(secure) as bridge:
        status, text = post(bridge, path, body, headers)
        assert status == 403 and "Stream" not in text
        assert sum(bridge.state.guard.rejected.values()) == 1
        assert bridge.state.guard.admission.load(time.monotonic()) == 0


async def test_signed_call_through_a_tls_proxy(fake: FakeRealtimeServer, secure: Settings) -> None:
    """A call signed like Twilio's, reaching us through a TLS-terminating proxy, works."""
    with running_bridge(secure) as bridge:
        proxy = LocalProxy(bridge.url.removeprefix("http://"))
        report = await place_call(
            PUBLIC + "/twilio/stream",
            packaged_call("books_a_table"),
            speed=8.0,
            auth_token=AUTH,
            proxy=proxy,
        )
    assert (
        report.twiml is not None and report.twiml.stream_url == "wss://voice.example.com/realtime"
    )
    assert report.closed_by == "caller" and report.violations == []
    assert fake.connections_total == 1 and fake.sessions[0].appended


def connect_public(bridge: Bridge, headers: dict[str, str], **kwargs: Any) -> connect:
    """Open wss://voice.example.com/realtime at the bridge: one Host header, as a proxy sends.

    (``additional_headers={"Host": ...}`` would add a second Host, which HTTP/1.1 servers
    must answer 400: RFC 9112 §3.2.)
    """
    port = int(bridge.url.rsplit(":", 1)[1])
    return connect(
        "ws://voice.example.com/realtime",
        host="127.0.0.1",
        port=port,
        additional_headers=headers,
        **kwargs,
    )


async def ws_refused(bridge: Bridge, headers: dict[str, str]) -> int:
    headers = {k: v for k, v in headers.items() if k != "Host"}
    with pytest.raises(InvalidStatus) as info:
        async with connect_public(bridge, headers, open_timeout=5):
            pass
    return info.value.response.status_code


@pytest.mark.parametrize(
    ("mode", "signature", "refused"),
    [
        ("require", None, True),
        ("require", "bad", True),
        ("require", "https", True),
        ("if-present", None, False),
        ("if-present", "bad", True),
        ("if-present", "https", True),
        ("off", None, False),
        ("off", "bad", False),
    ],
)
async def test_handshake_signature_modes(
    fake: FakeRealtimeServer, secure: Settings, mode: str, signature: str | None, refused: bool
) -> None:
    """TWILIO_STREAM_SIGNATURE: `require` refuses an upgrade without Twilio's signature over the
    wss:// URL before accept, `if-present` only a wrong one, `off` none; the stream token still
    keeps a stray socket from the upstream."""
    # PUBLIC_URL names the signed URL: no Host header needed.
    headers = {"X-Forwarded-Proto": "https"}
    if signature == "bad":
        headers["X-Twilio-Signature"] = "AAAA"
    elif signature == "https":  # signed over https://, not the wss:// URL Twilio connects to
        headers["X-Twilio-Signature"] = RequestValidator(AUTH).compute_signature(
            PUBLIC + "/realtime", {}
        )
    with running_bridge(replace(secure, twilio_stream_signature=mode)) as bridge:
        if refused:
            assert await ws_refused(bridge, headers) == 403
            assert bridge.state.calls_total == 0
        else:
            async with connect(bridge.ws_url, additional_headers=headers, open_timeout=5) as ws:
                await ws.send(CONNECTED)
                await ws.send(START_WITHOUT_TOKEN)
                await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 1008  # the stream token decides
            await wait_until(lambda: bridge.state.guard.rejected == {"missing_token": 1})
    assert fake.connections_total == 0


CONNECTED = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
START_WITHOUT_TOKEN = json.dumps(
    {
        "event": "start",
        "streamSid": "MZ1",
        "start": {"streamSid": "MZ1", "callSid": "CA1", "accountSid": "AC1", "tracks": ["inbound"]},
    }
)


async def test_handshake_signed_with_a_trailing_slash_is_accepted(secure: Settings) -> None:
    """Twilio's documented trailing-slash variant of the wss:// URL passes."""
    sig = RequestValidator(AUTH).compute_signature("wss://voice.example.com/realtime/", {})
    with running_bridge(secure) as bridge:
        async with connect_public(bridge, {"X-Twilio-Signature": sig}) as ws:
            await ws.send(
                json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            )
        assert not bridge.state.guard.rejected.get("bad_signature")


async def direct_call(
    bridge: Bridge, parameters: dict[str, str] | None, call_sid: str | None = None
) -> Any:
    call = EmulatedCall(
        bridge.ws_url,
        packaged_call("interrupts"),
        parameters=parameters,
        speed=8.0,
        call_sid=call_sid,
    )
    return await call.run(timeout=10)


@pytest.mark.parametrize("case", ["missing", "forged", "expired", "other_call", "malformed"])
async def test_bad_stream_tokens_never_reach_upstream(
    fake: FakeRealtimeServer, settings: Settings, case: str
) -> None:
    """Missing, forged, expired or misbound tokens close the socket; no upstream is opened."""
    s = Settings(
        **{
            **settings.__dict__,
            "stream_token_secret": Secret(SECRET),
            "stream_token_secret_generated": False,
        }
    )
    sid = new_sid("CA")
    tokens = {
        "missing": None,
        "forged": mint_token(b"not-the-secret-at-all-000000", sid, time.time(), 60),
        "expired": mint_token(SECRET.encode(), sid, time.time() - 120, 60),
        "other_call": mint_token(SECRET.encode(), new_sid("CA"), time.time(), 60),
        "malformed": "not-a-token",
    }
    token = tokens[case]
    with running_bridge(s) as bridge:
        report = await direct_call(bridge, {"StreamToken": token} if token else None, sid)
        reason = {
            "missing": "missing_token",
            "forged": "forged_token",
            "expired": "expired_token",
            "other_call": "forged_token",
            "malformed": "malformed_token",
        }[case]
        await wait_until(lambda: bridge.state.guard.rejected == {reason: 1})
    assert report.closed_by == "server" and report.close_code == 1008
    assert fake.connections_total == 0


async def test_a_token_opens_one_call_only(fake: FakeRealtimeServer, settings: Settings) -> None:
    """A minted token works once; replayed, it is refused without an upstream connection."""
    s = Settings(
        **{
            **settings.__dict__,
            "stream_token_secret": Secret(SECRET),
            "stream_token_secret_generated": False,
        }
    )
    sid = new_sid("CA")
    token = mint_token(SECRET.encode(), sid, time.time(), 60)
    with running_bridge(s) as bridge:
        first = await direct_call(bridge, {"StreamToken": token}, sid)
        assert first.closed_by == "caller" and fake.connections_total == 1
        second = await direct_call(bridge, {"StreamToken": token}, sid)
        await wait_until(lambda: bridge.state.guard.rejected == {"reused_token": 1})
    assert second.close_code == 1008 and fake.connections_total == 1


async def test_per_process_secret_needs_the_webhook_reservation(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """With a generated secret, a stream needs a slot this instance's webhook reserved."""
    assert settings.stream_token_secret_generated
    sid = new_sid("CA")
    token = mint_token(settings.stream_token_secret.reveal().encode(), sid, time.time(), 60)
    with running_bridge(settings) as bridge:
        await direct_call(bridge, {"StreamToken": token}, sid)
        await wait_until(lambda: bridge.state.guard.rejected == {"no_reservation": 1})
    assert fake.connections_total == 0


def test_busy_at_the_limit(fake: FakeRealtimeServer, settings: Settings) -> None:
    """At MAX_CALLS the webhook answers busy TwiML, /readyz is false; reservations expire."""
    # PUBLIC_URL: these posts name the public Host over plain http, as a TLS router would.
    limited = {"max_calls": 1, "stream_token_ttl_s": 0.5, "public_url": PUBLIC}
    with running_bridge(settings, **limited) as bridge:
        first = parse_twiml(post(bridge, "/twilio/stream", urlencode(params()).encode(), FORM)[1])
        assert first.stream_url is not None
        status, body = post(bridge, "/twilio/stream", urlencode(params()).encode(), FORM)
        busy = parse_twiml(body)
        assert status == 200 and busy.stream_url is None
        assert busy.says_before == (settings.busy_say,)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(bridge.url + "/readyz", timeout=5)
        info.value.close()
        assert bridge.state.guard.rejected["busy"] == 1
        time.sleep(1.6)  # the unused reservation expires with its token
        again = parse_twiml(post(bridge, "/twilio/stream", urlencode(params()).encode(), FORM)[1])
        assert again.stream_url is not None
    assert fake.connections_total == 0


async def test_oversized_message_is_refused(fake: FakeRealtimeServer, settings: Settings) -> None:
    """A message over MAX_MESSAGE_BYTES closes that call (1009) and the next call works."""
    with running_bridge(settings, max_message_bytes=4096) as bridge:
        p = params()
        answer = parse_twiml(post(bridge, "/twilio/stream", urlencode(p).encode(), FORM)[1])
        async with connect(bridge.ws_url) as ws:
            await ws.send(json.dumps({"event": "connected"}))
            await ws.send(
                json.dumps(
                    {
                        "event": "start",
                        "streamSid": "MZ1",
                        "start": {
                            "streamSid": "MZ1",
                            "callSid": p["CallSid"],  # the call the token was minted for
                            "accountSid": "AC1",
                            "tracks": ["inbound"],
                            "customParameters": answer.parameters,
                        },
                    }
                )
            )
            await ws.send("x" * 10_000)
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 1009
        report = await place_call(bridge.webhook, packaged_call("books_a_table"), speed=8.0)
        assert report.closed_by == "caller"
        assert (
            sum(r.stats.ignored.get("message_too_big", 0) for r in bridge.state.last_results) == 1
        )


async def test_start_timeout(fake: FakeRealtimeServer, settings: Settings) -> None:
    """A socket that never sends `start` is closed after START_TIMEOUT_S, upstream untouched."""
    with running_bridge(settings, start_timeout_s=0.3) as bridge:
        t0 = time.monotonic()
        async with connect(bridge.ws_url) as ws:
            await asyncio.wait_for(ws.wait_closed(), 5)
        assert 0.25 < time.monotonic() - t0 < 2
        assert ws.close_code == 1008
        await wait_until(lambda: bridge.state.guard.rejected == {"no_start": 1})
    assert fake.connections_total == 0


def test_startup_warns_without_signature_validation(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Running without TWILIO_AUTH_TOKEN or a shared token secret is loudly logged, once each."""
    from voicebridge.server.guard import Guard

    Guard(settings).warn_at_startup()
    assert caplog.text.count("TWILIO_AUTH_TOKEN is not set") == 1
    assert caplog.text.count("STREAM_TOKEN_SECRET is not set") == 1
