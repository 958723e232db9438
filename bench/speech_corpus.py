"""The local speech detector on a corpus of phone-line sounds: false triggers, delay, cost.

Run by hand, never in CI:

    .venv/bin/pip install webrtcvad-wheels               # once, by hand: the comparison only
    .venv/bin/python bench/speech_corpus.py              # tables for bench/RESULTS.md
    .venv/bin/python bench/speech_corpus.py --recordings ../shared/recordings

The corpus (built here, deterministically, from the shared recordings, the fake's assistant
clips and ``bench/corpus/backchannel``, see ``tools/make_corpus.sh``):

* line noise: ``quiet_line`` as recorded, 10 dB louder, and with 20-60 ms crackles;
* echo: each assistant clip coming back on the caller's leg at -20 dB (also -15, -10),
  50, 100 and 150 ms late, over the line noise, while the clip plays;
* coughs: 100, 150 and 250 ms, at three levels, during an answer (its echo at -20 dB);
* back-channel: 32 short sounds ("mm-hm", "yeah", "okay", ...), during an answer;
* speech: every caller utterance of the recordings, alone and over an answer's echo.

A trigger is a speech onset; on everything but speech it is a false one. The detectors: the
project's ``SpeechDetector`` (with and without its echo reference) and WebRTC's VAD
(``webrtcvad-wheels``, modes 0-3, behind the same onset and hangover rules).
"""

# ruff: noqa: T201  (a command-line tool: it prints)

from __future__ import annotations

import argparse
import base64
import importlib.util
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from voicebridge.core.audio import audioop
from voicebridge.core.speech_detector import (
    ECHO_MARGIN,
    ERL_MAX,
    HANGOVER_MS,
    STARTED,
    EchoReference,
    SpeechDetector,
)
from voicebridge.fake_realtime.clips import load_clips
from voicebridge.twilio_sim.line_sounds import cough, mix, noise_burst, scaled
from voicebridge.twilio_sim.recordings import load_recording, speech_segments

BENCH = Path(__file__).resolve().parent
FRAME = 160  # μ-law bytes in 20 ms
LEAD_MS = 1000  # line noise before a sound: the detector settles on the line first


@dataclass
class Case:
    kind: str  # noise | echo-20 | echo-15 | echo-10 | cough | backchannel | speech | speech+echo
    name: str
    caller: bytes  # what the caller's leg carries
    assistant: bytes  # what the caller hears at the same times (b"" when nothing plays)
    sound_at_ms: float = 0.0  # where the sound (speech, cough...) starts


class Detector:
    """What the harness feeds: a frame and the echo reference's level; STARTED at onsets."""

    def feed(self, ulaw: bytes, echo_level: int) -> int:
        raise NotImplementedError


