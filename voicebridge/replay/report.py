"""The replay's report: each call's outcome, totals, and p50/p95/p99 of every timing.

``ReplayReport.as_json()`` is the machine-readable form (``--json FILE``);
``ReplayReport.table()`` the lines printed at the end of a run.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from voicebridge.replay.metrics import CallMetrics

__all__ = ["TIMINGS", "CallOutcome", "ReplayReport", "percentile", "summarize"]

# (JSON key, label in the table, what it measures)
TIMINGS: tuple[tuple[str, str, str], ...] = (
    ("webhook", "webhook", "POST to TwiML parsed"),
    ("connect", "connect", "WebSocket connect to open"),
    ("first_audio", "first audio", "start sent to the first assistant media"),
    ("response", "response", "caller's end of speech to the next assistant media"),
    ("barge_in", "barge-in", "caller speaks over the assistant to clear"),
    ("heard_after_barge_in", "heard after barge-in", "assistant audio heard before the clear"),
    ("jitter", "outbound jitter", "RFC 3550 interarrival jitter of assistant audio, per call"),
    ("ahead", "ahead of real time", "most assistant audio buffered ahead, per call"),
    ("behind", "behind real time", "latest assistant chunk against real time, per call"),
    ("gap", "playback gap", "silence while the buffer ran dry mid-turn"),
    ("send_lag", "sender lag", "latest caller frame against its schedule, per call"),
)


@dataclass
class CallOutcome:
    """One call of the run."""

    index: int
    recording: str
    call_sid: str
    ok: bool = False
    # A stable label: why the call failed, or how an ok call ended ("caller_hung_up", or
    # "ended_by_server": the server closed with 1000, e.g. the assistant's end_call).
    reason: str | None = None
    detail: str | None = None  # the error, or what Twilio runs after the server closed
    # The verbs Twilio ran after the server closed the stream ("Hangup", "Say Hangup",
    # "Dial"): the <Connect action>'s answer. None when the caller hung up.
    after_stream: str | None = None
    cut_by_run_end: bool = False  # hung up when the run's duration ran out
    webhook_ms: float | None = None
    connect_ms: float | None = None
    duration_ms: float | None = None
    frames_sent: int = 0
    frames_received: int = 0
    echoes_sent: int = 0
    clears: int = 0
    violations: int = 0
    violation_samples: list[str] = field(default_factory=list)
    close_code: int | None = None
    send_lag_ms: float | None = None
    metrics: CallMetrics | None = None


def percentile(ordered: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of sorted values, interpolating between ranks."""
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * p / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def summarize(values: Iterable[float]) -> dict[str, float] | None:
    """count, min, mean, p50, p95, p99 and max of the values (ms, rounded), or None."""
    ordered = sorted(values)
    if not ordered:
        return None
    out = {"count": float(len(ordered)), "min": ordered[0]}
    out["mean"] = sum(ordered) / len(ordered)
    for p in (50, 95, 99):
        out[f"p{p}"] = percentile(ordered, p)
    out["max"] = ordered[-1]
    return {k: (int(v) if k == "count" else round(v, 1)) for k, v in out.items()}


def _samples(outcomes: Sequence[CallOutcome]) -> dict[str, list[float]]:
    s: dict[str, list[float]] = {key: [] for key, _, _ in TIMINGS}
    for o in outcomes:
        if o.webhook_ms is not None:
            s["webhook"].append(o.webhook_ms)
        if o.connect_ms is not None:
            s["connect"].append(o.connect_ms)
        if o.send_lag_ms is not None:
            s["send_lag"].append(o.send_lag_ms)
        m = o.metrics
        if m is None:
            continue
        if m.first_audio_ms is not None:
            s["first_audio"].append(m.first_audio_ms)
        s["response"] += m.response_ms
        s["barge_in"] += m.barge_in_ms
        s["heard_after_barge_in"] += m.heard_after_barge_in_ms
        s["gap"] += m.gaps_ms
        for key, value in (("jitter", m.jitter_ms), ("ahead", m.ahead_ms), ("behind", m.behind_ms)):
            if value is not None:
                s[key].append(value)
    return s


