"""What one call counts and times: totals for the metrics and the call's end line."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from voicebridge.core.actions import Timing

__all__ = ["CONNECT_FAILURES", "CallStats", "Latency"]

# Why an upstream never opened (voicebridge_upstream_connect_failures_total{reason}): the
# key refused (401/403), another HTTP refusal, nothing within the deadline (or only refused
# connections), closed at once, or no session.updated within the connect timeout.
CONNECT_FAILURES = ("auth", "refused", "unreachable", "closed", "not_confirmed")
_MAX_COUNTER_KEYS = 32  # distinct upstream error codes kept per call
_MAX_CODE = 48  # characters of a peer's error code kept
# Unknown Twilio event names, for the call's end line only (never a metric label): a client
# picks them, so only a few short ones are kept.
_MAX_UNKNOWN_NAMES = 8
_MAX_UNKNOWN_NAME = 32


@dataclass(slots=True)
class CallStats:
    frames_in: int = 0
    chunks_out: int = 0
    audio_out_ms: float = 0.0
    barge_ins: int = 0
    truncations: int = 0
    truncated_heard_ms: float = 0.0
    truncated_sent_ms: float = 0.0
    # LOCAL_BARGE_IN: pauses on the caller's speech heard here; of them, those the upstream
    # confirmed (barge-ins) and those resumed unconfirmed (false interruptions).
    local_pauses: int = 0
    local_confirmed: int = 0
    false_interruptions: int = 0
    late_deltas_dropped: int = 0
    caller_queue_dropped: int = 0  # oldest caller audio dropped: the upstream was slow
    caller_paced_dropped: int = 0  # caller frames beyond real time plus CALLER_BURST_MS
    playback_queue_dropped: int = 0  # oldest model audio dropped: Twilio was slow
    silence_frames: int = 0  # fed upstream while Twilio sent no media
    idle_reprompts: int = 0
    failed_responses: int = 0
    incomplete_responses: int = 0
    responses: int = 0
    dtmf: int = 0
    ignored: Counter[str] = field(default_factory=Counter)  # Twilio input ignored, by reason
    unknown_events: Counter[str] = field(default_factory=Counter)  # by name, capped: end line
    upstream_ignored: Counter[str] = field(default_factory=Counter)  # upstream events dropped
    upstream_errors: Counter[str] = field(default_factory=Counter)  # by error code
    # Upstream connections that never opened, by reason (one of CONNECT_FAILURES)
    upstream_connect_failures: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0  # lost upstreams replaced
    renewals: int = 0  # sessions replaced at their age limit (SESSION_LIMIT_ACTION=renew)
    tokens: Counter[str] = field(default_factory=Counter)

    def count_ignored(self, reason: str) -> bool:
        """Count Twilio input ignored for ``reason``; True the first time (worth a log line)."""
        first = reason not in self.ignored
        self.ignored[reason] += 1
        return first

    def count_unknown_event(self, name: str) -> bool:
        """Count an unknown Twilio event: one ``unknown_event`` reason, the name kept apart
        (a few, cut short) for the end line; True the first time (worth a log line)."""
        name = name[:_MAX_UNKNOWN_NAME]
        names = self.unknown_events
        if name not in names and len(names) >= _MAX_UNKNOWN_NAMES:
            name = "other"
        names[name] += 1
        return self.count_ignored("unknown_event")

    def count_upstream_ignored(self, reason: str) -> bool:
        """Count an upstream event dropped for ``reason``; True the first time."""
        first = reason not in self.upstream_ignored
        self.upstream_ignored[reason] += 1
        return first

    def count_upstream_error(self, code: str) -> None:
        # Codes come from the peer: bound their length and how many distinct ones are kept.
        code = code[:_MAX_CODE]
        errors = self.upstream_errors
        if code not in errors and len(errors) >= _MAX_COUNTER_KEYS:
            code = "other"
        errors[code] += 1

    def add_usage(self, usage: dict[str, Any] | None) -> None:
        """Add a ``response.done``'s token usage (absent or malformed parts are skipped)."""
        if not usage:
            return
        for key in ("total_tokens", "input_tokens", "output_tokens"):
            value = usage.get(key)
            if isinstance(value, int):
                self.tokens[key] += value


class Latency:
    """Latency samples completed when model audio is written to Twilio.

    ``first_audio``: call start to the first chunk written. ``response_latency``: the caller's
    end of speech to the next chunk written.
    """

    def __init__(self) -> None:
        self._stopped_at: float | None = None  # the caller's last end of speech

    def speech_stopped(self, now: float) -> None:
        self._stopped_at = now

    def audio_written(
        self, now: float, started_at: float | None, first: bool
    ) -> tuple[Timing, ...]:
        timings: tuple[Timing, ...] = ()
        if first and started_at is not None:
            timings = (Timing("first_audio", now - started_at),)
        if self._stopped_at is not None:
            timings = (*timings, Timing("response_latency", now - self._stopped_at))
            self._stopped_at = None
        return timings
