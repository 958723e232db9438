"""StallWatch: a consumer is stalled only when items wait and none is taken for the limit."""

from __future__ import annotations

from voicebridge.core.stall import StallWatch


def test_waiting_items_with_no_progress_stall_after_the_limit() -> None:
    watch = StallWatch(limit=10.0)
    assert not watch.check(taken=5, waiting=3, now=100.0)
    assert not watch.check(taken=5, waiting=9, now=105.0)
    assert watch.stuck_for(105.0) == 5.0
    assert not watch.check(taken=5, waiting=20, now=109.9)
    assert watch.check(taken=5, waiting=30, now=110.0)


def test_any_progress_restarts_the_clock() -> None:
    watch = StallWatch(limit=10.0)
    watch.check(taken=5, waiting=3, now=100.0)
    assert not watch.check(taken=6, waiting=3, now=108.0)  # one item went out
    assert not watch.check(taken=6, waiting=3, now=117.9)
    assert watch.check(taken=6, waiting=3, now=118.0)


def test_an_empty_queue_is_idle_not_stalled() -> None:
    """No caller audio for a long time (no sends to make) is not a stall."""
    watch = StallWatch(limit=10.0)
    for t in range(0, 100, 5):
        assert not watch.check(taken=7, waiting=0, now=float(t))
    assert watch.stuck_for(100.0) == 0.0
    # Items that appear after the idle time get the full limit.
    assert not watch.check(taken=7, waiting=1, now=100.0)
    assert not watch.check(taken=7, waiting=4, now=109.0)
    assert watch.check(taken=7, waiting=4, now=110.0)


def test_the_first_check_only_sets_the_baseline() -> None:
    """A watch started on a busy queue does not count time from before it started."""
    watch = StallWatch(limit=1.0)
    assert not watch.check(taken=0, waiting=50, now=1000.0)
    assert watch.check(taken=0, waiting=50, now=1001.0)
