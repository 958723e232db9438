"""Prometheus metrics: call counters read from live calls at scrape time, latency histograms.

Nothing here runs per audio frame: counters are summed from each call's own statistics
when ``/metrics`` is scraped (finished calls are folded into totals as they end), and the
histograms observe a handful of events per call.
"""

from __future__ import annotations

import asyncio
import platform
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Gauge,
    Histogram,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from voicebridge import __version__
from voicebridge.core.stats import CONNECT_FAILURES, CallStats

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


def _totals(stats: CallStats) -> Counter[str]:
    """A call's counters, flattened to metric-name keys (labels after '|')."""
    c: Counter[str] = Counter()
    c["frames_in"] = stats.frames_in
    c["chunks_out"] = stats.chunks_out
    c["audio_out_seconds"] = int(stats.audio_out_ms)  # kept in ms, scaled on export
    c["barge_ins"] = stats.barge_ins
    c["truncations"] = stats.truncations
    c["truncated_heard_ms"] = int(stats.truncated_heard_ms)
    c["truncated_sent_ms"] = int(stats.truncated_sent_ms)
    c["local_pauses"] = stats.local_pauses
    c["false_interruptions"] = stats.false_interruptions
    c["silence_frames"] = stats.silence_frames
    c["reconnects"] = stats.reconnects
    c["idle_reprompts"] = stats.idle_reprompts
    c["responses"] = stats.responses
    c["failed_responses"] = stats.failed_responses
    c["dtmf"] = stats.dtmf
    c["drops|late_delta"] = stats.late_deltas_dropped
    c["drops|caller_queue"] = stats.caller_queue_dropped
    c["drops|caller_pacing"] = stats.caller_paced_dropped  # beyond real time + CALLER_BURST_MS
    c["drops|playback_queue"] = stats.playback_queue_dropped
    for reason, n in stats.ignored.items():
        c[f"drops|twilio:{reason}"] = n
    for reason, n in stats.upstream_ignored.items():
        c[f"drops|upstream:{reason}"] = n
    for code, n in stats.upstream_errors.items():
        c[f"upstream_errors|{code}"] = n
    for reason, n in stats.upstream_connect_failures.items():
        c[f"upstream_connect_failures|{reason}"] = n
    for kind, n in stats.tokens.items():
        c[f"tokens|{kind}"] = n
    return c


class _CallsCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        totals = Counter(self.m.finished)
        for stats in self.m.live():
            totals.update(_totals(stats))
        for reason in CONNECT_FAILURES:  # each reason shown from the start, at 0
            totals.setdefault(f"upstream_connect_failures|{reason}", 0)
        yield from _families(totals, self.m)


_SIMPLE = {
    "frames_in": ("voicebridge_caller_frames", "20 ms caller frames forwarded upstream"),
    "chunks_out": ("voicebridge_model_chunks", "model audio chunks written to Twilio"),
    "barge_ins": ("voicebridge_barge_ins", "times the caller talked over the model"),
    "truncations": ("voicebridge_truncations", "conversation.item.truncate sent"),
    "local_pauses": (
        "voicebridge_local_pauses",
        "LOCAL_BARGE_IN: the assistant paused on caller speech heard by the bridge",
    ),
    "false_interruptions": (
        "voicebridge_false_interruptions",
        "LOCAL_BARGE_IN: pauses not confirmed by the upstream, resumed",
    ),
    "silence_frames": ("voicebridge_silence_frames", "silence frames fed during media gaps"),
    "reconnects": ("voicebridge_upstream_reconnects", "lost upstreams replaced mid-call"),
    "idle_reprompts": ("voicebridge_idle_reprompts", "silent callers re-prompted"),
    "responses": ("voicebridge_responses", "model responses started"),
    "failed_responses": ("voicebridge_failed_responses", "model responses that failed"),
    "dtmf": ("voicebridge_dtmf_digits", "keypad digits received"),
}
_LABELLED = {
    "drops": ("voicebridge_dropped", "input dropped, by reason", "reason"),
    "upstream_errors": ("voicebridge_upstream_errors", "upstream error events, by code", "code"),
    "upstream_connect_failures": (
        "voicebridge_upstream_connect_failures",
        "upstream connections that never opened, by reason",
        "reason",
    ),
    "tokens": ("voicebridge_tokens", "tokens used, by kind", "kind"),
}


