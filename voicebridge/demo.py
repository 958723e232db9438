"""``voicebridge demo``: one whole call offline — bridge, fake model, emulated caller.

The bridge runs under uvicorn on a free loopback port exactly as ``serve`` runs it; the
fake Realtime server answers; the Twilio emulator places a recorded call through the real
webhook and WebSocket over an emulated network. The caller's side and what the caller
heard are written to a stereo WAV, and a summary is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import uvicorn

from voicebridge.business_sim.demo import business_setup, business_summary
from voicebridge.config import Secret, Settings
from voicebridge.fake_realtime.server import FakeRealtimeOptions, FakeRealtimeServer, FakeSession
from voicebridge.server.serve import uvicorn_config
from voicebridge.startup import configure
from voicebridge.twilio_sim.callee import person, voicemail
from voicebridge.twilio_sim.emulator import CallReport, Network, place_call
from voicebridge.twilio_sim.heard import heard_per_item
from voicebridge.twilio_sim.recordings import (
    Recording,
    load_recording,
    packaged_call,
    speech_segments,
)
from voicebridge.twilio_sim.twilio_api import FakeTwilioApi
from voicebridge.twilio_sim.webhook_client import LocalProxy

__all__ = ["NAME", "add_parser", "demo_call", "ended_well", "run", "summarize"]

NAME = "demo"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(NAME, help="a whole call offline: bridge, fake model, emulated caller")
    p.add_argument("--call", default="interrupts", help="a packaged call name or a .jsonl path")
    p.add_argument("--wav", default="demo-call.wav", help="stereo WAV: caller left, heard right")
    p.add_argument("--network-ms", type=float, default=60.0, help="one-way delay each way")
    p.add_argument(
        "--outbound",
        action="store_true",
        help="two outbound calls placed through POST /calls and a fake Twilio REST API: a "
        "person who says hello, and a voicemail that gets the message after its beep",
    )
    p.add_argument(
        "--business",
        action="store_true",
        help="with the offline business backend: the model calls its table lookup, and it "
        "receives the call events (try --call books_a_table)",
    )


def run(args: argparse.Namespace) -> int:
    """0 when the call ran to the caller's hang-up with no protocol violation, else 1."""
    settings = configure(args.env_file)
    if args.business:
        return asyncio.run(_business_call(settings, args))
    if args.outbound:
        return asyncio.run(outbound_demo(settings))
    return asyncio.run(demo_call(settings, args.call, args.wav, args.network_ms))


async def _business_call(settings: Settings, args: argparse.Namespace) -> int:
    async with business_setup(settings) as (settings, options, backend):
        status = await demo_call(settings, args.call, args.wav, args.network_ms, options)
    for line in business_summary(backend):
        print(line)
    return status


@contextlib.asynccontextmanager
async def _bridge(settings: Settings) -> AsyncIterator[int]:
    """The bridge under uvicorn on a free loopback port, as ``serve`` runs it: its port."""
    server = uvicorn.Server(uvicorn_config(dataclasses.replace(settings, host="127.0.0.1", port=0)))
    serving = asyncio.create_task(server.serve(), name="demo-bridge")
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if serving.done():
                    serving.result()
                await asyncio.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await serving


async def outbound_demo(settings: Settings) -> int:
    """Two calls placed through POST /calls: a person, then a voicemail box."""
    numbers = {"+15005550101": person(), "+15005550102": voicemail()}
    auth, api_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    api = FakeTwilioApi(lambda to: numbers[to], auth_token=auth)
    async with FakeRealtimeServer() as fake, api.serving() as api_url:
        settings = dataclasses.replace(
            settings,
            realtime_url=fake.url,
            public_url="https://voicebridge.demo.invalid",  # reached through a local proxy
            twilio_auth_token=Secret(auth),
            twilio_account_sid="AC" + secrets.token_hex(16),
            twilio_api_base=api_url,
            api_token=Secret(api_token),
            outbound_caller_id="+15005550006",
            instructions="Call {param.name} to confirm the table at {param.time}.",
            voicemail_message=settings.voicemail_message or "Please call Bistro Roma back.",
        )
        async with _bridge(settings) as port, httpx.AsyncClient() as client:
            api.proxy = LocalProxy(f"127.0.0.1:{port}")
            print(f"bridge on http://127.0.0.1:{port}, fake Twilio REST API on {api_url}")
            for number, callee in numbers.items():
                answer = await client.post(
                    f"http://127.0.0.1:{port}/calls",
                    json={"to": number, "context": {"name": "Ada", "time": "7:30 pm"}},
                    headers={"Authorization": f"Bearer {api_token}"},
                    timeout=30,
                )
                print(f"POST /calls to {number} ({callee.name}): HTTP {answer.status_code}")
                if answer.status_code != 202:
                    return 1
                placed = await api.wait_done(answer.json()["call_sid"])
                for line in placed.summary():
                    print(line)
        instructions = [
            e["session"]["instructions"]
            for session in fake.sessions
            for e in session.received
            if e["type"] == "session.update"
        ]
    print(f"the model's instructions: {instructions[0] if instructions else '-'}")
    return 0


