"""``voicebridge replay`` as small loopback servers see it: headers, SIDs, `start`, pacing,
closes and broken answers, each checked at the server rather than in the tool's report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from twilio.request_validator import RequestValidator
from websockets.asyncio.server import ServerConnection, serve

from tests.support.recordings import trimmed
from tests.support.servers import running_uvicorn
from voicebridge.cli import main
from voicebridge.replay.runner import ReplayOptions, run_replay
from voicebridge.twilio_sim.recordings import Recording, packaged_call
from voicebridge.twilio_sim.script import SILENCE_PAYLOAD

AUTH = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://voice.example.com"
ACCOUNT = "AC" + "5" * 32
JSON = dict[str, Any]


@dataclass
class Capture:
    """What a Twilio-facing server receives: webhook POSTs, WebSocket upgrades, streams."""

    stream_url: str
    parameters: dict[str, str] = field(default_factory=dict)
    posts: list[tuple[dict[str, str], dict[str, str]]] = field(default_factory=list)
    upgrades: list[dict[str, str]] = field(default_factory=list)
    streams: list[list[JSON]] = field(default_factory=list)

    def twiml(self) -> str:
        params = "".join(f'<Parameter name="{k}" value="{v}"/>' for k, v in self.parameters.items())
        return f'<Response><Connect><Stream url="{self.stream_url}">{params}</Stream></Connect></Response>'

    def app(self) -> Starlette:
        async def webhook(request: Request) -> Response:
            form = dict(parse_qsl((await request.body()).decode()))
            self.posts.append((dict(request.headers), form))
            return Response(self.twiml(), media_type="text/xml")

        async def stream(ws: WebSocket) -> None:
            self.upgrades.append(dict(ws.headers))
            await ws.accept()
            messages: list[JSON] = []
            self.streams.append(messages)
            with contextlib.suppress(WebSocketDisconnect):
                while not messages or messages[-1]["event"] != "stop":
                    messages.append(json.loads(await ws.receive_text()))

        return Starlette(
            routes=[
                Route("/twilio/stream", webhook, methods=["POST"]),
                WebSocketRoute("/realtime", stream),
            ]
        )


@contextlib.contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """``app`` under uvicorn as the bridge runs (own thread and loop): its host:port."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, ws="websockets-sansio", lifespan="off", log_config=None
    )
    with running_uvicorn(config, "capture") as (port, _):
        yield f"127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def websocket_server(handler: Any) -> AsyncIterator[str]:
    """A plain Media Streams WebSocket server in the test's loop: its ws:// URL."""
    async with serve(handler, "127.0.0.1", 0) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


def short(ms: int = 200) -> Recording:
    return trimmed(packaged_call("interrupts"), ms)


async def test_connect_to_sends_the_public_host_and_https_on_webhook_and_upgrade() -> None:
    """--connect-to: the webhook POST and the WebSocket upgrade both carry the public Host and
    X-Forwarded-Proto: https, and are signed over the public URLs; <Parameter>s reach start."""
    capture = Capture("wss://voice.example.com/realtime", {"tenant": "acme"})
    with serving(capture.app()) as local:
        report = await run_replay(
            ReplayOptions(
                recordings=[short()],
                webhook_url=PUBLIC + "/twilio/stream",
                auth_token=AUTH,
                connect_to=local,
            )
        )
    assert report.exit_code == 0, report.as_json()["calls"]
    validator = RequestValidator(AUTH)
    [(post, form)] = capture.posts
    assert post["host"] == "voice.example.com" and post["x-forwarded-proto"] == "https"
    assert validator.validate(PUBLIC + "/twilio/stream", form, post["x-twilio-signature"])
    [upgrade] = capture.upgrades
    assert upgrade["host"] == "voice.example.com" and upgrade["x-forwarded-proto"] == "https"
    assert validator.validate("wss://voice.example.com/realtime", {}, upgrade["x-twilio-signature"])
    [stream] = capture.streams
    assert stream[1]["start"]["customParameters"] == {"tenant": "acme"}


