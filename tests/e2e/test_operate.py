"""Operating voicebridge and letting the assistant act, through real sockets."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.metrics import scrape
from tests.support.rest_fake import running_rest
from tests.support.servers import Bridge, running_bridge
from tests.support.waiting import wait_until
from voicebridge.config import Secret, Settings
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.emulator import Network, place_call
from voicebridge.twilio_sim.recordings import Recording, load_recording, packaged_call
from voicebridge.twilio_sim.webhook_client import LocalProxy

FIXTURES = Path(__file__).parent.parent / "fixtures"
ACCOUNT = "AC" + "5" * 32
AUTH = "rest-auth-token-0123456789abcdef"


async def test_metrics_count_replayed_calls(fake: FakeRealtimeServer, settings: Settings) -> None:
    """After a normal call and a barge-in call, /metrics shows the right counts."""
    net = Network(down_ms=20, up_ms=20, jitter_ms=5, playout_ms=20, seed=5)
    with running_bridge(settings) as bridge:
        first = await place_call(
            bridge.webhook, packaged_call("books_a_table"), speed=8.0, tail_ms=1500
        )
        second = await place_call(  # the caller's second turn (2.6-4 s at 2x) talks over
            bridge.webhook, packaged_call("interrupts"), network=net, speed=2.0, hangup_at_ms=4000
        )
        # A forged request is counted as rejected.
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(
                urllib.request.Request(bridge.webhook, data=b"From=%2B1"), timeout=5
            )
        info.value.close()
        await wait_until(lambda: bridge.state.active_calls == 0)
        m = scrape(bridge)
    frames = first.frames_sent + second.frames_sent
    assert m["voicebridge_calls_total{outcome=caller_hangup}"] == 2
    assert m["voicebridge_caller_frames_total"] == frames
    assert m["voicebridge_model_chunks_total"] == len(first.player.chunks) + len(
        second.player.chunks
    )
    results = bridge.state.last_results
    assert m["voicebridge_barge_ins_total"] == sum(r.stats.barge_ins for r in results) >= 1
    truncations = [t for s in fake.sessions for t in s.truncations]
    assert m["voicebridge_truncations_total"] == len(truncations) >= 1
    heard = sum(t["audio_end_ms"] for t in truncations) / 1000
    assert m["voicebridge_truncated_heard_seconds_total"] == pytest.approx(heard)
    assert m["voicebridge_rejected_requests_total{reason=no_call_sid}"] == 1
    assert m["voicebridge_tokens_total{kind=total_tokens}"] > 0
    assert m["voicebridge_upstream_connect_seconds_count"] == 2
    assert m["voicebridge_first_assistant_audio_seconds_count"] == 2
    assert m["voicebridge_response_latency_seconds_count"] >= 2
    assert m["voicebridge_active_calls"] == 0
    # Queue overflows are visible to a scraper (none here: nothing was slow).
    assert m["voicebridge_dropped_total{reason=caller_queue}"] == 0
    assert m["voicebridge_dropped_total{reason=playback_queue}"] == 0
    assert m["voicebridge_event_loop_tasks"] >= 1


def test_metrics_behind_a_bearer_token(settings: Settings) -> None:
    """With METRICS_TOKEN, /metrics needs it."""
    with running_bridge(settings, metrics_token=Secret("scrape-me")) as bridge:
        for token in (None, "wrong"):
            with pytest.raises(urllib.error.HTTPError) as info:
                scrape(bridge, token)
            assert info.value.code == 401
            info.value.close()
        assert scrape(bridge, "scrape-me")["voicebridge_active_calls"] == 0


def test_stream_status_callback_is_counted(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Twilio's stream status callbacks are logged and counted, errors with their text."""
    with running_bridge(settings) as bridge:
        body = {
            "AccountSid": ACCOUNT,
            "CallSid": "CA1",
            "StreamSid": "MZ1",
            "StreamEvent": "stream-error",
            "StreamError": "31920 Handshake error",
        }
        req = urllib.request.Request(
            bridge.url + "/twilio/stream-status", data=urllib.parse.urlencode(body).encode()
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 204
        m = scrape(bridge)
    assert m["voicebridge_stream_status_total{event=stream-error}"] == 1
    assert "31920 Handshake error" in caplog.text


async def test_twiml_points_twilio_at_the_status_callback(settings: Settings) -> None:
    """The <Stream> carries statusCallback pointing at voicebridge."""
    from voicebridge.twilio_sim.webhook_client import call_params, post_webhook

    with running_bridge(settings) as bridge:
        answer = await post_webhook(
            bridge.webhook, call_params("CA1", ACCOUNT, from_="+1", to="+2")
        )
    assert 'statusCallback="' + bridge.url + '/twilio/stream-status"' in answer.body


PUBLIC = "https://voice.example.com"


def rest_settings(settings: Settings, rest_url: str, **kw: Any) -> Settings:
    return dataclasses.replace(
        settings,
        twilio_account_sid=ACCOUNT,
        twilio_auth_token=Secret(AUTH),
        public_url=PUBLIC,
        twilio_api_base=rest_url,
        **kw,
    )


async def signed_call(bridge: Bridge, recording: Any, **kw: Any) -> Any:
    """A call signed with the account's token, through a TLS-terminating proxy."""
    proxy = LocalProxy(bridge.url.removeprefix("http://"))
    return await place_call(
        PUBLIC + "/twilio/stream", recording, auth_token=AUTH, proxy=proxy, **kw
    )


def first_turn(until_ms: int) -> Recording:
    """books_a_table up to ``until_ms``: the caller speaks once, then is quiet."""
    rec = packaged_call("books_a_table")
    t0 = int(rec.media[0]["media"]["timestamp"])
    keep = tuple(
        m
        for m in rec.messages
        if m.get("event") != "media" or int(m["media"]["timestamp"]) - t0 < until_ms
    )
    return Recording("first-turn", keep)


async def test_end_call_completes_after_the_goodbye_is_heard(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """end_call: goodbye first; the REST hang-up comes after its last mark's echo."""
    fake.options = dataclasses.replace(fake.options, tool_call=("end_call", "{}"))
    net = Network(down_ms=40, up_ms=40, playout_ms=20, seed=1)
    with running_rest() as rest:
        s = rest_settings(settings, rest.url)
        with running_bridge(s) as bridge:
            report = await signed_call(
                bridge, first_turn(7000), network=net, speed=2.0, tail_ms=10000, timeout=30
            )
            await wait_until(lambda: bridge.state.active_calls == 0)
            [result] = bridge.state.last_results
    [session] = fake.sessions
    assert [t["name"] for t in session.received[0]["session"]["tools"]] == ["end_call"]
    assert session.function_outputs and json.loads(session.function_outputs[0]["output"])["ok"]
    [call] = rest.requests
    assert call.form == {"Status": "completed"}
    assert call.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{report.call_sid}.json"
    assert call.auth == f"{ACCOUNT}:{AUTH}"
    goodbye = list(session.items.values())[-1]
    chunks = [c for c in report.player.chunks if c.payload in set(goodbye.deltas) and c.played]
    assert sum(c.played for c in chunks) > 1000  # the goodbye was heard
    last_echo = report.t0 + (max(c.start + c.played for c in chunks) + net.up_ms) / 1000
    assert call.at >= last_echo - 0.005, call.at - last_echo
    assert result.deliberate and result.reason == "end_call" and result.stats.barge_ins == 0


async def test_transfer_dials_a_configured_destination(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """transfer_call replaces the call's TwiML with a <Dial> to the named destination."""
    fake.options = dataclasses.replace(
        fake.options, tool_call=("transfer_call", '{"destination": "sales"}')
    )
    with running_rest() as rest:
        s = rest_settings(
            settings, rest.url, transfer_destinations="sales=+14155550100,help=sip:help@example.com"
        )
        with running_bridge(s) as bridge:
            await signed_call(
                bridge, packaged_call("books_a_table"), speed=3.0, tail_ms=8000, timeout=30
            )
            await wait_until(lambda: bridge.state.active_calls == 0)
    [session] = fake.sessions
    tool = next(t for t in session.received[0]["session"]["tools"] if t["name"] == "transfer_call")
    assert tool["parameters"]["properties"]["destination"]["enum"] == ["help", "sales"]
    [call] = rest.requests
    assert call.form == {"Twiml": "<Response><Dial>+14155550100</Dial></Response>"}


async def test_transfer_refuses_an_unconfigured_destination(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """A destination that is not configured is refused; the model is told and answers."""
    fake.options = dataclasses.replace(
        fake.options, tool_call=("transfer_call", '{"destination": "+19995550000"}')
    )
    with running_rest() as rest:
        s = rest_settings(settings, rest.url, transfer_destinations="sales=+14155550100")
        with running_bridge(s) as bridge:
            report = await signed_call(
                bridge, packaged_call("books_a_table"), speed=3.0, tail_ms=2000, timeout=30
            )
            await wait_until(lambda: bridge.state.active_calls == 0)
    [session] = fake.sessions
    output = json.loads(session.function_outputs[0]["output"])
    assert output["ok"] is False and output["destinations"] == ["sales"]
    assert rest.requests == []
    assert len(session.response_creates) >= 1  # the model answers the refusal
    assert report.closed_by == "caller"


async def test_dtmf_reaches_the_model_and_triggers_one_response(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """Each digit is a user item; after the pause, one response is requested."""
    recording = load_recording(FIXTURES / "keypad.jsonl")
    digits = [m["dtmf"]["digit"] for m in recording.messages if m.get("event") == "dtmf"]
    with running_bridge(settings) as bridge:
        await place_call(bridge.webhook, recording, speed=2.0, tail_ms=2500, timeout=30)
        await wait_until(lambda: bridge.state.active_calls == 0)
    [session] = fake.sessions
    keypad = [
        i["content"][0]["text"]
        for i in session.items_created
        if i.get("role") == "user" and i["content"][0].get("type") == "input_text"
    ]
    assert keypad == [f"[keypad] {d}" for d in digits]
    assert len(session.response_creates) == 1


async def test_transcript_file_marks_barge_ins(
    fake: FakeRealtimeServer, settings: Settings, tmp_path: Path
) -> None:
    """With input transcription on, each call's transcript is written as JSON lines."""
    net = Network(down_ms=20, up_ms=20, playout_ms=20, seed=2)
    with running_bridge(
        settings, record_dir=str(tmp_path), transcription_model="gpt-transcribe"
    ) as bridge:
        report = await place_call(
            bridge.webhook, packaged_call("interrupts"), network=net, hangup_at_ms=8500
        )
        await wait_until(lambda: bridge.state.active_calls == 0)
    [path] = list(tmp_path.glob("*/*.transcript.jsonl"))
    assert report.call_sid in path.name
    turns = [json.loads(line) for line in path.read_text().splitlines()]
    roles = [t["role"] for t in turns]
    assert "caller" in roles and "assistant" in roles
    assert any(t["interrupted"] for t in turns if t["role"] == "assistant")
    assert all(set(t) == {"t_ms", "role", "text", "item_id", "interrupted"} for t in turns)


async def test_azure_api_key_header(fake: FakeRealtimeServer, settings: Settings) -> None:
    """REALTIME_AUTH=api-key sends Azure's api-key header (and no Authorization)."""
    azure_url = fake.url + "?model=my-deployment"  # .../openai/v1/realtime?model=DEPLOYMENT
    with running_bridge(
        settings,
        realtime_url=azure_url,
        realtime_auth="api-key",
        openai_api_key=Secret("azure-key-123"),
    ) as bridge:
        report = await place_call(bridge.webhook, packaged_call("books_a_table"), speed=8.0)
        await wait_until(lambda: bridge.state.active_calls == 0)
    [session] = fake.sessions
    assert session.headers.get("api-key") == "azure-key-123"
    assert "authorization" not in session.headers
    assert session.model == "my-deployment"  # the URL's model is kept, not REALTIME_MODEL
    assert report.closed_by == "caller"


async def test_bearer_header_by_default(fake: FakeRealtimeServer, settings: Settings) -> None:
    """The default sends Authorization: Bearer, accepted by a fake that checks it."""
    fake.options = dataclasses.replace(fake.options, api_key="sk-right")
    with running_bridge(settings, openai_api_key=Secret("sk-right")) as bridge:
        report = await place_call(bridge.webhook, packaged_call("books_a_table"), speed=8.0)
        await wait_until(lambda: bridge.state.active_calls == 0)
    assert fake.sessions[0].headers.get("authorization") == "Bearer sk-right"
    assert report.closed_by == "caller"


async def test_json_logs_carry_call_fields(fake: FakeRealtimeServer, settings: Settings) -> None:
    """LOG_FORMAT=json: the call start and end lines are objects with their fields, numbers masked."""
    import io
    import logging

    from voicebridge.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("voicebridge.server.call")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with running_bridge(settings) as bridge:
            report = await place_call(
                bridge.webhook, packaged_call("books_a_table"), speed=8.0, from_="+14155550123"
            )
            await wait_until(lambda: bridge.state.active_calls == 0)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    started = next(x for x in lines if x.get("event") == "call_started")
    ended = next(x for x in lines if x.get("event") == "call_ended")
    assert started["call_sid"] == report.call_sid and started["from"] == "+1415***0123"
    assert "+14155550123" not in stream.getvalue()
    assert ended["outcome"] == "caller_hangup" and ended["frames_in"] == report.frames_sent
    assert {"duration_s", "barge_ins", "tokens", "caller_dropped", "stream_sid"} <= set(ended)
