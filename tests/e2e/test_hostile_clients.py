"""Hostile clients on loopback, each attack of issue 15 a test: input before admission,
floods of names, replayed webhooks, audio faster than real time, a key in REALTIME_URL.

The flood and the key run against `voicebridge serve` as the Procfile starts it (its RSS, its
log file); the rest against the in-process bridge, whose state the test can read.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.support.metrics import scrape
from tests.support.processes import free_port
from tests.support.served import served
from tests.support.servers import Bridge, running_bridge, running_fake
from tests.support.waiting import wait_until
from voicebridge.config import Secret, Settings
from voicebridge.core.signature import compute_signature
from voicebridge.fake_realtime.server import FakeRealtimeOptions, FakeRealtimeServer
from voicebridge.twilio_sim.call_report import Network
from voicebridge.twilio_sim.emulator import EmulatedCall, place_call
from voicebridge.twilio_sim.recordings import packaged_call
from voicebridge.twilio_sim.webhook_client import (
    LocalProxy,
    call_params,
    new_sid,
    parse_twiml,
    post_webhook,
)

MS = 0.001  # seconds
MB = 1000 * 1000
AUTH = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://voice.example.com"
STREAM = "wss://voice.example.com/realtime"
SECRET = "a-hostile-clients-stream-token-secret-0123"
ROOT = Path(__file__).resolve().parents[2]


def deep(depth: int) -> str:
    """JSON text nested ``depth`` objects deep (json.dumps itself would recurse)."""
    return '{"a":' * depth + "1" + "}" * depth


def start_message(call_sid: str, parameters: str) -> str:
    """Twilio's `start`, its customParameters given as raw JSON text."""
    return (
        '{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"streamSid":"MZ1",'
        f'"callSid":{json.dumps(call_sid)},"accountSid":"AC1","tracks":["inbound"],'
        '"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},'
        f'"customParameters":{parameters}}}}}'
    )


CONNECTED = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