async def test_start_has_no_custom_parameters_when_the_twiml_has_none() -> None:
    """Like Twilio, a stream whose TwiML has no <Parameter> gets no customParameters key."""
    capture = Capture("")
    with serving(capture.app()) as local:
        capture.stream_url = f"ws://{local}/realtime"
        report = await run_replay(
            ReplayOptions(recordings=[short()], webhook_url=f"http://{local}/twilio/stream")
        )
    assert report.exit_code == 0, report.as_json()["calls"]
    [stream] = capture.streams
    assert stream[1]["event"] == "start" and "customParameters" not in stream[1]["start"]


async def test_one_account_sid_per_run_fresh_call_and_stream_sids() -> None:
    """Every call of a run carries the same AccountSid (webhook, start, stop), each its own
    CallSid and StreamSid; --account-sid chooses it."""
    capture = Capture("")
    with serving(capture.app()) as local:
        capture.stream_url = f"ws://{local}/realtime"
        options = ReplayOptions(
            recordings=[short()],
            webhook_url=f"http://{local}/twilio/stream",
            calls=3,
            concurrency=3,
        )
        first = await run_replay(options)
        chosen = await run_replay(ReplayOptions(**{**vars(options), "account_sid": ACCOUNT}))
    assert first.exit_code == chosen.exit_code == 0
    run_account = first.target["account_sid"]
    assert run_account != ACCOUNT and chosen.target["account_sid"] == ACCOUNT
    starts = [s[1]["start"] for s in capture.streams]
    stops = [s[-1]["stop"] for s in capture.streams]
    for seen in ([form["AccountSid"] for _, form in capture.posts], starts, stops):
        accounts = [a if isinstance(a, str) else a["accountSid"] for a in seen]
        assert Counter(accounts) == {run_account: 3, ACCOUNT: 3}
    assert len({s["callSid"] for s in starts}) == len({s["streamSid"] for s in starts}) == 6
    with pytest.raises(ValueError, match="--account-sid"):
        ReplayOptions(**{**vars(options), "account_sid": "AC123"}).check()


async def test_ramp_spaces_the_starts_and_duration_hangs_up_at_the_deadline() -> None:
    """--ramp 4 --duration 0.9: calls start 250 ms apart (four of them), and every one
    hangs up when the run's time is up: a stop each, at about 0.9 s."""
    starts: list[float] = []
    stops: list[float] = []

    async def handler(ws: ServerConnection) -> None:
        async for raw in ws:
            event = json.loads(raw)["event"]
            if event == "start":
                starts.append(time.monotonic())
            elif event == "stop":
                stops.append(time.monotonic())

    async with websocket_server(handler) as url:
        began = time.monotonic()
        report = await run_replay(
            ReplayOptions(
                recordings=[short()],
                ws_url=url,
                concurrency=10,
                ramp=4.0,
                duration_s=0.9,
                loop=True,
            )
        )
        await asyncio.sleep(0.05)
    data = report.as_json()
    assert report.exit_code == 0, data["calls"]
    assert data["calls"]["total"] == 4 == len(starts) == len(stops)
    assert data["calls"]["cut_by_run_end"] == 4
    # Started on a schedule 0.25 s apart (a late connect does not move the next one),
    # generously: each start within -0.1 / +0.35 s of its slot.
    offsets = [t - began - 0.25 * i for i, t in enumerate(starts)]
    assert all(-0.1 < d < 0.35 for d in offsets), offsets
    assert starts[-1] - starts[0] > 0.5, starts  # spread out, not all at once
    assert all(0.8 < t - began < 1.8 for t in stops), [t - began for t in stops]
    assert report.elapsed_s < 2.5


