"""FrameQueue: control before audio, bounded audio that drops the oldest, overflow of control."""

from __future__ import annotations

import asyncio

import pytest

from voicebridge.server.queues import FrameQueue, QueueOverflow, QueueStats


def drain(q: FrameQueue[str]) -> list[str]:
    out = []
    while (item := q.get_nowait()) is not None:
        out.append(item)
    return out


def test_control_goes_out_before_audio() -> None:
    """Control items queued after audio are still delivered first, each lane in FIFO order."""
    q: FrameQueue[str] = FrameQueue(max_audio=10)
    q.put_audio("a1")
    q.put_audio("a2")
    q.put_control("c1")
    q.put_audio("a3")
    q.put_control("c2")
    assert drain(q) == ["c1", "c2", "a1", "a2", "a3"]


async def test_get_also_prefers_control() -> None:
    """The awaitable get() gives control first, then audio in order."""
    q: FrameQueue[str] = FrameQueue(max_audio=10)
    q.put_audio("a1")
    q.put_control("c1")
    assert [await q.get(), await q.get()] == ["c1", "a1"]


def test_full_audio_drops_the_oldest_and_counts_it() -> None:
    """At max_audio, a new audio item evicts the oldest, put_audio returns False and dropped counts it."""
    q: FrameQueue[str] = FrameQueue(max_audio=3)
    assert [q.put_audio(x) for x in ("a1", "a2", "a3")] == [True, True, True]
    assert q.dropped == 0
    assert q.put_audio("a4") is False
    assert q.put_audio("a5") is False
    assert q.dropped == 2
    assert drain(q) == ["a3", "a4", "a5"]
    assert q.put_audio("a6") is True
    assert q.dropped == 2


def test_control_does_not_count_toward_the_audio_limit() -> None:
    """Queued control items never make audio drop."""
    q: FrameQueue[str] = FrameQueue(max_audio=2)
    for i in range(5):
        q.put_control(f"c{i}")
    assert q.put_audio("a1") is True
    assert q.put_audio("a2") is True
    assert q.dropped == 0


def test_drain_audio_forgets_audio_and_keeps_control() -> None:
    """drain_audio empties only the audio lane and returns how many items it removed."""
    q: FrameQueue[str] = FrameQueue(max_audio=10)
    for x in ("a1", "a2", "a3"):
        q.put_audio(x)
    q.put_control("clear")
    assert q.drain_audio() == 3
    assert q.drain_audio() == 0
    assert drain(q) == ["clear"]


def test_control_overflow_raises() -> None:
    """More than max_control waiting control items raises QueueOverflow and does not queue the extra one."""
    q: FrameQueue[str] = FrameQueue(max_audio=10, max_control=3)
    for i in range(3):
        q.put_control(f"c{i}")
    with pytest.raises(QueueOverflow):
        q.put_control("c3")
    assert drain(q) == ["c0", "c1", "c2"]
    q.put_control("again")  # room again once the consumer has read
    assert q.get_nowait() == "again"


def test_get_nowait_on_empty_is_none() -> None:
    """get_nowait returns None when both lanes are empty."""
    assert FrameQueue[str](max_audio=1).get_nowait() is None


async def test_get_waits_for_an_audio_put() -> None:
    """get() on an empty queue waits until audio is put, then returns it."""
    q: FrameQueue[str] = FrameQueue(max_audio=4)
    task = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not task.done()
    q.put_audio("a1")
    assert await asyncio.wait_for(task, 1) == "a1"


async def test_get_waits_for_a_control_put() -> None:
    """get() on an empty queue also wakes for a control item."""
    q: FrameQueue[str] = FrameQueue(max_audio=4)
    task = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not task.done()
    q.put_control("mark")
    assert await asyncio.wait_for(task, 1) == "mark"


async def test_get_keeps_waiting_after_a_drained_put() -> None:
    """If the audio that woke get() is drained before it runs, get() waits for the next item."""
    q: FrameQueue[str] = FrameQueue(max_audio=4)
    task = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.put_audio("stale")
    q.drain_audio()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not task.done()
    q.put_audio("fresh")
    assert await asyncio.wait_for(task, 1) == "fresh"


async def test_get_after_consuming_everything_waits_again() -> None:
    """Once the queue is emptied, a later get() blocks until the next put."""
    q: FrameQueue[str] = FrameQueue(max_audio=4)
    q.put_audio("a1")
    assert await q.get() == "a1"
    task = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not task.done()
    q.put_audio("a2")
    assert await asyncio.wait_for(task, 1) == "a2"


def test_statistics() -> None:
    """statistics() reports waiting audio and control, the audio limit and the drop count."""
    q: FrameQueue[str] = FrameQueue(max_audio=2, max_control=8)
    assert q.statistics() == QueueStats(audio_waiting=0, control_waiting=0, max_audio=2, dropped=0)
    for x in ("a1", "a2", "a3"):
        q.put_audio(x)
    q.put_control("c1")
    assert q.statistics() == QueueStats(audio_waiting=2, control_waiting=1, max_audio=2, dropped=1)
    q.get_nowait()
    q.drain_audio()
    assert q.statistics() == QueueStats(audio_waiting=0, control_waiting=0, max_audio=2, dropped=1)


async def test_taken_counts_items_handed_out_and_waiting_counts_both_lanes() -> None:
    """The consumer's progress, which the upstream stall watch reads."""
    q: FrameQueue[str] = FrameQueue(max_audio=2)
    q.put_audio("a1")
    q.put_audio("a2")
    q.put_audio("a3")  # drops a1: dropped items were never taken
    q.put_control("c1")
    assert (q.taken, q.waiting()) == (0, 3)
    assert await q.get() == "c1"
    assert q.get_nowait() == "a2"
    assert (q.taken, q.waiting()) == (2, 1)
    q.drain_audio()
    assert q.get_nowait() is None
    assert (q.taken, q.waiting()) == (2, 0)


async def test_a_second_waiting_consumer_is_refused() -> None:
    """One consumer per queue: a second waiter would miss wake-ups, so it fails loudly."""
    q: FrameQueue[str] = FrameQueue(max_audio=2)
    first = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="one consumer"):
        await q.get()
    q.put_audio("a1")
    assert await first == "a1"


async def test_a_cancelled_get_leaves_the_queue_usable() -> None:
    q: FrameQueue[str] = FrameQueue(max_audio=2)
    waiting = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    q.put_control("c1")
    assert await asyncio.wait_for(q.get(), 1) == "c1"
