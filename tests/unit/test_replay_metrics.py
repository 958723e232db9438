"""The replay's per-call measurements and report, from playback records built by hand."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest

from voicebridge.replay.metrics import CallMetrics, call_metrics
from voicebridge.replay.progress import Progress, Snapshot
from voicebridge.replay.report import CallOutcome, ReplayReport, percentile, summarize
from voicebridge.twilio_sim.player import TwilioPlayer

CHUNK_100MS = base64.b64encode(b"\x00" * 800).decode()


def player(*arrivals: float, playout_ms: float = 0.0) -> TwilioPlayer:
    p = TwilioPlayer(playout_ms)
    for at in arrivals:
        p.media(CHUNK_100MS, at)
    return p


def test_response_latency_is_end_of_speech_to_next_audio() -> None:
    """Each utterance is answered by the first audio after it ends and before the next begins."""
    p = player(1500, 1600, 5200, 5300)
    m = call_metrics(p.chunks, [], [(0, 1000), (3000, 4000), (9000, 9500)], call_end_ms=15_000)
    assert m.response_ms == [500, 1200]
    assert m.utterances == 3 and m.unanswered == 1
    assert m.first_audio_ms == 1500
    assert m.turns == 2 and m.gaps_ms == []
    assert m.heard_ms == 400


def test_an_utterance_just_before_hang_up_is_not_unanswered() -> None:
    """Speech ending within the grace period of the call's end is neither answered nor unanswered."""
    m = call_metrics([], [], [(0, 1000)], call_end_ms=2000)
    assert m.utterances == 1 and m.unanswered == 0 and m.response_ms == []
    assert m.first_audio_ms is None and m.jitter_ms is None


def test_barge_in_latency_and_audio_heard_until_the_clear() -> None:
    """Speaking over playing audio: clear latency, and the audio heard between speech and clear."""
    p = player(0, 10, 20, 30, 40)  # 500 ms of audio playing from 0 to 500
    p.clear(330)
    m = call_metrics(p.chunks, p.clears, [(250, 900)], call_end_ms=5000)
    assert m.barge_in_ms == [80]
    assert m.heard_after_barge_in_ms == pytest.approx([80])
    assert m.barge_ins_uncleared == 0


def test_every_barge_in_of_a_call_is_measured_across_clears() -> None:
    """Three bursts, three barge-ins: each cleared one is timed, the uncleared one counted.

    After a clear, new audio starts before the cut audio queued ahead of it would have: the
    chunks' start times are no longer in order, and a later barge-in must still be found.
    """
    p = player(*[0] * 10)  # a burst queued to play from 0 to 1000
    p.clear(250)  # the caller spoke at 200
    p.media(CHUNK_100MS, 400)  # a second burst, 400 to 900: before the cut audio's times
    for _ in range(4):
        p.media(CHUNK_100MS, 410)
    p.clear(680)  # the caller spoke at 600
    for _ in range(3):
        p.media(CHUNK_100MS, 1500)  # a third burst, 1500 to 1800: spoken over, never cleared
    assert [c.start for c in p.chunks][9:11] == [900, 400]
    speech = [(200, 300), (600, 650), (1600, 1700)]
    m = call_metrics(p.chunks, p.clears, speech, call_end_ms=5000)
    assert m.barge_in_ms == [50, 80]
    assert m.heard_after_barge_in_ms == pytest.approx([50, 80])
    assert m.barge_ins_uncleared == 1


def test_speech_over_audio_without_a_clear_is_counted() -> None:
    """Audio that plays on through the caller's speech is an uncleared barge-in."""
    p = player(0, 10, 20)
    m = call_metrics(p.chunks, [], [(150, 400)], call_end_ms=5000)
    assert m.barge_in_ms == [] and m.barge_ins_uncleared == 1
    m = call_metrics(p.chunks, [], [(350, 400)], call_end_ms=5000)  # audio already over
    assert m.barge_ins_uncleared == 0