class WebRtc(Detector):
    """WebRTC's VAD as the frame classifier, under SpeechDetector's onset and hangover."""

    def __init__(self, mode: int, min_speech_ms: int, echo_gate: bool) -> None:
        import webrtcvad

        self.vad = webrtcvad.Vad(mode)
        self.onset = max(1, -(-min_speech_ms // 20))
        self.echo_gate = echo_gate
        self.run = self.quiet = 0
        self.speaking = False

    def feed(self, ulaw: bytes, echo_level: int) -> int:
        pcm = audioop.ulaw2lin(ulaw, 2)
        voiced = self.vad.is_speech(pcm, 8000)
        if voiced and self.echo_gate:
            voiced = audioop.rms(pcm, 2) >= echo_level * ERL_MAX * ECHO_MARGIN
        if voiced:
            self.quiet, self.run = 0, self.run + 1
            if not self.speaking and self.run >= self.onset:
                self.speaking = True
                return STARTED
            return 0
        self.run = 0
        if self.speaking:
            self.quiet += 1
            if self.quiet * 20 >= HANGOVER_MS:
                self.speaking, self.quiet = False, 0
        return 0


class Energy(Detector):
    def __init__(self, min_speech_ms: int, echo_reference: bool) -> None:
        self.det = SpeechDetector(min_speech_ms)
        self.echo_reference = echo_reference

    def feed(self, ulaw: bytes, echo_level: int) -> int:
        return self.det.feed(ulaw, echo_level if self.echo_reference else 0)


# -- the corpus ------------------------------------------------------------------------


def _recording_audio(path: Path) -> bytes:
    rec = load_recording(path)
    return b"".join(base64.b64decode(p) for p in rec.payloads)


def _noise(line: bytes, ms: float, offset_ms: float = 0.0) -> bytes:
    """``ms`` of the recorded line noise from ``offset_ms`` on (looped)."""
    n, start = int(ms * 8), int(offset_ms * 8) % len(line)
    out = (line[start:] + line) * (n // len(line) + 2)
    return out[:n]


def corpus(recordings: Path) -> Iterator[Case]:
    line = _recording_audio(recordings / "quiet_line.jsonl")
    yield Case("noise", "quiet_line", line, b"")
    yield Case("noise", "quiet_line +10 dB", scaled(line, 10.0), b"")
    for rec in ("books_a_table", "interrupts", "keypad", "real_call"):
        # The line between the caller's words: each recording with its utterances cut out.
        payloads = load_recording(recordings / f"{rec}.jsonl").payloads
        audio = b"".join(base64.b64decode(p) for p in payloads)
        quiet, at = b"", 0
        for s, e in speech_segments(payloads, threshold=150, min_voiced_ms=20):
            quiet += audio[at * 8 : max(at, int(s) - 200) * 8]
            at = int(e) + 200
        yield Case("noise", f"{rec} between words", quiet + audio[at * 8 :], b"")
    rng = random.Random(18)
    for i in range(24):
        ms, rms = (20, 40, 60)[i % 3], (800, 1500, 3000)[i // 3 % 3]
        burst = noise_burst(ms, rms, seed=i)
        at = LEAD_MS + rng.uniform(0, 20)
        yield Case(
            "crackle",
            f"{ms} ms rms {rms} #{i}",
            mix(_noise(line, 2000, i * 500), burst, at),
            b"",
            at,
        )
    clips = [c.ulaw for c in load_clips()]
    for level in (-20, -15, -10):
        for i, clip in enumerate(clips):
            for delay in (50, 100, 150):
                assistant = b"\xff" * LEAD_MS * 8 + clip
                caller = mix(
                    _noise(line, len(assistant) / 8 + 300, i * 1000), assistant, delay, level
                )
                yield Case(f"echo{level}", f"clip {i + 1} +{delay} ms", caller, assistant)
    for i, clip in enumerate(clips):
        # A first answer without echo (the estimate falls), then one whose echo is 20 dB down.
        clean = clips[(i + 1) % len(clips)]
        second = LEAD_MS + len(clean) / 8 + 1000
        assistant = b"\xff" * LEAD_MS * 8 + clean + b"\xff" * 8000 + clip
        caller = _noise(line, len(assistant) / 8 + 300, i * 900)
        caller = mix(caller, assistant[int(second * 8) :], second + 100, -20.0)
        yield Case(
            "echo-20 late", f"clip {i + 1} after clip {(i + 1) % len(clips) + 1}", caller, assistant
        )
    for ms in (100, 150, 250):
        for rms in (1500, 3000, 6000):
            for seed in range(4):
                yield _over_answer(
                    "cough",
                    f"{ms} ms rms {rms} #{seed}",
                    cough(ms, rms, seed),
                    line,
                    clips[seed % len(clips)],
                    300 + seed * 400,
                )
    for n, path in enumerate(sorted((BENCH / "corpus" / "backchannel").glob("*.ulaw"))):
        yield _over_answer(
            "backchannel",
            path.stem,
            path.read_bytes(),
            line,
            clips[n % len(clips)],
            300 + (n % 5) * 300,
        )
    for rec in ("books_a_table", "interrupts", "keypad", "real_call"):
        payloads = load_recording(recordings / f"{rec}.jsonl").payloads
        audio = b"".join(base64.b64decode(p) for p in payloads)
        for k, (s, e) in enumerate(speech_segments(payloads, threshold=300)):
            utterance = audio[int(s) * 8 : int(e) * 8]
            name = f"{rec} {k + 1}"
            caller = _noise(line, LEAD_MS, k * 700) + utterance + _noise(line, 300)
            yield Case("speech", name, caller, b"", LEAD_MS)
            yield _over_answer("speech+echo", name, utterance, line, clips[k % len(clips)], 800)
            for j, into in enumerate((400, 1100, 1700)):
                clip = clips[(k + j) % len(clips)]
                yield _over_answer(
                    "speech+answer", f"{name} @{into}", utterance, line, clip, into, None
                )


def _over_answer(
    kind: str,
    name: str,
    sound: bytes,
    line: bytes,
    clip: bytes,
    into_ms: float,
    echo_db: float | None = -20.0,
) -> Case:
    """``sound`` from ``into_ms`` into an answer the caller hears, its echo 100 ms late."""
    assistant = b"\xff" * LEAD_MS * 8 + clip
    at = LEAD_MS + into_ms
    total = max(len(assistant) / 8, at + len(sound) / 8) + 300
    caller = _noise(line, total, len(sound))
    if echo_db is not None:
        caller = mix(caller, assistant, 100, echo_db)
    return Case(kind, name, mix(caller, sound, at), assistant, at)


# -- running -------------------------------------------------------------------------------


def run_case(case: Case, detector: Detector, jitter_ms: float, seed: int) -> list[float]:
    """Onset times (ms, when the onset frame was spoken) of ``detector`` over ``case``."""
    ref = EchoReference()
    if case.assistant:
        ref.add(0.0, case.assistant)
    rng = random.Random(seed)
    onsets = []
    for k in range(len(case.caller) // FRAME):
        heard = k * 20 + rng.uniform(-jitter_ms, jitter_ms)  # the bridge's estimate
        level = ref.level(heard) if case.assistant else 0
        if detector.feed(case.caller[k * FRAME : (k + 1) * FRAME], level) == STARTED:
            onsets.append(k * 20.0)
    return onsets


def evaluate(cases: list[Case], make: Callable[[], Detector]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    by_kind: dict[str, list[Case]] = {}
    for case in cases:
        by_kind.setdefault(case.kind, []).append(case)
    for kind, group in by_kind.items():
        triggered, delays, minutes = 0, [], 0.0
        for i, case in enumerate(group):
            onsets = run_case(case, make(), 20.0, i)
            minutes += len(case.caller) / 8 / 60000
            if kind.startswith("speech"):
                hit = [t for t in onsets if case.sound_at_ms - 20 <= t]
                if hit:
                    triggered += 1
                    delays.append(hit[0] - case.sound_at_ms + 20)  # audio needed, ms
            else:
                triggered += bool(onsets)
        out[kind] = {
            "cases": len(group),
            "triggered": triggered,
            "minutes": minutes,
            "delay_p50": statistics.median(delays) if delays else float("nan"),
            "delay_p95": _p95(delays),
        }
    return out


def _p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def cost_us(make: Callable[[], Detector], cases: list[Case]) -> float:
    """µs of CPU per frame: the level, the echo reference's lookup and the decision."""
    frames = [
        c.caller[i : i + FRAME] for c in cases[:40] for i in range(0, len(c.caller) - FRAME, FRAME)
    ]
    ref = EchoReference()
    ref.add(0.0, cases[-1].assistant or b"\xff" * 8000)
    best = float("inf")
    for _ in range(5):
        det = make()
        began = time.thread_time()  # CPU time: a busy host does not count
        for k, frame in enumerate(frames):
            det.feed(frame, ref.level((k % 200) * 20.0))
        best = min(best, time.thread_time() - began)
    return best / len(frames) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recordings", type=Path, default=BENCH.parent.parent / "shared" / "recordings"
    )
    parser.add_argument("--min-speech", default="40,60,80,120,200,300")
    args = parser.parse_args()
    cases = list(corpus(args.recordings))
    kinds = [
        "noise",
        "crackle",
        "echo-20",
        "echo-15",
        "echo-10",
        "echo-20 late",
        "cough",
        "backchannel",
    ]
    speech = ["speech", "speech+answer", "speech+echo"]
    detectors: dict[str, Callable[[int], Detector]] = {
        "energy + echo reference": lambda m: Energy(m, True),
        "energy, no echo reference": lambda m: Energy(m, False),
    }
    if importlib.util.find_spec("webrtcvad") is not None:  # pip install webrtcvad-wheels
        for mode in range(4):
            detectors[f"webrtcvad {mode}"] = lambda m, mode=mode: WebRtc(mode, m, False)
        detectors["webrtcvad 3 + echo gate"] = lambda m: WebRtc(3, m, True)
    else:
        print("webrtcvad is not installed (pip install webrtcvad-wheels): its rows are left out")
    minutes = sum(len(c.caller) for c in cases) / 8 / 60000
    print(f"corpus: {len(cases)} cases, {minutes:.1f} min of caller audio")
    head = " | ".join(kinds + [f"{k}: found, p50/p95 ms" for k in speech])
    print(f"\n| detector (60 ms onset) | µs/frame | {head} |")
    print("|---|---:|" + "---:|" * (len(kinds) + len(speech)))
    for name, make in detectors.items():
        r = evaluate(cases, lambda make=make: make(60))
        cost = cost_us(lambda make=make: make(60), cases)
        print(f"| {name} | {cost:.1f} | {_row(r, kinds, speech)} |")
    print(f"\n| min speech (ms) | {head} |")
    print("|---:|" + "---:|" * (len(kinds) + len(speech)))
    for m in (int(x) for x in args.min_speech.split(",")):
        r = evaluate(cases, lambda m=m: Energy(m, True))
        print(f"| {m} | {_row(r, kinds, speech)} |")
    print("\ncells: cases with a trigger / cases; speech: utterances found / utterances, and")
    print("the audio it took (ms from the utterance's first frame to the onset's frame's end)")


def _row(r: dict[str, dict[str, float]], kinds: list[str], speech: list[str]) -> str:
    cells = [f"{int(r[k]['triggered'])}/{int(r[k]['cases'])}" for k in kinds]
    for k in speech:
        v = r[k]
        found = f"{int(v['triggered'])}/{int(v['cases'])}"
        cells.append(f"{found}, {v['delay_p50']:.0f} / {v['delay_p95']:.0f}")
    return " | ".join(cells)


if __name__ == "__main__":
    main()
