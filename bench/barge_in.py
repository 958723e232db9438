"""Barge-in as the caller feels it: upstream VAD only vs ``LOCAL_BARGE_IN=on``, end to end.

Run by hand, never in CI (about 20 minutes; results in bench/RESULTS.md):

    .venv/bin/python bench/barge_in.py                    # both modes, 30 + 10 calls each
    .venv/bin/python bench/barge_in.py --calls 5 --coughs 3   # a quick look

The project's own pieces, on loopback: the bridge under uvicorn (``voicebridge serve``'s
options) and the fake Realtime server, each in its own thread and event loop, and the Twilio
emulator placing one call at a time over a realistic path (60 ms each way, 20 ms jitter,
60 ms playout). The fake models a distant upstream: every event 80 ms late, its VAD needing
200 ms of speech before ``speech_started``.

* **Speech over an answer**: the caller asks (the first turn of ``books_a_table``), and
  talks again 300-2500 ms into the 4 s answer (an utterance of ``books_a_table`` or
  ``interrupts``). Measured: the caller's first word (the utterance's first frame, as
  spoken) to the moment the assistant fell silent at the caller (Twilio's ``clear``), and
  the truncation's ``audio_end_ms`` against what the caller actually heard of the answer.
* **A cough**: 150 ms, 800 ms into a 3 s answer. Measured: what the caller heard of the
  answer, truncations sent, and the silence the cough caused at the caller.
"""

# ruff: noqa: T201  (a command-line tool: it prints)

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import running_bridge, running_fake  # noqa: E402
from voicebridge.config import Settings  # noqa: E402
from voicebridge.fake_realtime.server import FakeRealtimeOptions  # noqa: E402
from voicebridge.twilio_sim.call_report import CallReport, Network  # noqa: E402
from voicebridge.twilio_sim.line_sounds import CallerSounds, cough  # noqa: E402
from voicebridge.twilio_sim.recordings import (  # noqa: E402
    Recording,
    packaged_call,
    speech_segments,
)
from voicebridge.twilio_sim.stream import EmulatedCall  # noqa: E402
from voicebridge.twilio_sim.webhook_client import call_params, new_sid, post_webhook  # noqa: E402

PROFILE = {"down_ms": 60.0, "up_ms": 60.0, "jitter_ms": 20.0, "playout_ms": 60.0}
DISTANT = {"event_delay_ms": 80, "vad_start_ms": 200}
ANSWER_4S, ANSWER_3S = 1, 4  # the fake's clips 02 (3.97 s) and 05 (3.05 s)


@dataclass
class Trial:
    mode: str
    silent_ms: float | None = None  # first word -> silent at the caller
    truncation_error_ms: float | None = None  # audio_end_ms - heard
    heard_ms: float = 0.0
    truncations: int = 0
    clears: int = 0
    gap_ms: float | None = None  # the silence a cough caused at the caller


def _frames(name: str) -> list[str]:
    return packaged_call(name).payloads


def base_call(tail_frames: int) -> Recording:
    """0.4 s of line noise, the caller's question (books_a_table's first turn), then line
    noise (that call's own, between its turns) for ``tail_frames`` frames."""
    p = _frames("books_a_table")
    quiet = p[300:520]
    media = p[34:253] + [quiet[i % len(quiet)] for i in range(tail_frames)]
    messages: list[dict[str, Any]] = [
        {"event": "connected", "protocol": "Call", "version": "1.0.0"},
        {"event": "start", "sequenceNumber": "1", "start": {"tracks": ["inbound"]}},
    ]
    for i, payload in enumerate(media):
        messages.append({"event": "media", "media": {"timestamp": str(i * 20), "payload": payload}})
    messages.append({"event": "stop"})
    return Recording("barge_in_bench", tuple(messages))


def utterances() -> list[bytes]:
    """The caller's interruptions: every utterance of the packaged calls but the question."""
    out = []
    for name in ("books_a_table", "interrupts"):
        payloads = _frames(name)
        audio = b"".join(base64.b64decode(p) for p in payloads)
        for k, (s, e) in enumerate(speech_segments(payloads, threshold=300)):
            if (name, k) != ("books_a_table", 0):
                out.append(audio[int(s) * 8 : int(e) * 8])
    return out


async def place(webhook: str, recording: Recording, line: CallerSounds, seed: int) -> CallReport:
    call_sid, account_sid = new_sid("CA"), new_sid("AC")
    answer = await post_webhook(
        webhook, call_params(call_sid, account_sid, from_="+15005550006", to="+15005550001")
    )
    assert answer.twiml is not None and answer.twiml.stream_url is not None
    call = EmulatedCall(
        answer.twiml.stream_url,
        recording,
        parameters=answer.twiml.parameters,
        network=Network(**PROFILE, seed=seed),
        call_sid=call_sid,
        account_sid=account_sid,
        line=line,
    )
    return await call.run(60.0)


def answer_heard(report: CallReport, deltas: set[str]) -> float:
    return report.player.heard_ms(deltas)


async def speech_trials(mode: str, n: int, settings: Settings) -> list[Trial]:
    rng = random.Random(18)
    speech = utterances()
    options = FakeRealtimeOptions(**DISTANT, first_clip=ANSWER_4S)
    out = []
    with running_fake(options) as (fake, _):
        wired = dataclasses.replace(settings, realtime_url=fake.url)
        with running_bridge(wired, local_barge_in=mode == "on") as bridge:
            for i in range(n):
                line = CallerSounds(
                    speech=speech[i % len(speech)], speech_at_ms=rng.uniform(300, 2500)
                )
                report = await place(bridge.webhook, base_call(300), line, seed=i)
                session = fake.sessions[-1]
                out.append(_speech_trial(mode, report, line, session))
                print(f"  {mode} speech {i + 1}/{n}: {out[-1]}", file=sys.stderr)
    return out