@pytest.mark.parametrize(
    ("code", "ok", "reason"),
    [(1000, True, "ended_by_server"), (1011, False, "closed_by_server_1011")],
)
async def test_a_server_close_1000_is_a_normal_end_other_codes_fail(
    code: int, ok: bool, reason: str
) -> None:
    """The server closing with 1000 (the assistant ended the call) is an ok call with its own
    ending; 1011 is a failure; the report lists both kinds of reasons."""

    async def handler(ws: ServerConnection) -> None:
        async for raw in ws:
            msg = json.loads(raw)
            if msg["event"] == "start":
                sid = msg["streamSid"]
                media = {"event": "media", "streamSid": sid, "media": {"payload": SILENCE_PAYLOAD}}
                await ws.send(json.dumps(media))
                await ws.close(code, "goodbye")
                return

    async with websocket_server(handler) as url:
        report = await run_replay(ReplayOptions(recordings=[short(2000)], ws_url=url))
    [call] = report.outcomes
    assert (call.ok, call.reason, call.close_code) == (ok, reason, code)
    assert call.detail == "close reason: goodbye"
    calls = report.as_json()["calls"]
    assert calls["ok_reasons" if ok else "failed_reasons"] == {reason: 1}
    assert report.exit_code == (0 if ok else 1)
    assert f"  {'ok' if ok else 'failed'}: {reason} x1" in "\n".join(report.table())


@pytest.mark.parametrize(
    "answer",
    [
        b"Content-Length: 500\r\n\r\n<Response>",
        b"Transfer-Encoding: chunked\r\n\r\na\r\n<Response>\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_a_webhook_answer_cut_short_is_a_webhook_failure(answer: bytes) -> None:
    """The server closing in the middle of the TwiML: webhook_failed, saying it was cut short."""

    async def answer_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")  # the whole request first: no reset
        length = next(
            int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )  # fmt: skip
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n" + answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_and_close, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        report = await run_replay(
            ReplayOptions(recordings=[short()], webhook_url=f"http://127.0.0.1:{port}/")
        )
    calls = report.as_json()["calls"]
    assert calls["failed_reasons"] == {"webhook_failed": 1}
    assert "cut short" in calls["failed_examples"]["webhook_failed"]


async def test_speech_threshold_from_the_command_line_moves_the_end_of_speech(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--speech-threshold reaches the end-of-speech detection: a server answering at a fixed
    point of the recording answers later after the caller's end of speech at a higher
    threshold, whose utterance ends earlier (3120 ms → 2140 ms in interrupts)."""
    # keep pytest's logging set-up
    monkeypatch.setattr("voicebridge.replay.command.setup_logging", lambda *_: None)
    recording = trimmed(packaged_call("interrupts"), 5000)
    path = tmp_path / "call.jsonl"
    path.write_text("".join(json.dumps(m) + "\n" for m in recording.messages))
    speed = 4.0

    async def answer_at_3600_ms(ws: ServerConnection) -> None:
        sid = ""
        async for raw in ws:
            msg = json.loads(raw)
            if msg["event"] == "start":
                sid = msg["streamSid"]
            elif msg["event"] == "media" and msg["media"]["timestamp"] == "3600":
                media = {"event": "media", "streamSid": sid, "media": {"payload": SILENCE_PAYLOAD}}
                await ws.send(json.dumps(media))

    async def replay(url: str, threshold: int) -> JSON:
        out = tmp_path / f"{threshold}.json"
        argv = ["replay", "--ws", url, "--speed", str(speed), "--progress", "off"]
        argv += ["--speech-threshold", str(threshold), "--json", str(out), str(path)]
        assert await asyncio.to_thread(main, argv) == 0
        data: JSON = json.loads(out.read_text())
        assert data["options"]["speech_threshold"] == threshold
        assert data["turns"]["caller_utterances"] == 1
        return data

    async with websocket_server(answer_at_3600_ms) as url:
        default = await replay(url, 500)
        high = await replay(url, 4000)
    later = high["timings_ms"]["response"]["p50"] - default["timings_ms"]["response"]["p50"]
    assert 150 < later < 350, later  # (3120 - 2140) / 4 = 245 ms


@pytest.fixture(autouse=True)
async def _no_leftover_tasks() -> AsyncIterator[None]:
    yield
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in leftover if t.get_name().startswith(("replay-", "emulator-"))]
