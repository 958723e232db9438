"""/metrics under --workers: several processes' expositions summed into one view."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from voicebridge.server.worker_peers import merge_expositions


def worker(calls: int, latency: float, degraded: int) -> str:
    registry = CollectorRegistry()
    counter = Counter("voicebridge_calls", "calls", ["outcome"], registry=registry)
    counter.labels("ok").inc(calls)
    Histogram("voicebridge_latency_seconds", "l", registry=registry).observe(latency)
    Gauge("voicebridge_redis_degraded", "d", registry=registry).set(degraded)
    Gauge("process_start_time_seconds", "s", registry=registry).set(100 + calls)
    return generate_latest(registry).decode()


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_counters_and_histograms_add_up_across_workers() -> None:
    """Counters and histogram buckets are summed; the view says how many workers it holds."""
    merged = samples(merge_expositions([worker(3, 0.2, 0), worker(4, 2.0, 0)]))
    assert merged[("voicebridge_calls_total", (("outcome", "ok"),))] == 7
    assert merged[("voicebridge_latency_seconds_count", ())] == 2
    assert merged[("voicebridge_latency_seconds_bucket", (("le", "0.25"),))] == 1
    assert merged[("voicebridge_latency_seconds_sum", ())] == 2.2
    assert merged[("voicebridge_workers_scraped", ())] == 2


def test_start_times_are_the_earliest_and_states_the_largest() -> None:
    """A start time or a creation time is the earliest; a 0/1 state is 1 if any worker's is."""
    merged = samples(merge_expositions([worker(3, 0.2, 0), worker(4, 2.0, 1)]))
    assert merged[("process_start_time_seconds", ())] == 103
    assert merged[("voicebridge_redis_degraded", ())] == 1
    created = [v for (name, _), v in merged.items() if name == "voicebridge_calls_created"]
    assert len(created) == 1 and created[0] > 0
