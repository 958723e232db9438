"""``voicebridge replay`` through real sockets: webhook, direct WebSocket, signatures, the CLI."""

from __future__ import annotations

import array
import asyncio
import dataclasses
import json
import subprocess
import sys
import threading
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.support.recordings import trimmed
from tests.support.servers import running_bridge
from tests.support.waiting import wait_until
from voicebridge.config import Secret, Settings
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.replay.runner import ReplayOptions, run_replay
from voicebridge.twilio_sim.emulator import CallReport, Network
from voicebridge.twilio_sim.recordings import packaged_call
from voicebridge.twilio_sim.script import SILENCE_PAYLOAD, CallScript

AUTH = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://voice.example.com"
SECRET = "a-shared-stream-token-secret-0123456789"
SPEED = 8.0  # the recordings' pacing: interrupts.jsonl (14.5 s) plays in 1.8 s


def with_secret(settings: Settings, **more: Any) -> Settings:
    return dataclasses.replace(
        settings,
        stream_token_secret=Secret(SECRET),
        stream_token_secret_generated=False,
        **more,
    )


async def test_webhook_smoke_run(
    fake: FakeRealtimeServer, settings: Settings, tmp_path: Path
) -> None:
    """Three calls, two at a time, through the webhook: all ok, every timing measured and plausible."""
    with running_bridge(settings) as bridge:
        report = await run_replay(
            ReplayOptions(
                recordings=[packaged_call("interrupts"), packaged_call("books_a_table")],
                webhook_url=bridge.webhook,
                calls=3,
                concurrency=2,
                speed=SPEED,
                network=Network(down_ms=10, up_ms=10, jitter_ms=5, playout_ms=40, seed=1),
                wav_dir=tmp_path,
            )
        )
    data = report.as_json()
    assert report.exit_code == 0, data["calls"]
    assert data["calls"] == {
        "total": 3,
        "ok": 3,
        "ok_reasons": {"caller_hung_up": 3},
        "failed": 0,
        "failed_reasons": {},
        "failed_examples": {},
        "cut_by_run_end": 0,
        "after_stream": {},  # every caller hung up: Twilio asked nothing after the stream
    }
    assert data["violations"]["total"] == 0
    assert fake.connections_total == 3
    assert [c["recording"] for c in data["calls_detail"]] == [
        "interrupts",
        "books_a_table",
        "interrupts",
    ]
    assert len({c["call_sid"] for c in data["calls_detail"]}) == 3
    t = data["timings_ms"]
    for key in ("webhook", "connect", "first_audio"):
        assert t[key]["count"] == 3 and 0 < t[key]["p50"] <= t[key]["p95"] <= t[key]["max"]
    assert t["webhook"]["max"] < 2000 and t["connect"]["max"] < 2000
    assert t["first_audio"]["max"] < 10_000
    # The caller's utterances are answered; the interrupting caller is cleared.
    assert data["turns"]["answered"] >= 3
    assert 0 < t["response"]["p50"] < 5000
    assert t["barge_in"] is not None and 0 < t["barge_in"]["max"] < 2000
    assert t["heard_after_barge_in"]["max"] <= t["barge_in"]["max"] + 1
    assert t["jitter"]["count"] == 3 and t["ahead"]["count"] == 3
    assert data["frames"]["sent"] > 1000 and data["frames"]["echoes_sent"] > 0
    wavs = await asyncio.to_thread(lambda: sorted(tmp_path.glob("*.wav")))
    assert len(wavs) == 3


