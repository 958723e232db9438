"""What LOCAL_BARGE_IN costs the core, per frame: the same call with it off and on.

Run by hand, never in CI (about a minute):

    .venv/bin/python bench/barge_in_cost.py

One ``CallCore`` plays a minute of a call on a simulated timeline, in-process, no sockets:
Twilio's caller frames every 20 ms (the recorded line noise of ``books_a_table``, so the
detector runs and never pauses), answers of 4 s every 5.5 s (100 ms deltas arriving five
times faster than real time, each rendered as the Twilio writer would), and Twilio's mark
echoes when each chunk has played (120 ms round trip). Timed: every call into the core, per
frame forwarded (caller frames + model chunks, as ``bench/run.py`` counts them), best of
rounds alternating off and on. The detector alone is timed by ``bench/speech_corpus.py``.
"""

# ruff: noqa: T201  (a command-line tool: it prints)

from __future__ import annotations

import heapq
import itertools
import json
import time

from voicebridge.core import realtime as rt
from voicebridge.core import twilio as tw
from voicebridge.core.actions import Playback, Probe
from voicebridge.core.call import CallCore
from voicebridge.core.local_barge_in import LocalSettings
from voicebridge.core.policy import CallPolicy
from voicebridge.fake_realtime.clips import clip_chunks
from voicebridge.twilio_sim.recordings import packaged_call

SID = "MZ" + "1" * 32
CALL_MS = 60_000
ANSWER_EVERY_MS, SPEED, RTT_MS = 5_500, 5.0, 120.0
SESSION = {
    "type": "realtime",
    "audio": {
        "input": {"format": {"type": "audio/pcmu"}, "turn_detection": {"type": "server_vad"}},
        "output": {"format": {"type": "audio/pcmu"}},
    },
}


def one_call(local: LocalSettings | None) -> tuple[float, int, int]:
    """(seconds in the core, frames forwarded, pauses) for one simulated call."""
    core = CallCore(rt.SessionConfig("hi", "marin"), CallPolicy(local_barge_in=local))
    start = tw.Start(SID, "CA" + "2" * 32, "AC" + "3" * 32, ("inbound",), "audio/x-mulaw", 8000, 1)
    core.receive_twilio(start, 0.0)
    core.receive_realtime(rt.SessionUpdated(SESSION), 0.0)
    line = packaged_call("books_a_table").payloads[300:520]  # line noise between turns
    deltas = [c.audio_b64 for c in clip_chunks(1, "audio/pcmu", 100)]  # 3.97 s
    media = [tw.Media(SID, i * 20, p, i + 1) for i, p in enumerate(line)]
    events: list[tuple[float, int, object]] = []  # (time, order, event)
    order = itertools.count()
    for t in range(0, CALL_MS, 20):
        heapq.heappush(events, (float(t), next(order), media[(t // 20) % len(media)]))
    for n, t in enumerate(range(1000, CALL_MS - 5000, ANSWER_EVERY_MS)):
        resp, item = f"resp_{n}", f"item_{n}"
        heapq.heappush(events, (float(t), next(order), rt.ResponseCreated(resp)))
        for k, d in enumerate(deltas):
            at = t + k * 100 / SPEED
            heapq.heappush(events, (at, next(order), rt.AudioDelta(resp, item, d)))
        end = t + len(deltas) * 100 / SPEED + 1
        heapq.heappush(
            events, (end, next(order), rt.ResponseDone(resp, "completed", None, None, []))
        )
    spent, frames, playing_until = 0.0, 0, 0.0
    clock = time.thread_time  # CPU time: a busy host does not count
    while events:
        now, _, event = heapq.heappop(events)
        began = clock()
        if isinstance(event, tw.Media | tw.Mark):
            actions = core.receive_twilio(event, now)
        else:
            actions = core.receive_realtime(event, now)  # type: ignore[arg-type]
        written = []
        for a in actions:
            if isinstance(a, Playback | Probe):
                written.append((a, core.render(a, now)))
        spent += clock() - began
        frames += isinstance(event, tw.Media)
        for a, rendered in written:
            if not isinstance(a, Playback):
                continue
            frames += 1
            playing_until = max(playing_until, now + RTT_MS / 2) + a.ms
            for text in rendered.messages:
                msg = json.loads(text)
                if msg["event"] == "mark" and msg["mark"]["name"].startswith("a"):
                    echo = tw.Mark(SID, msg["mark"]["name"])
                    heapq.heappush(events, (playing_until + RTT_MS / 2, next(order), echo))
    return spent, frames, core.stats.local_pauses


def main() -> None:
    best: dict[str, float] = {"off": float("inf"), "on": float("inf")}
    pauses = 0
    for _ in range(7):
        for mode, local in (("off", None), ("on", LocalSettings())):
            spent, frames, paused = one_call(local)
            best[mode] = min(best[mode], spent / frames * 1e6)
            pauses += paused
    extra = best["on"] - best["off"]
    print("| core per frame forwarded | LOCAL_BARGE_IN=off | on | on − off |")
    print("|---|---:|---:|---:|")
    print(f"| µs (best of 7) | {best['off']:.2f} | {best['on']:.2f} | {extra:+.2f} |")
    print(f"\npauses on line noise: {pauses}")


if __name__ == "__main__":
    main()
