"""A call's counters and latency samples."""

from __future__ import annotations

from voicebridge.core.actions import Timing
from voicebridge.core.stats import CallStats, Latency


def test_ignored_input_is_counted_and_first_seen_once() -> None:
    """Every ignore is counted; only the first of a reason is worth a log line."""
    stats = CallStats()
    assert stats.count_ignored("x")
    assert not stats.count_ignored("x")
    assert stats.count_upstream_ignored("x")  # a separate counter
    assert stats.ignored == {"x": 2} and stats.upstream_ignored == {"x": 1}


def test_upstream_error_codes_are_bounded() -> None:
    """A peer cannot grow the counter without bound: long codes cut, extra codes as other."""
    stats = CallStats()
    stats.count_upstream_error("c" * 100)
    assert list(stats.upstream_errors) == ["c" * 48]
    for n in range(40):
        stats.count_upstream_error(f"code{n}")
    assert len(stats.upstream_errors) == 33  # 32 codes, then "other"
    assert stats.upstream_errors["other"] == 9
    stats.count_upstream_error("code0")  # a known code is still counted as itself
    assert stats.upstream_errors["code0"] == 2


def test_usage_adds_whole_numbers_only() -> None:
    """Missing or malformed usage fields are skipped."""
    stats = CallStats()
    stats.add_usage(None)
    stats.add_usage({"total_tokens": 5, "input_tokens": "3", "output_tokens": 2})
    stats.add_usage({"total_tokens": 1})
    assert stats.tokens == {"total_tokens": 6, "output_tokens": 2}


def test_latency_samples() -> None:
    """First audio is timed from the start; response latency from the end of speech, once."""
    latency = Latency()
    assert latency.audio_written(300.0, 100.0, first=True) == (Timing("first_audio", 200.0),)
    assert latency.audio_written(400.0, None, first=True) == ()  # no start: no sample
    latency.speech_stopped(1000.0)
    assert latency.audio_written(1250.0, 100.0, first=False) == (Timing("response_latency", 250.0),)
    assert latency.audio_written(1300.0, 100.0, first=False) == ()