def test_gaps_jitter_and_lead_within_a_turn() -> None:
    """A chunk that comes after the buffer ran dry is a gap; a long silence starts a new turn."""
    # Real-time arrivals (100 ms apart), one late by 50 ms, then a new turn 3 s later.
    p = player(0, 100, 250, 350, 3500, 3510)
    m = call_metrics(p.chunks, [], [], call_end_ms=6000)
    assert m.turns == 2
    assert m.gaps_ms == [50]  # the buffer was empty from 200 to 250
    assert m.behind_ms == 50
    assert m.ahead_ms == 190  # second turn: 200 ms received within 10 ms
    assert m.jitter_ms is not None and 0 < m.jitter_ms < 50


def test_playout_delay_hides_late_chunks() -> None:
    """With a playout buffer, a chunk late by less than it is not a gap."""
    p = player(0, 100, 250, playout_ms=80)
    m = call_metrics(p.chunks, [], [], call_end_ms=1000)
    assert m.gaps_ms == [] and m.behind_ms == 50


def test_percentiles_interpolate() -> None:
    """p50/p95/p99 interpolate between ranks; a summary of nothing is None."""
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([7.0], 95) == 7.0
    s = summarize(reversed(values))
    assert s is not None and s["count"] == 100 and s["min"] == 1 and s["max"] == 100
    assert summarize([]) is None


def test_exit_code_and_report_shape() -> None:
    """Exit 0 only when every call was ok with no violation; reasons are counted."""
    ok = CallOutcome(
        0, "rec", "CA1", ok=True, webhook_ms=3.0, metrics=CallMetrics(response_ms=[400.0])
    )
    report = ReplayReport({"mode": "webhook"}, {}, [ok], 1.0)
    assert report.exit_code == 0
    data = report.as_json()
    assert data["timings_ms"]["response"]["p50"] == 400.0
    assert data["timings_ms"]["barge_in"] is None
    assert any("response" in line for line in report.table())
    ok.violations = 1
    assert ReplayReport({}, {}, [ok], 1.0).exit_code == 1
    ok.violations = 0
    bad = CallOutcome(1, "rec", "CA2", reason="busy")
    report = ReplayReport({}, {}, [ok, bad], 1.0)
    assert report.exit_code == 1 and report.as_json()["calls"]["failed_reasons"] == {"busy": 1}
    # How ok calls ended is counted apart from why calls failed, in JSON and the table.
    ok.reason = "ended_by_server"
    ended = CallOutcome(2, "rec", "CA3", ok=True, reason="caller_hung_up")
    report = ReplayReport({}, {}, [ok, ended, bad], 1.0)
    calls = report.as_json()["calls"]
    assert calls["ok_reasons"] == {"ended_by_server": 1, "caller_hung_up": 1}
    assert calls["failed_reasons"] == {"busy": 1} and (calls["ok"], calls["failed"]) == (2, 1)
    table = report.table()
    assert table[0].startswith("calls: 3 total, 2 ok, 1 failed")
    assert table[1:4] == [
        "  ok: ended_by_server x1",
        "  ok: caller_hung_up x1",
        "  failed: busy x1",
    ]
    assert ReplayReport({}, {}, [], 0.0).exit_code == 1  # no call at all is not a success


async def test_plain_progress_prints_a_last_line_for_a_short_run() -> None:
    """Off a terminal, lines come every 5 s; a run shorter than that still gets its last line,
    with rates over the whole run."""
    out = io.StringIO()
    snaps = iter([Snapshot(2, 0, 0, 0, 0), Snapshot(0, 2, 1, 100, 50)])
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, stop.set)
    await Progress(out, live=False).run(lambda: next(snaps), stop)
    [line] = out.getvalue().splitlines()
    assert "active 0  done 2  failed 1" in line
    sent = int(line.split("frames/s out ")[1].split()[0])
    assert 0 < sent < 1100  # 100 frames in about 0.1 s (or more, on a slow machine)