def _families(totals: Counter[str], m: Metrics) -> Iterable[Metric]:
    for key, (name, doc) in _SIMPLE.items():
        yield CounterMetricFamily(name, doc, value=totals[key])
    yield CounterMetricFamily(
        "voicebridge_model_audio_seconds",
        "model audio written to Twilio",
        value=totals["audio_out_seconds"] / 1000,
    )
    yield CounterMetricFamily(
        "voicebridge_truncated_heard_seconds",
        "audio the caller heard of interrupted items",
        value=totals["truncated_heard_ms"] / 1000,
    )
    yield CounterMetricFamily(
        "voicebridge_truncated_sent_seconds",
        "audio sent to Twilio of interrupted items",
        value=totals["truncated_sent_ms"] / 1000,
    )
    for prefix, (name, doc, label) in _LABELLED.items():
        family = CounterMetricFamily(name, doc, labels=[label])
        for key, value in sorted(totals.items()):
            if key.startswith(prefix + "|"):
                family.add_metric([key.split("|", 1)[1]], value)
        yield family
    yield labelled_counter(
        "voicebridge_calls",
        "calls ended, by outcome (failed, deliberate, idle, transfer, caller_hangup, forced)",
        "outcome",
        m.outcomes,
    )
    yield labelled_counter(
        "voicebridge_rejected_requests", "requests refused, by reason", "reason", m.rejected()
    )
    yield labelled_counter(
        "voicebridge_stream_status", "Twilio stream status callbacks", "event", m.stream_events
    )
    yield labelled_counter(
        "voicebridge_after_stream",
        "<Connect action> requests answered, by answer (hangup, transfer, failed, unknown)",
        "answer",
        m.after_stream,
    )
    yield labelled_counter(
        "voicebridge_webhook_errors",
        "webhooks answered with the failure TwiML, by reason",
        "reason",
        m.webhook_errors,
    )
    yield CounterMetricFamily(
        "voicebridge_recording_failures",
        "RECORD_DIR writes that failed (the calls went on unrecorded)",
        value=m.recording_failures(),
    )
    yield GaugeMetricFamily("voicebridge_active_calls", "calls in progress", value=len(m.live()))


def labelled_counter(
    name: str, doc: str, label: str, counts: Mapping[str, float]
) -> CounterMetricFamily:
    """A counter family with one sample per label value, in a stable order."""
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, n in sorted(counts.items()):
        family.add_metric([value], n)
    return family


class Metrics:
    """One registry per app (tests run many apps in one process)."""

    def __init__(
        self,
        live: Callable[[], list[CallStats]],
        rejected: Callable[[], Counter[str]],
        recording_failures: Callable[[], int] = lambda: 0,
    ) -> None:
        self.registry = CollectorRegistry()
        self.live = live
        self.rejected = rejected
        self.recording_failures = recording_failures
        self.finished: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.stream_events: Counter[str] = Counter()
        self.webhook_errors: Counter[str] = Counter()
        self.after_stream: Counter[str] = Counter()  # by answer: an OutcomeKind or "unknown"
        self.registry.register(_CallsCollector(self))
        # The process-wide collectors prometheus_client puts on its default registry (CPU, RSS,
        # open descriptors, python_info, GC): stateless readers, so one instance serves every
        # app's registry.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        build = Gauge(
            "voicebridge_build_info",
            "the running voicebridge: always 1, the version in the labels",
            ["version", "python"],
            registry=self.registry,
        )
        build.labels(__version__, platform.python_version()).set(1)
        self.upstream_connect = Histogram(
            "voicebridge_upstream_connect_seconds",
            "time to open the Realtime connection",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_audio = Histogram(
            "voicebridge_first_assistant_audio_seconds",
            "Twilio `start` to the first model audio written",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.response_latency = Histogram(
            "voicebridge_response_latency_seconds",
            "the caller's end of speech (VAD) to the model's first audio written",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        tasks = Gauge(
            "voicebridge_event_loop_tasks",
            "tasks in the server's event loop",
            registry=self.registry,
        )
        tasks.set_function(lambda: len(asyncio.all_tasks()))

    def observe(self, name: str, ms: float) -> None:
        histogram = {
            "first_audio": self.first_audio,
            "response_latency": self.response_latency,
            "upstream_connect": self.upstream_connect,
        }.get(name)
        if histogram is not None:
            histogram.observe(ms / 1000)

    def call_ended(self, stats: CallStats, outcome: str) -> None:
        self.finished.update(_totals(stats))
        self.outcomes[outcome] += 1