async def test_wav_is_what_the_caller_heard_cut_at_the_clear(
    fake: FakeRealtimeServer, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--wav-dir: the caller left, the assistant right until the barge-in's clear, then
    silence until the caller stops; the WAV is built off the event loop."""
    threads: list[int] = []
    write_wav = CallReport.write_wav

    def spy(report: CallReport, path: str | Path) -> None:
        threads.append(threading.get_ident())
        write_wav(report, path)

    monkeypatch.setattr(CallReport, "write_wav", spy)
    speed = 6.0  # the first answer plays well before the caller talks over it
    with running_bridge(settings) as bridge:
        report = await run_replay(
            ReplayOptions(
                recordings=[packaged_call("interrupts")],
                webhook_url=bridge.webhook,
                speed=speed,
                wav_dir=tmp_path,
            )
        )
    assert threads and threading.get_ident() not in threads
    [call] = report.outcomes
    assert call.ok and call.metrics is not None and call.duration_ms is not None
    m = call.metrics
    assert m.first_audio_ms is not None and len(m.barge_in_ms) == 1
    script = CallScript.from_recording(packaged_call("interrupts"))
    (s1, e1), (s2, e2) = script.speech_on_call_clock(speed=speed, loop=False, until_ms=1e9)
    cleared = s2 + m.barge_in_ms[0]
    assert cleared < e2 - 50
    [path] = await asyncio.to_thread(lambda: list(tmp_path.glob("*.wav")))
    left, right = await asyncio.to_thread(stereo_tracks, path)
    assert abs(len(right) / 8 - call.duration_ms) < 50  # no padding after the hang-up
    assert peak(left, s1, e1) > 5000 and peak(left, e1 + 20, s2 - 20) < 1000  # the caller
    assert peak(right, 0, m.first_audio_ms - 1) == 0  # nothing before the first answer
    assert peak(right, m.first_audio_ms, cleared) > 5000  # the answer, playing at the barge-in
    assert peak(right, cleared + 1, e2) == 0  # the clear cut it: silence while the caller talks
    assert peak(right, e2, call.duration_ms) > 5000  # then the answer to the interruption


def stereo_tracks(path: Path) -> tuple[array.array[int], array.array[int]]:
    """(left, right) 16-bit samples of a stereo 8 kHz WAV."""
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        samples = array.array("h", w.readframes(w.getnframes()))
    return samples[0::2], samples[1::2]


def peak(track: array.array[int], from_ms: float, to_ms: float) -> int:
    """The loudest sample between two times (ms)."""
    part = track[int(from_ms * 8) : int(to_ms * 8)]
    return max((abs(x) for x in part), default=0)


async def test_the_assistant_ending_the_call_is_an_ok_call(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """end_call without Twilio's REST API: the bridge closes the stream with 1000 after the
    goodbye, and the replay follows <Connect action> as Twilio does: <Hangup/>, no apology.
    An ok call, ended by the server, with what the caller heard after the stream."""
    fake.options = dataclasses.replace(fake.options, tool_call=("end_call", "{}"))
    with running_bridge(settings) as bridge:
        report = await run_replay(
            ReplayOptions(
                recordings=[trimmed(packaged_call("books_a_table"), 6000)],
                webhook_url=bridge.webhook,
                speed=SPEED,
                tail_ms=60_000,  # the caller stays on the line: the bridge hangs up
            )
        )
    [call] = report.outcomes
    assert (call.ok, call.reason, call.close_code) == (True, "ended_by_server", 1000)
    assert call.detail is not None and "then Twilio runs: Hangup" in call.detail
    assert call.after_stream == "Hangup"
    assert call.metrics is not None and call.metrics.heard_ms > 500  # the goodbye
    assert report.exit_code == 0
    assert report.as_json()["calls"]["ok_reasons"] == {"ended_by_server": 1}
    assert report.as_json()["calls"]["after_stream"] == {"Hangup": 1}
    assert "after the stream, Twilio ran: Hangup x1" in report.table()


async def test_direct_websocket_with_minted_tokens_and_loops(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """--ws with the bridge's secret: tokens minted per call, looping until the call's duration."""
    short = trimmed(packaged_call("interrupts"), 3000)
    with running_bridge(with_secret(settings)) as bridge:
        report = await run_replay(
            ReplayOptions(
                recordings=[short],
                ws_url=bridge.ws_url,
                token_secret=SECRET,
                calls=2,
                concurrency=2,
                loop=True,
                call_duration_s=1.2,
                speed=4.0,
            )
        )
        assert not bridge.state.guard.rejected
        for _ in range(200):  # the bridge records a call just after its socket closes
            if len(bridge.state.last_results) == 2:
                break
            await asyncio.sleep(0.01)
        results = list(bridge.state.last_results)
    data = report.as_json()
    assert report.exit_code == 0, data["calls"]
    assert fake.connections_total == 2
    for call in data["calls_detail"]:
        assert call["webhook_ms"] is None and call["connect_ms"] > 0
        assert 1100 < call["duration_ms"] < 2500  # hung up at 1.2 s
        assert call["frames_sent"] > 3000 / 20 / 4 * 1.5  # more than one pass of the recording
    assert sorted(r.stats.frames_in for r in results) == sorted(
        c["frames_sent"] for c in data["calls_detail"]
    )


async def test_wrong_token_secret_fails_with_the_close_code(settings: Settings) -> None:
    """Tokens minted with another secret are refused; the report says how the server closed."""
    with running_bridge(with_secret(settings)) as bridge:
        report = await run_replay(
            ReplayOptions(
                recordings=[packaged_call("interrupts")],
                ws_url=bridge.ws_url,
                token_secret="not-the-bridge-secret-0000000000",
                speed=SPEED,
            )
        )
        # The refusal is counted as the bridge's handler returns, just after the close.
        await wait_until(lambda: bridge.state.guard.rejected == {"forged_token": 1})
    assert report.exit_code == 1
    assert report.as_json()["calls"]["failed_reasons"] == {"closed_by_server_1008": 1}


async def test_signed_webhook_through_a_tls_proxy(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """Signed webhook and handshake reach a bridge behind --connect-to; a wrong token gets 403."""
    secure = with_secret(settings, twilio_auth_token=Secret(AUTH), public_url=PUBLIC)
    with running_bridge(secure) as bridge:
        options = ReplayOptions(
            recordings=[trimmed(packaged_call("books_a_table"), 4000)],
            webhook_url=PUBLIC + "/twilio/stream",
            auth_token=AUTH,
            connect_to=bridge.url.removeprefix("http://"),
            speed=SPEED,
        )
        good = await run_replay(options)
        assert not bridge.state.guard.rejected
        bad = await run_replay(dataclasses.replace(options, auth_token="f" * 32))
        assert bridge.state.guard.rejected == {"bad_signature": 1}
    assert good.exit_code == 0, good.as_json()["calls"]
    assert good.target["signed"] and fake.connections_total == 1
    calls = bad.as_json()["calls"]
    assert bad.exit_code == 1 and calls["failed_reasons"] == {"webhook_http_403": 1}


async def test_unreachable_upstream_is_a_failed_call_with_its_reason(settings: Settings) -> None:
    """A bridge that cannot reach its model closes the stream: failed, with the failure path."""
    broken = dataclasses.replace(
        settings, realtime_url="ws://127.0.0.1:9/v1/realtime", upstream_connect_timeout_s=0.5
    )
    with running_bridge(broken) as bridge:
        report = await run_replay(
            ReplayOptions(
                recordings=[packaged_call("interrupts")],
                webhook_url=bridge.webhook,
                calls=2,
                concurrency=2,
                speed=SPEED,
            )
        )
    data = report.as_json()
    assert report.exit_code == 1
    assert data["calls"]["failed"] == 2
    [(reason, count)] = data["calls"]["failed_reasons"].items()
    assert reason.startswith("closed_by_server") and count == 2
    assert "failure path: Say" in data["calls"]["failed_examples"][reason]
    assert data["calls"]["after_stream"] == {"Say Hangup": 2}  # the action's apology


async def test_nothing_listening_fails_fast() -> None:
    """An unreachable webhook and an unreachable WebSocket are failures, not hangs."""
    rec = [packaged_call("interrupts")]
    report = await run_replay(ReplayOptions(recordings=rec, webhook_url="http://127.0.0.1:9/x"))
    assert report.as_json()["calls"]["failed_reasons"] == {"webhook_failed": 1}
    report = await run_replay(ReplayOptions(recordings=rec, ws_url="ws://127.0.0.1:9/x"))
    assert report.as_json()["calls"]["failed_reasons"] == {"connect_failed": 1}
    assert report.elapsed_s < 5


async def test_looped_call_on_the_wire() -> None:
    """What a server receives from a looped call: consecutive numbers, echoes at playback, stop last."""
    received: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        async for raw in ws:
            msg = json.loads(raw)
            received.append(msg)
            if msg["event"] == "start":
                sid = msg["start"]["streamSid"]
                chunk = {"event": "media", "streamSid": sid, "media": {"payload": SILENCE_PAYLOAD}}
                for _ in range(3):
                    await ws.send(json.dumps(chunk))
                await ws.send(
                    json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "m1"}})
                )
                await ws.send(json.dumps({"event": "bogus", "streamSid": sid}))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        report = await run_replay(
            ReplayOptions(
                recordings=[trimmed(packaged_call("interrupts"), 200)],
                ws_url=f"ws://127.0.0.1:{port}/",
                loop=True,
                call_duration_s=0.5,
            )
        )
        await asyncio.sleep(0.05)
    events = [m["event"] for m in received]
    assert events[:2] == ["connected", "start"] and events[-1] == "stop"
    assert events.count("stop") == 1 and events.count("mark") == 1
    assert [int(m["sequenceNumber"]) for m in received[1:]] == list(range(1, len(received)))
    media = [m["media"] for m in received if m["event"] == "media"]
    assert [int(m["chunk"]) for m in media] == list(range(1, len(media) + 1))
    stamps = [int(m["timestamp"]) for m in media]
    assert stamps == list(range(stamps[0], stamps[0] + 20 * len(media), 20))
    assert 20 <= len(media) <= 27  # 0.5 s of 20 ms frames, looped over a 200 ms recording
    # The mark came back once the 60 ms of audio before it had played, not at once.
    [(echo_at, _)] = [(i, m) for i, m in enumerate(received) if m["event"] == "mark"]
    assert echo_at > 3
    data = report.as_json()
    assert data["violations"] == {"total": 1, "calls": 1, "kinds": {"unsupported event 'bogus'": 1}}
    assert report.exit_code == 1


@pytest.mark.slow
def test_cli_subprocess(fake: FakeRealtimeServer, settings: Settings, tmp_path: Path) -> None:
    """`python -m voicebridge replay` exits 0 and writes the JSON report; bad arguments exit 2."""
    out = tmp_path / "report.json"
    with running_bridge(settings) as bridge:
        result = subprocess.run(
            [
                sys.executable, "-m", "voicebridge", "replay",
                "--webhook", bridge.webhook, "--calls", "1", "--speed", str(SPEED),
                "--json", str(out), "interrupts",
            ],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "calls: 1 total, 1 ok, 0 failed" in result.stdout
    assert "first audio" in result.stdout
    data = json.loads(out.read_text())
    assert data["calls"]["ok"] == 1 and data["exit_code"] == 0
    assert data["timings_ms"]["webhook"]["count"] == 1
    bad = subprocess.run(
        [sys.executable, "-m", "voicebridge", "replay", "--ws", "ws://x/", "--loop", "interrupts"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert bad.returncode == 2 and "--loop needs" in bad.stderr


@pytest.fixture(autouse=True)
async def _no_leftover_tasks() -> AsyncIterator[None]:
    yield
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in leftover if t.get_name().startswith(("replay-", "emulator-"))]