def _speech_trial(mode: str, report: CallReport, line: CallerSounds, session: Any) -> Trial:
    trial = Trial(mode, clears=len(report.player.clears), truncations=len(session.truncations))
    spoke = line.inserted_at.get("speech")
    after = [t for t in report.player.clears if spoke is not None and t >= spoke]
    if spoke is not None and after:
        trial.silent_ms = after[0] - spoke
    if session.truncations and trial.clears == 1:
        truncate = session.truncations[0]
        item = session.items[truncate["item_id"]]
        heard = answer_heard(report, set(item.deltas))
        trial.heard_ms = heard
        trial.truncation_error_ms = truncate["audio_end_ms"] - heard
    return trial


async def cough_trials(mode: str, n: int, settings: Settings) -> list[Trial]:
    options = FakeRealtimeOptions(**DISTANT, first_clip=ANSWER_3S)
    out = []
    with running_fake(options) as (fake, _):
        wired = dataclasses.replace(settings, realtime_url=fake.url)
        with running_bridge(wired, local_barge_in=mode == "on") as bridge:
            for i in range(n):
                line = CallerSounds(cough=cough(150, rms=3000, seed=i), cough_at_ms=800)
                report = await place(bridge.webhook, base_call(250), line, seed=100 + i)
                session = fake.sessions[-1]
                trial = Trial(mode, clears=len(report.player.clears))
                trial.truncations = len(session.truncations)
                trial.heard_ms = sum(c.played for c in report.player.chunks)
                if report.player.clears:
                    cleared = report.player.clears[0]
                    later = [c.start for c in report.player.chunks if c.arrived > cleared]
                    trial.gap_ms = (min(later) if later else report.ended_at) - cleared
                out.append(trial)
                print(f"  {mode} cough {i + 1}/{n}: {trial}", file=sys.stderr)
    return out


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] if s else float("nan")


def report(speech: dict[str, list[Trial]], coughs: dict[str, list[Trial]], window: int) -> None:
    print("\n| barge-in (speech over a 4 s answer) | upstream VAD only | LOCAL_BARGE_IN=on |")
    print("|---|---:|---:|")
    rows: list[tuple[str, Any]] = [
        ("calls", lambda t: str(len(t))),
        ("first word → silent at the caller, p50", lambda t: _ms(_silent(t), 0.5)),
        ("  p95", lambda t: _ms(_silent(t), 0.95)),
        ("  max", lambda t: _ms(_silent(t), 1.0)),
        ("truncation − heard, p50", lambda t: _ms(_err(t), 0.5)),
        ("  p95 of abs", lambda t: _ms([abs(x) for x in _err(t)], 0.95)),
        (
            "  min / max",
            lambda t: f"{min(_err(t), default=0):+.0f} / {max(_err(t), default=0):+.0f} ms",
        ),
        ("calls with more than one clear", lambda t: str(sum(x.clears > 1 for x in t))),
    ]
    for name, cell in rows:
        print(f"| {name} | {cell(speech.get('off', []))} | {cell(speech.get('on', []))} |")
    head = f"LOCAL_BARGE_IN=on (window {window} ms)"
    print(f"\n| a 150 ms cough 800 ms into a 3 s answer | upstream VAD only | {head} |")
    print("|---|---:|---:|")
    crows: list[tuple[str, Any]] = [
        ("calls", lambda t: str(len(t))),
        ("answer heard, min", lambda t: _ms([x.heard_ms for x in t], 0.0)),
        ("truncates sent", lambda t: str(sum(x.truncations for x in t))),
        ("calls paused", lambda t: str(sum(x.gap_ms is not None for x in t))),
        (
            "pause at the caller, p50",
            lambda t: _ms([x.gap_ms for x in t if x.gap_ms is not None], 0.5),
        ),
        ("  max", lambda t: _ms([x.gap_ms for x in t if x.gap_ms is not None], 1.0)),
    ]
    for name, cell in crows:
        print(f"| {name} | {cell(coughs.get('off', []))} | {cell(coughs.get('on', []))} |")


def _silent(trials: list[Trial]) -> list[float]:
    return [t.silent_ms for t in trials if t.silent_ms is not None]


def _err(trials: list[Trial]) -> list[float]:
    return [t.truncation_error_ms for t in trials if t.truncation_error_ms is not None]


def _ms(values: list[float], q: float) -> str:
    return f"{_pct(values, q):.0f} ms" if values else "n/a"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30, help="speech calls per mode")
    parser.add_argument("--coughs", type=int, default=10, help="cough calls per mode")
    parser.add_argument("--modes", default="off,on")
    args = parser.parse_args()
    settings = Settings(realtime_url="ws://127.0.0.1:9/v1/realtime", start_timeout_s=5.0)
    speech: dict[str, list[Trial]] = {}
    coughs: dict[str, list[Trial]] = {}
    for mode in args.modes.split(","):
        speech[mode] = await speech_trials(mode, args.calls, settings)
        coughs[mode] = await cough_trials(mode, args.coughs, settings)
    report(speech, coughs, settings.local_barge_in_window_ms)


if __name__ == "__main__":
    asyncio.run(main())
