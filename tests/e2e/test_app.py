"""The HTTP side through a real uvicorn: TwiML webhook, fallback, health checks."""

from __future__ import annotations

import urllib.request
from urllib.parse import urlencode

from tests.support.servers import running_bridge
from voicebridge.config import Settings
from voicebridge.twilio_sim.webhook_client import parse_twiml


def http(
    url: str, *, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, str]:
    body = urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def test_webhook_answers_twiml_with_the_stream_url(settings: Settings) -> None:
    """POST and GET both answer text/xml TwiML pointing at /realtime with From and To."""
    params = {"CallSid": "CA" + "1" * 32, "From": "+14155550123", "To": "+18005550100"}
    with running_bridge(settings, welcome_say="Hello & welcome") as bridge:
        status, ctype, body = http(bridge.webhook, data=params)
        get_status, _, get_body = http(bridge.webhook + "?" + urlencode(params))
    assert status == 200 and ctype.startswith("text/xml")
    twiml = parse_twiml(body)
    assert twiml.says_before == ("Hello & welcome",)
    assert twiml.stream_url == bridge.ws_url and "?" not in twiml.stream_url
    token = twiml.parameters.pop("StreamToken")
    assert twiml.parameters == {"From": "+14155550123", "To": "+18005550100"}
    assert twiml.after_connect == (("Say", settings.failure_say), ("Hangup", ""))
    again = parse_twiml(get_body)
    assert get_status == 200 and again.parameters.pop("StreamToken") != token
    assert again == twiml


def test_stream_url_behind_a_tls_proxy(settings: Settings) -> None:
    """A trusted X-Forwarded-Proto: https and the public Host give wss://public-host."""
    headers = {"Host": "voice.example.com", "X-Forwarded-Proto": "https"}
    with running_bridge(settings, forwarded_allow_ips="127.0.0.1") as bridge:
        _, _, body = http(bridge.webhook, data={"CallSid": "CA1"}, headers=headers)
    assert parse_twiml(body).stream_url == "wss://voice.example.com/realtime"


def test_untrusted_proxy_header_is_ignored(settings: Settings) -> None:
    """X-Forwarded-Proto from an address outside FORWARDED_ALLOW_IPS does not count: the
    stream URL would be ws://, so the caller gets the apology instead (test_operate_edge)."""
    headers = {"Host": "voice.example.com", "X-Forwarded-Proto": "https"}
    with running_bridge(settings, forwarded_allow_ips="10.9.9.9") as bridge:
        _, _, body = http(bridge.webhook, data={"CallSid": "CA1"}, headers=headers)
    twiml = parse_twiml(body)
    assert twiml.stream_url is None and twiml.says_before == (settings.failure_say,)


def test_public_url_wins_over_headers(settings: Settings) -> None:
    """With PUBLIC_URL set, the stream URL is derived from it alone."""
    with running_bridge(settings, public_url="https://calls.example.org/vb") as bridge:
        _, _, body = http(bridge.webhook, data={"CallSid": "CA1"}, headers={"Host": "evil.test"})
    assert parse_twiml(body).stream_url == "wss://calls.example.org/vb/realtime"


def test_fallback_apologises_and_hangs_up(settings: Settings) -> None:
    """The 'Primary handler fails' URL answers with the apology and a hang-up."""
    with running_bridge(settings) as bridge:
        status, ctype, body = http(bridge.url + "/twilio/fallback", data={"ErrorCode": "11200"})
    twiml = parse_twiml(body)
    assert status == 200 and ctype.startswith("text/xml")
    assert twiml.stream_url is None and twiml.says_before == (settings.failure_say,)


def test_health_and_readiness(settings: Settings) -> None:
    """/healthz says the process is up, /readyz that calls are accepted."""
    with running_bridge(settings) as bridge:
        assert http(bridge.url + "/healthz")[0] == 200
        status, _, body = http(bridge.url + "/readyz")
        assert status == 200 and '"active_calls":0' in body
        bridge.state.accepting = False
        assert http(bridge.url + "/readyz")[0] == 503


def test_oversized_webhook_body_is_refused(settings: Settings) -> None:
    """A webhook body far larger than Twilio's is refused without parsing it."""
    with running_bridge(settings) as bridge:
        status, _, _ = http(bridge.webhook, data={"x": "y" * 100_000})
    assert status == 413