class Records(logging.Handler):
    """Every record the bridge's loggers write, whatever the configured level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at_least(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@contextmanager
def records() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def refused(bridge: Bridge, *frames: str) -> int | None:
    """Send ``frames`` on a fresh /realtime socket; the close code the bridge answers with."""
    async with connect(bridge.ws_url, open_timeout=5, max_size=None) as ws:
        for frame in frames:
            await ws.send(frame)
        await asyncio.wait_for(ws.wait_closed(), 5)
        return ws.close_code


def webhook_parameters(bridge: Bridge, call_sid: str) -> dict[str, str]:
    body = urlencode(call_params(call_sid, "AC1", from_="+15005550006", to="+15005550001"))
    request = urllib.request.Request(bridge.webhook, data=body.encode())
    with urllib.request.urlopen(request, timeout=5) as answer:
        twiml = parse_twiml(answer.read().decode())
    assert twiml.stream_url is not None
    return twiml.parameters


# -- 1. input before admission can never raise ------------------------------------------------


async def test_a_superscript_expiry_and_deep_parameters_are_counted_refusals(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """`²` expiries, 1000-deep customParameters, deep garbage: closed 1008, counted refusals;
    no traceback, no ERROR line, no call counted, no upstream."""
    cases = {
        "malformed_token": [
            start_message("CA1", '{"StreamToken":"²³⁴⁵⁶⁷⁸⁹⁰.nonce.mac"}'),
            start_message("CA2", '{"StreamToken":"١٧٠٠٠٠٠٠٠٠.nonce.mac"}'),  # Arabic-Indic
        ],
        "bad_message_before_start": [
            start_message("CA3", '{"StreamToken":' + deep(1000) + "}"),
            start_message("CA4", '{"StreamToken":"1.a.b","x":' + deep(1000) + "}"),
            "[" * 1000 + "]" * 1000,
            "[" * 20_000 + "]" * 20_000,  # past orjson's depth limit: not JSON
        ],
        "missing_token": [
            '{"event":"connected","protocol":' + deep(1000) + "}",  # dropped, never rendered
        ],
        "messages_before_start": ['{"event":"' + "x" * 60 + '"}'] * 16,
    }
    with records() as logged, running_bridge(settings) as bridge:
        for reason, frames in cases.items():
            if reason in ("malformed_token", "bad_message_before_start"):
                codes = [await refused(bridge, CONNECTED, frame) for frame in frames]
            elif reason == "missing_token":
                codes = [await refused(bridge, frames[0], start_message("CA5", "{}"))]
            else:
                codes = [await refused(bridge, *frames)]
            assert codes == [1008] * len(codes), reason
        # A socket's ending is counted after its close: wait for the last one.
        await wait_until(lambda: sum(bridge.state.guard.rejected.values()) == 8)
        rejected = dict(bridge.state.guard.rejected)
        metrics = scrape(bridge)
    assert rejected == {
        "malformed_token": 2,
        "bad_message_before_start": 4,
        "missing_token": 1,
        "messages_before_start": 1,
    }
    assert not [k for k in metrics if k.startswith("voicebridge_calls_total")]
    assert metrics["voicebridge_rejected_requests_total{reason=malformed_token}"] == 2
    assert fake.connections_total == 0
    assert logged.at_least(logging.ERROR) == []
    assert not [r for r in logged.records if r.exc_info]
    assert all("\n" not in m for m in logged.at_least(logging.WARNING))


async def test_a_socket_that_ends_before_admission_is_no_call(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """Closing, `stop` or an oversized message before `start`: refusals, not finished calls."""
    with running_bridge(settings, max_message_bytes=4096) as bridge:
        async with connect(bridge.ws_url) as ws:
            await ws.send(CONNECTED)
        assert await refused(bridge, CONNECTED, '{"event":"stop","streamSid":"MZ1"}') == 1008
        assert await refused(bridge, CONNECTED, "x" * 10_000) == 1009
        await wait_until(lambda: sum(bridge.state.guard.rejected.values()) == 3)
        metrics = scrape(bridge)
        assert bridge.state.guard.rejected == {
            "closed_before_start": 1,
            "stop_before_start": 1,
            "message_too_big": 1,
        }
    assert not [k for k in metrics if k.startswith("voicebridge_calls_total")]
    assert not [k for k in metrics if k.startswith("voicebridge_dropped_total")]


# -- 2. a flood of names: no labels, few lines, little memory -------------------------------


def frame(text: str) -> bytes:
    """A client text frame; the all-zero mask key leaves the payload as it is (RFC 6455 5.3)."""
    data = text.encode()
    n = len(data)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 65536:
        head = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + data


class RawSocket:
    """A signed /realtime WebSocket written frame by frame, in large batches."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> RawSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                "GET /realtime HTTP/1.1\r\nHost: voice.example.com\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n"
                f"X-Twilio-Signature: {compute_signature(AUTH, STREAM)}\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        return cls(reader, writer)

    async def send(self, frames: list[str], batch: int = 2000) -> bool:
        """False once the bridge closed the socket."""
        try:
            for i in range(0, len(frames), batch):
                self.writer.write(b"".join(frame(f) for f in frames[i : i + batch]))
                await self.writer.drain()
        except OSError:
            return False
        return True

    async def close_code(self, timeout: float = 60.0) -> int | None:
        """Read (and drop) what the bridge sends until its close frame: the code in it."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    b0, b1 = await self.reader.readexactly(2)
                    n = b1 & 0x7F
                    if n == 126:
                        n = int.from_bytes(await self.reader.readexactly(2), "big")
                    elif n == 127:
                        n = int.from_bytes(await self.reader.readexactly(8), "big")
                    payload = await self.reader.readexactly(n)
                except (asyncio.IncompleteReadError, OSError):
                    return None
                if b0 & 0x0F == 0x8:
                    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None

    def close(self) -> None:
        self.writer.close()


@pytest.fixture(scope="module")
def keyed_fake() -> Iterator[FakeRealtimeServer]:
    options = FakeRealtimeOptions(speed=10.0, response_delay_ms=50, api_key=KEY)
    with running_fake(options) as (server, _):
        yield server


def scrape_text(base: str) -> tuple[str, float]:
    started = time.monotonic()
    with urllib.request.urlopen(base + "/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return text, time.monotonic() - started


async def signed_token(port: int, call_sid: str) -> str:
    answer = await post_webhook(
        PUBLIC + "/twilio/stream",
        call_params(call_sid, "AC1", from_="+15005550006", to="+15005550001"),
        auth_token=AUTH,
        proxy=LocalProxy(f"127.0.0.1:{port}"),
    )
    assert answer.twiml is not None and answer.twiml.stream_url == STREAM
    return answer.twiml.parameters["StreamToken"]


@pytest.mark.slow  # runs voicebridge as its own process
async def test_a_flood_of_unknown_event_names_leaves_no_trace(
    keyed_fake: FakeRealtimeServer, tmp_path: Path
) -> None:
    """20 signed sockets x 20,000 unknown event names, then an oversized message and a `²`
    token: /metrics <= 100 KB, a scrape <= 100 ms, RSS +<= 20 MB, <= 100 WARNING/ERROR lines."""
    sockets, names = 20, 20_000
    env = {
        "REALTIME_URL": keyed_fake.url,
        "OPENAI_API_KEY": KEY,
        "PUBLIC_URL": PUBLIC,
        "TWILIO_AUTH_TOKEN": AUTH,
        "STREAM_TOKEN_SECRET": SECRET,
        "MAX_CALLS": "30",
    }
    with served(tmp_path / "serve.log", **env) as server:
        report = await place_call(
            PUBLIC + "/twilio/stream",
            packaged_call("books_a_table"),
            speed=10.0,
            hangup_at_ms=2000,
            auth_token=AUTH,
            proxy=LocalProxy(f"127.0.0.1:{server.port}"),
        )
        assert report.closed_by == "caller"  # warmed up: every code path loaded
        scrape_text(server.url)
        rss0 = server.rss_bytes()

        async def attacker(n: int) -> int | None:
            """Half the sockets flood before `start`, half after a genuine admission."""
            ws = await RawSocket.open(server.port)
            try:
                flood = [f'{{"event":"evt-{n}-{i}","streamSid":"MZ1"}}' for i in range(names)]
                if n % 2:
                    sid = new_sid("CA")
                    token = await signed_token(server.port, sid)
                    params = json.dumps({"StreamToken": token})
                    await ws.send([CONNECTED, start_message(sid, params)])
                    await ws.send(flood)
                    await ws.send(['{"event":"stop","streamSid":"MZ1"}'])
                else:
                    await ws.send([CONNECTED, *flood])
                return await ws.close_code()
            finally:
                ws.close()

        started = time.monotonic()
        codes = await asyncio.gather(*(attacker(n) for n in range(sockets)))
        flood_s = time.monotonic() - started
        # Then an oversized message on an admitted call, and a `²` token.
        ws = await RawSocket.open(server.port)
        sid = new_sid("CA")
        params = json.dumps({"StreamToken": await signed_token(server.port, sid)})
        upstreams = keyed_fake.connections_total
        await ws.send([CONNECTED, start_message(sid, params)])
        await wait_until(lambda: keyed_fake.connections_total > upstreams)  # admitted
        await ws.send(["x" * 70_000])
        oversized = await ws.close_code()
        ws.close()
        ws = await RawSocket.open(server.port)
        await ws.send([CONNECTED, start_message("CA1", '{"StreamToken":"²³⁴⁵.n.m"}')])
        superscript = await ws.close_code()
        ws.close()
        await asyncio.sleep(0.3)  # the last calls' endings
        text, _ = scrape_text(server.url)
        scrapes = sorted(scrape_text(server.url)[1] for _ in range(5))
        scrape_s = scrapes[2]  # the median: one scheduling hiccup of a loaded test machine aside
        grown = server.rss_bytes() - rss0
        log = server.log_text()
    lines = [line for line in log.splitlines() if re.search(r" (WARNING|ERROR) ", line)]
    print(  # noqa: T201 (the figures for the report, with -s)
        f"\nflood: {sockets} x {names} names in {flood_s:.1f} s; /metrics {len(text) / 1000:.1f}"
        f" KB, scrape {scrape_s / MS:.1f} ms (max {scrapes[-1] / MS:.1f}), RSS +{grown / MB:.1f} MB, "
        f"{len(lines)} WARNING/ERROR lines"
    )
    # Refused after 16 messages (the close frame may be lost to the reset of the unread
    # flood); the admitted ones hung up.
    assert all(code in (1008, None) for code in codes[0::2]) and codes[1::2] == [1000] * 10
    assert (oversized, superscript) == (1009, 1008)
    assert len(text) <= 100_000 and "evt-" not in text
    assert scrape_s <= 100 * MS
    assert grown <= 20 * MB
    assert len(lines) <= 100, "\n".join(lines[:20])
    assert "Traceback" not in log and " ERROR " not in log
    assert "TWILIO_STREAM_SIGNATURE=if-present: " in log  # the start-up line says the mode
    assert 'voicebridge_dropped_total{reason="twilio:unknown_event"} 200000.0' in text
    assert 'voicebridge_rejected_requests_total{reason="messages_before_start"} 10.0' in text
    assert 'voicebridge_rejected_requests_total{reason="malformed_token"} 1.0' in text
    calls = [s for f in text_string_to_metric_families(text) for s in f.samples]
    # The warm-up call, the 10 admitted floods, the oversized message's call: no refusal.
    assert sum(s.value for s in calls if s.name == "voicebridge_calls_total") == 12


# -- 3. a CallSid opens one call --------------------------------------------------------------


@pytest.fixture
def signed(settings: Settings) -> Settings:
    return replace(
        settings,
        twilio_auth_token=Secret(AUTH),
        public_url=PUBLIC,
        stream_token_secret=Secret(SECRET),
        stream_token_secret_generated=False,
    )


async def test_a_replayed_webhook_opens_one_call(
    fake: FakeRealtimeServer, signed: Settings
) -> None:
    """One signed webhook replayed 5 times, each followed by a call with the token it returned:
    one upstream connection; the replays are answered with a bare <Hangup/>, counted."""
    with running_bridge(signed) as bridge:
        proxy = LocalProxy(bridge.url.removeprefix("http://"))
        sid = new_sid("CA")
        params = call_params(sid, "AC1", from_="+15005550006", to="+15005550001")

        async def webhook() -> Any:
            answer = await post_webhook(
                PUBLIC + "/twilio/stream", params, auth_token=AUTH, proxy=proxy
            )
            assert answer.status == 200 and answer.twiml is not None
            return answer.twiml

        async def call(parameters: dict[str, str]) -> Any:
            return await EmulatedCall(
                bridge.ws_url,
                packaged_call("books_a_table"),
                parameters=parameters,
                call_sid=sid,
                speed=8.0,
                hangup_at_ms=2000,
            ).run(timeout=20)

        answers = []
        for _ in range(6):  # the webhook, then 5 replays, each followed by its call
            twiml = await webhook()
            answers.append(twiml)
            if twiml.stream_url is not None:
                await call(twiml.parameters)
            else:
                await call({"StreamToken": "none"})  # what an attacker would try anyway
        assert answers[0].stream_url is not None
        assert all(a.stream_url is None and a.verbs == (("Hangup", ""),) for a in answers[1:])
        await wait_until(lambda: len(bridge.state.last_results) == 6)  # each socket ended
        assert fake.connections_total == 1
        assert bridge.state.guard.rejected["call_sid_reused"] == 5

        # Replays before any call: each mints a token; the first call spends the CallSid.
        sid = params["CallSid"] = new_sid("CA")
        tokens = [(await webhook()).parameters for _ in range(6)]
        reports = [await call(token) for token in tokens]
        await wait_until(lambda: len(bridge.state.last_results) == 12)
        metrics = scrape(bridge)
    assert fake.connections_total == 2
    assert [r.close_code for r in reports[1:]] == [1008] * 5
    assert bridge.state.guard.rejected["call_sid_reused"] == 10
    assert metrics["voicebridge_rejected_requests_total{reason=call_sid_reused}"] == 10


# -- 4. caller audio at no more than real time plus a burst ----------------------------------


def payload(n: int) -> str:
    """A distinct 20 ms frame of μ-law per ``n``."""
    return base64.b64encode(n.to_bytes(4, "big") + b"\x7e" * 156).decode()


def media(n: int) -> str:
    return json.dumps(
        {
            "event": "media",
            "streamSid": "MZ1",
            "media": {
                "track": "inbound",
                "chunk": str(n),
                "timestamp": str(n * 20),
                "payload": payload(n),
            },
        }
    )


async def test_media_at_100x_real_time_is_paced_and_the_call_goes_on(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """10 s of caller media sent at >= 100x real time: the upstream gets <= 12 s of it (real
    time plus CALLER_BURST_MS), the rest is counted and logged once; the call goes on."""
    paced = replace(settings, caller_burst_ms=Settings().caller_burst_ms)
    with records() as logged, running_bridge(paced) as bridge:
        sid = new_sid("CA")
        parameters = webhook_parameters(bridge, sid)
        ws = await RawSocket.open(int(bridge.url.rsplit(":", 1)[1]))
        await ws.send([CONNECTED, start_message(sid, json.dumps(parameters))])
        await wait_until(lambda: len(fake.sessions) == 1)
        session = fake.sessions[0]

        def stats() -> Any:
            [call] = bridge.thread.call(lambda: list(bridge.state.calls))
            return call.core.stats

        sent_at = time.monotonic()
        await ws.send([media(n) for n in range(500)], batch=500)  # one write
        sending = time.monotonic() - sent_at
        # Every frame read by the bridge, and what it forwarded at the upstream.
        await wait_until(lambda: stats().frames_in + stats().caller_paced_dropped == 500)
        ours = {payload(n) for n in range(500)}
        await wait_until(lambda: sum(p in ours for p in session.appended) == stats().frames_in)
        upstream = stats().frames_in
        # The call goes on: real time passes again.
        await asyncio.sleep(0.3)
        for n in range(1000, 1025):
            await ws.send([media(n)])
            await asyncio.sleep(20 * MS)
        later = {payload(n) for n in range(1000, 1025)}
        await wait_until(lambda: later <= set(session.appended))
        await ws.send(['{"event":"stop","streamSid":"MZ1"}'])
        assert await ws.close_code(timeout=5) == 1000
        ws.close()
        await wait_until(lambda: len(bridge.state.last_results) == 1)
        [result] = bridge.state.last_results
        metrics = scrape(bridge)
    print(  # noqa: T201
        f"\n10 s of media in {sending / MS:.0f} ms ({10 / sending:.0f}x): upstream got "
        f"{upstream * 20 / 1000:.2f} s, {result.stats.caller_paced_dropped} frames dropped"
    )
    assert sending <= 100 * MS  # >= 100x real time
    assert 2000 <= upstream * 20 <= 12_000
    assert result.reason == "caller_hangup" and not result.failed
    assert result.stats.caller_paced_dropped == 500 - upstream
    assert metrics["voicebridge_dropped_total{reason=caller_pacing}"] == 500 - upstream
    assert sum("faster_than_real_time" in m for m in logged.at_least(logging.WARNING)) == 1


async def test_real_time_callers_are_never_paced(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """Four calls at Twilio's own pace, with 60 ms of network jitter and media gaps filled with
    silence: not one frame is held back by CALLER_BURST_MS."""
    paced = replace(settings, caller_burst_ms=Settings().caller_burst_ms)
    with running_bridge(paced) as bridge:
        reports = await asyncio.gather(
            *(
                place_call(
                    bridge.webhook,
                    packaged_call("books_a_table"),
                    network=Network(jitter_ms=60.0, seed=n),
                    hangup_at_ms=4000,
                )
                for n in range(4)
            )
        )
        await wait_until(lambda: len(bridge.state.last_results) == 4)
        results = list(bridge.state.last_results)
    assert all(r.closed_by == "caller" for r in reports)
    assert [r.stats.caller_paced_dropped for r in results] == [0] * 4
    assert all(r.stats.frames_in >= 150 for r in results)


# -- 6. the API key appears nowhere -----------------------------------------------------------

KEY = "sk-proj-hostile+KEY/never=printed-0123456789"


def http(url: str, data: bytes | None = None) -> str:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as r:
            return str(r.read().decode(errors="replace"))
    except urllib.error.HTTPError as err:
        with err:
            return f"{err.code} {err.read().decode(errors='replace')}"


def doctor(env: dict[str, str], cwd: Path) -> str:
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "REALTIME_", "TWILIO_", "PUBLIC_"))
    }
    result = subprocess.run(
        [sys.executable, "-m", "voicebridge", "doctor", "--timeout", "3"],
        env={**environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return result.stdout + result.stderr


def key_forms() -> list[str]:
    return [KEY, quote(KEY, safe=""), quote(KEY), KEY.replace("/", "\\/")]


@pytest.mark.slow  # runs voicebridge as its own process
async def test_the_api_key_appears_nowhere(keyed_fake: FakeRealtimeServer, tmp_path: Path) -> None:
    """The key, also in REALTIME_URL's query: not in DEBUG (and LOG_WIRE) logs, /metrics,
    error pages or doctor's output; nor when the upstream is unreachable or the URL invalid."""
    url = keyed_fake.url + "?api-key=" + quote(KEY, safe="")
    env = {"REALTIME_URL": url, "OPENAI_API_KEY": KEY, "LOG_LEVEL": "DEBUG", "LOG_WIRE": "true"}
    with served(tmp_path / "serve.log", **env) as server:
        report = await place_call(
            server.url + "/twilio/stream",
            packaged_call("books_a_table"),
            speed=10.0,
            hangup_at_ms=3000,
        )
        assert report.closed_by == "caller"
        assert keyed_fake.sessions[-1].headers["authorization"] == f"Bearer {KEY}"
        pages = [
            http(server.url + "/metrics"),
            http(server.url + "/nowhere"),
            http(server.url + "/twilio/stream", b"CallSid="),
            http(server.url + "/twilio/fallback", b"\xff\xfe"),
            http(server.url + "/readyz"),
        ]
        log = server.log_text()
    assert "Bearer ****" in log  # LOG_WIRE: websockets wrote the header, masked
    closed = free_port()  # nothing listens there
    outputs = [
        doctor(env, tmp_path),
        doctor(
            {**env, "REALTIME_URL": f"ws://127.0.0.1:{closed}/v1/realtime?api-key={KEY}"}, tmp_path
        ),
        doctor({**env, "REALTIME_URL": url + "#x"}, tmp_path),
        doctor({**env, "REALTIME_URL": url.replace("ws://", "http://")}, tmp_path),
    ]
    assert "accepted the key" in outputs[0] and "unreachable" in outputs[1]
    for text in [log, *pages, *outputs]:
        for form in key_forms():
            assert form not in text