@dataclass
class ReplayReport:
    target: dict[str, Any]
    options: dict[str, Any]
    outcomes: list[CallOutcome]
    elapsed_s: float
    aborted: bool = False  # the run's hard time cap ended it

    @property
    def ok(self) -> int:
        return sum(1 for o in self.outcomes if o.ok)

    @property
    def failed(self) -> int:
        return len(self.outcomes) - self.ok

    @property
    def violations(self) -> int:
        return sum(o.violations for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        """0 when every call was ok with no protocol violation, else 1."""
        clean = self.outcomes and not self.failed and not self.violations and not self.aborted
        return 0 if clean else 1

    def reasons(self, ok: bool = False) -> Counter[str]:
        """Calls per reason: why the failed ones failed, or with ``ok`` how the ok ones ended."""
        return Counter(o.reason or "unknown" for o in self.outcomes if o.ok == ok)

    def examples(self) -> dict[str, str]:
        """One detail (an error, a close reason) per failure reason."""
        out: dict[str, str] = {}
        for o in self.outcomes:
            if not o.ok and o.detail and (o.reason or "unknown") not in out:
                out[o.reason or "unknown"] = o.detail
        return out

    def as_json(self) -> dict[str, Any]:
        metrics = [o.metrics for o in self.outcomes if o.metrics is not None]
        violation_kinds: Counter[str] = Counter()
        for o in self.outcomes:
            violation_kinds.update(o.violation_samples)
        return {
            "target": self.target,
            "options": self.options,
            "elapsed_s": round(self.elapsed_s, 3),
            "aborted": self.aborted,
            "exit_code": self.exit_code,
            "calls": {
                "total": len(self.outcomes),
                "ok": self.ok,
                "ok_reasons": dict(self.reasons(ok=True)),
                "failed": self.failed,
                "failed_reasons": dict(self.reasons()),
                "failed_examples": self.examples(),
                "cut_by_run_end": sum(1 for o in self.outcomes if o.cut_by_run_end),
                # What the callers heard after the stream, for the calls the server ended.
                "after_stream": dict(
                    Counter(o.after_stream for o in self.outcomes if o.after_stream)
                ),
            },
            "violations": {
                "total": self.violations,
                "calls": sum(1 for o in self.outcomes if o.violations),
                "kinds": dict(violation_kinds),
            },
            "frames": {
                "sent": sum(o.frames_sent for o in self.outcomes),
                "received": sum(o.frames_received for o in self.outcomes),
                "echoes_sent": sum(o.echoes_sent for o in self.outcomes),
                "clears_received": sum(o.clears for o in self.outcomes),
            },
            "turns": {
                "caller_utterances": sum(m.utterances for m in metrics),
                "answered": sum(len(m.response_ms) for m in metrics),
                "unanswered": sum(m.unanswered for m in metrics),
                "assistant_turns": sum(m.turns for m in metrics),
                "barge_ins": sum(len(m.barge_in_ms) + m.barge_ins_uncleared for m in metrics),
                "barge_ins_cleared": sum(len(m.barge_in_ms) for m in metrics),
                "barge_ins_uncleared": sum(m.barge_ins_uncleared for m in metrics),
                "playback_gaps": sum(len(m.gaps_ms) for m in metrics),
                "heard_s": round(sum(m.heard_ms for m in metrics) / 1000.0, 3),
            },
            "timings_ms": {key: summarize(v) for key, v in _samples(self.outcomes).items()},
            "calls_detail": [_outcome_json(o) for o in self.outcomes],
        }

    def table(self) -> list[str]:
        data = self.as_json()
        calls, turns, frames = data["calls"], data["turns"], data["frames"]
        lines = [
            f"calls: {calls['total']} total, {calls['ok']} ok, {calls['failed']} failed"
            + (
                f" ({calls['cut_by_run_end']} hung up at the run's end)"
                if calls["cut_by_run_end"]
                else ""
            )
            + f" in {data['elapsed_s']:.1f} s"
            + (" (ABORTED at the time cap)" if self.aborted else ""),
        ]
        for reason, n in sorted(calls["ok_reasons"].items(), key=lambda kv: -kv[1]):
            lines.append(f"  ok: {reason} x{n}")
        for reason, n in sorted(calls["failed_reasons"].items(), key=lambda kv: -kv[1]):
            example = calls["failed_examples"].get(reason)
            lines.append(f"  failed: {reason} x{n}" + (f" ({example[:120]})" if example else ""))
        after = sorted(calls["after_stream"].items(), key=lambda kv: -kv[1])
        if after:
            lines.append(
                "after the stream, Twilio ran: " + ", ".join(f"{v} x{n}" for v, n in after)
            )
        lines.append(f"protocol violations: {data['violations']['total']}")
        for kind, n in sorted(data["violations"]["kinds"].items(), key=lambda kv: -kv[1])[:5]:
            lines.append(f"  {kind} x{n}")
        lines.append(
            f"frames: {frames['sent']} sent, {frames['received']} received, "
            f"{frames['echoes_sent']} mark echoes, {frames['clears_received']} clears"
        )
        lines.append(
            f"turns: {turns['caller_utterances']} caller utterances, {turns['answered']} "
            f"answered, {turns['unanswered']} unanswered; {turns['barge_ins']} barge-ins "
            f"({turns['barge_ins_uncleared']} without clear); {turns['playback_gaps']} "
            "playback gaps"
        )
        lines.append(f"{'timing (ms)':<22}{'n':>6}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
        for key, label, _ in TIMINGS:
            s = data["timings_ms"][key]
            if s is None:
                lines.append(f"{label:<22}{0:>6}{'-':>9}{'-':>9}{'-':>9}{'-':>9}")
            else:
                lines.append(
                    f"{label:<22}{s['count']:>6}{s['p50']:>9.1f}{s['p95']:>9.1f}"
                    f"{s['p99']:>9.1f}{s['max']:>9.1f}"
                )
        return lines


def _outcome_json(o: CallOutcome) -> dict[str, Any]:
    out = asdict(o)
    for key, value in list(out.items()):
        if isinstance(value, float):
            out[key] = round(value, 1)
    if o.metrics is not None:
        out["metrics"] = {
            k: ([round(x, 1) for x in v] if isinstance(v, list) else _round(v))
            for k, v in asdict(o.metrics).items()
        }
    return out


def _round(value: Any) -> Any:
    return round(value, 1) if isinstance(value, float) else value
