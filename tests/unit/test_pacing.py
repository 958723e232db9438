"""The caller-audio budget: real time passes, a flood does not."""

from __future__ import annotations

from voicebridge.core.pacing import AudioBudget


def test_real_time_audio_always_passes() -> None:
    budget = AudioBudget(burst_ms=2000)
    assert all(budget.take(20, now=20.0 * i) for i in range(10_000))


def test_a_burst_after_a_hiccup_passes_up_to_the_allowance() -> None:
    budget = AudioBudget(burst_ms=2000)
    assert all(budget.take(20, now=0.0) for _ in range(100))  # 2 s held back, then sent at once
    assert not budget.take(20, now=0.0)
    assert budget.take(20, now=20.0)  # real time refills it


def test_a_flood_is_held_to_real_time_plus_the_burst() -> None:
    budget = AudioBudget(burst_ms=2000)
    # 10 s of audio sent within 100 ms of wall time (100x real time).
    passed = sum(budget.take(20, now=i * 0.2) for i in range(500))
    assert passed * 20 <= 2000 + 100 + 20


def test_unused_time_is_not_banked_beyond_the_allowance() -> None:
    budget = AudioBudget(burst_ms=2000)
    budget.take(20, now=0.0)
    assert sum(budget.take(20, now=60_000.0) for _ in range(200)) == 100