def _recording(name: str) -> Recording:
    path = Path(name)
    return load_recording(path) if path.suffix in (".jsonl", ".json") else packaged_call(name)


async def demo_call(
    settings: Settings,
    call: str,
    wav: str,
    network_ms: float,
    options: FakeRealtimeOptions | None = None,
) -> int:
    """Place ``call`` through a bridge on a free port; print the summary, write the WAV."""
    recording = _recording(call)
    net = Network(
        down_ms=network_ms, up_ms=network_ms, jitter_ms=network_ms / 4, playout_ms=60.0, seed=1
    )
    async with FakeRealtimeServer(options or FakeRealtimeOptions()) as fake:
        async with _bridge(dataclasses.replace(settings, realtime_url=fake.url)) as port:
            webhook = f"http://127.0.0.1:{port}/twilio/stream"
            print(f"bridge on http://127.0.0.1:{port}, fake model on {fake.url}")
            print(
                f"calling with {recording.name!r} ({recording.duration_ms / 1000:.1f} s), "
                f"network {network_ms:g} ms each way ..."
            )
            report = await place_call(
                webhook,
                recording,
                network=net,
                tail_ms=2000,
                timeout=recording.duration_ms / 1000 + 60,
            )
        session = fake.sessions[-1] if fake.sessions else None
    report.write_wav(wav)
    for line in summarize(report, session):
        print(line)
    print(f"wrote {wav} (left: caller, right: what the caller heard)")
    return 0 if ended_well(report) and not report.violations else 1


def ended_well(report: CallReport) -> bool:
    """The caller hung up, or the bridge ended the call on purpose and Twilio then said
    nothing more (a hang-up or a transfer, no apology)."""
    if report.closed_by == "caller":
        return True
    said = {verb for verb, _ in report.after_stream}
    return report.close_code == 1000 and not said & {"Say", "Error"}


def summarize(report: CallReport, session: FakeSession | None) -> list[str]:
    """Turns, barge-ins, truncations and latencies of an emulated call."""
    lines = [
        f"call {report.call_sid}: ended by {report.closed_by}, "
        f"{report.frames_sent} frames sent, {len(report.violations)} protocol violations"
    ]
    if report.closed_by == "server":
        # What the caller heard once the stream ended: the <Connect action>'s answer.
        ran = ", ".join(f"<{v}> {t}".strip() for v, t in report.after_stream) or "nothing"
        lines.append(f"after the stream, Twilio ran: {ran}")
    if session is None:
        return lines
    # Matched by sound, not bytes: with UPSTREAM_AUDIO=pcm24k the bridge converts each delta.
    output_format = session.config.get("audio", {}).get("output", {}).get("format", {})
    heard = heard_per_item(
        report.player,
        [(item_id, it.deltas) for item_id, it in session.items.items()],
        output_format.get("type", "audio/pcmu"),
    )
    lines.append(f"assistant turns heard: {sum(ms > 0 for ms in heard.values())}")
    caller = speech_segments(p for _, p in report.caller_audio)
    played = [c for c in report.player.chunks if c.played > 0]
    for start, end in caller:
        after = [c.start for c in played if c.start >= end]
        if after:
            lines.append(
                f"caller spoke {start / 1000:.2f}-{end / 1000:.2f} s -> assistant "
                f"heard {min(after) - end:.0f} ms after the caller stopped"
            )
    for clear_at in report.player.clears:
        began = [s for s, _ in caller if s <= clear_at]
        if began:
            lines.append(
                f"barge-in: assistant silenced {clear_at - max(began):.0f} ms after "
                "the caller started talking over it"
            )
    for t in session.truncations:
        item = session.items.get(t["item_id"])
        if item is None:
            continue
        lines.append(
            f"truncation: model told {t['audio_end_ms']} ms heard of {item.audio_ms_sent:.0f} "
            f"ms sent (caller actually heard {heard[t['item_id']]:.0f} ms)"
        )
    return lines
