"""The heard-position estimate against a simulated Twilio, without sockets or clocks."""

from __future__ import annotations

import base64
import heapq
import random

import pytest

from voicebridge.core.playback import PlaybackTracker
from voicebridge.twilio_sim.player import TwilioPlayer

CHUNK = base64.b64encode(b"\x7f" * 800).decode()  # 100 ms of μ-law


def simulate(
    *,
    down: float,
    up: float,
    playout: float,
    jitter: float,
    barge_at: float,
    runs: list[tuple[float, int]],
    seed: int,
) -> tuple[float, float, str | None]:
    """Play runs of 100 ms chunks, written 20 ms apart from each run's start time.

    Returns (estimated heard ms, actually heard ms) of the item the clear cuts, and its id.
    """
    rng = random.Random(seed)
    tracker = PlaybackTracker()
    player = TwilioPlayer(playout)

    def j() -> float:
        return rng.uniform(0, jitter)

    # Bridge-side events in time order: ("write", item) and ("echo", name).
    writes: list[tuple[float, str]] = []
    for n, (start, count) in enumerate(runs):
        writes += [(start + 20 * i, f"item{n}") for i in range(count)]
    events: list[tuple[float, int, str, str]] = [(0.0, 0, "probe", "")]
    seq = 1
    for t, item in writes:
        if t < barge_at:
            events.append((t, seq, "write", item))
            seq += 1
    heapq.heapify(events)
    last_down = 0.0
    last_up = 0.0
    pending_echo: list[tuple[float, int, str, str]] = []
    while events:
        t, _, kind, data = heapq.heappop(events)
        if t >= barge_at:
            break
        if kind == "probe":
            name = tracker.probe(t)
            arrive = last_down = max(t + down + j(), last_down)
            player.mark(name, arrive)
        elif kind == "write":
            name = tracker.audio_written(data, 100.0, t)
            arrive = last_down = max(t + down + j(), last_down)
            player.media(CHUNK, arrive)
            player.mark(name, arrive)
        elif kind == "echo":
            tracker.mark_echoed(data, t)
        for echo_at, echo_name in player.due_echoes(float("inf")):
            due = last_up = max(echo_at + up + j(), last_up)
            seq += 1
            heapq.heappush(events, (due, seq, "echo", echo_name))
    del pending_echo
    cut = tracker.item_at(barge_at)
    estimate = tracker.heard_ms(cut, barge_at) if cut else 0.0
    land = max(barge_at + down + j(), last_down)
    player.cut(land)
    # Chunks of the cut item: those written for it, in order.
    sent = [c for c in player.chunks]
    per_item: dict[str, float] = {}
    idx = 0
    for t, it in writes:
        if t < barge_at:
            per_item[it] = per_item.get(it, 0.0) + sent[idx].played
            idx += 1
    return estimate, per_item.get(cut or "", 0.0), cut


def test_probe_measures_round_trip() -> None:
    """A mark sent while Twilio is idle comes straight back and sets the round trip."""
    tracker = PlaybackTracker()
    name = tracker.probe(1000.0)
    assert tracker.mark_echoed(name, 1120.0) == "probe"
    assert tracker.rtt_ms == pytest.approx(120.0)


def test_no_network_is_exact() -> None:
    """With no delay, the estimate equals what was played."""
    est, real, item = simulate(
        down=0, up=0, playout=0, jitter=0, barge_at=1750, runs=[(500, 30)], seed=1
    )
    assert item == "item0"
    assert real == pytest.approx(1250, abs=1)
    assert est == pytest.approx(real, abs=1)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("barge_at", [900, 1400, 2300, 3100])
def test_estimate_within_jitter_on_a_slow_network(seed: int, barge_at: float) -> None:
    """60 ms each way, 20 ms jitter, 60 ms playout: the error stays near the jitter."""
    est, real, item = simulate(
        down=60, up=60, playout=60, jitter=20, barge_at=barge_at, runs=[(500, 30)], seed=seed
    )
    assert item == "item0"
    assert abs(est - real) <= 45, (est, real)


@pytest.mark.parametrize("seed", range(8))
def test_new_run_after_the_buffer_ran_dry(seed: int) -> None:
    """A second response after silence is projected from its own start, not the first's."""
    est, real, item = simulate(
        down=60,
        up=60,
        playout=60,
        jitter=20,
        barge_at=6650,
        runs=[(500, 10), (6000, 30)],
        seed=seed,
    )
    assert item == "item1"
    assert abs(est - real) <= 60, (est, real)


def test_elapsed_time_alone_would_overcount() -> None:
    """The naive 'time since first delta' is far off where the estimator is not."""
    est, real, _ = simulate(
        down=60, up=60, playout=60, jitter=0, barge_at=2000, runs=[(500, 30)], seed=0
    )
    naive = 2000 - 500
    assert abs(naive - real) >= 50  # off by Twilio's playout delay
    assert abs(est - real) <= 5


def test_clear_makes_pending_echoes_stale() -> None:
    """Echoes of marks sent before a clear are ignored; later ones count."""
    tracker = PlaybackTracker()
    first = tracker.audio_written("a", 100.0, 0.0)
    second = tracker.audio_written("a", 100.0, 10.0)
    tracker.cleared()
    assert tracker.mark_echoed(first, 50.0) == "cleared"
    assert tracker.mark_echoed(second, 50.0) == "cleared"
    after = tracker.audio_written("b", 100.0, 60.0)
    assert tracker.mark_echoed(after, 200.0) == "audio"
    assert tracker.mark_echoed("bogus", 200.0) == "unknown"
    assert tracker.mark_echoed("a999", 200.0) == "unknown"


def test_heard_is_capped_at_written() -> None:
    """However late the clear, heard never exceeds what was written for the item."""
    tracker = PlaybackTracker()
    for i in range(3):
        tracker.audio_written("a", 100.0, float(i))
    assert tracker.heard_ms("a", 100_000.0) == pytest.approx(300.0)
    assert not tracker.playing(100_000.0)
    assert tracker.item_at(100_000.0) is None
    assert tracker.heard_ms("unknown", 0.0) == 0.0
