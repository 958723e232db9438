"""What :class:`~voicebridge.core.call.CallCore` asks its shell to do, and what it counts.

Actions are plain data, carried out by ``voicebridge.server.call`` in the order returned.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from voicebridge.core.tools import FunctionCall

__all__ = [
    "Action",
    "CallStats",
    "EndCall",
    "FlushPlayback",
    "Ignored",
    "Playback",
    "Probe",
    "Rendered",
    "RunTool",
    "SendTwilio",
    "SendUpstream",
    "Timing",
]


@dataclass(slots=True)  # not frozen: one per caller frame, and frozen __init__ is slow
class SendUpstream:
    text: str
    audio: bool = False  # caller audio may be dropped under overflow; control never is


@dataclass(frozen=True, slots=True)
class SendTwilio:
    """A ready message for Twilio, sent ahead of queued playback."""

    text: str


@dataclass(frozen=True, slots=True)
class Playback:
    """Assistant audio waiting for the Twilio writer."""

    item_id: str
    response_id: str
    payload: str  # base64 μ-law 8 kHz
    ms: float


@dataclass(frozen=True, slots=True)
class Probe:
    """A round-trip probe mark, named when written."""


@dataclass(frozen=True, slots=True)
class FlushPlayback:
    """Drop every queued Playback: it was interrupted before reaching Twilio."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """Input of a kind this call has not ignored before: worth one log line (counted always)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Timing:
    """A latency sample for the metrics, in ms."""

    name: str
    ms: float


@dataclass(frozen=True, slots=True)
class Rendered:
    """What the Twilio writer sends for one queued item, and the latencies it completes."""

    messages: tuple[str, ...] = ()
    timings: tuple[Timing, ...] = ()


@dataclass(frozen=True, slots=True)
class EndCall:
    reason: str
    failed: bool  # True: close Twilio's socket so the TwiML failure path plays
    deliberate: bool = False  # the assistant ended it after a closing line


@dataclass(frozen=True, slots=True)
class RunTool:
    """The model called a function; run it off the audio path and report its output."""

    call: FunctionCall
    spoke: bool  # the response that called it also said something (e.g. the goodbye)


Action = SendUpstream | SendTwilio | Playback | Probe | FlushPlayback | EndCall | RunTool | Ignored


@dataclass(slots=True)
class CallStats:
    frames_in: int = 0
    chunks_out: int = 0
    audio_out_ms: float = 0.0
    barge_ins: int = 0
    truncations: int = 0
    truncated_heard_ms: float = 0.0
    truncated_sent_ms: float = 0.0
    late_deltas_dropped: int = 0
    caller_queue_dropped: int = 0  # oldest caller audio dropped: the upstream was slow
    playback_queue_dropped: int = 0  # oldest model audio dropped: Twilio was slow
    silence_frames: int = 0  # fed upstream while Twilio sent no media
    idle_reprompts: int = 0
    failed_responses: int = 0
    incomplete_responses: int = 0
    responses: int = 0
    dtmf: int = 0
    ignored: Counter[str] = field(default_factory=Counter)  # Twilio input ignored, by reason
    upstream_ignored: Counter[str] = field(default_factory=Counter)  # upstream events dropped
    upstream_errors: Counter[str] = field(default_factory=Counter)  # by error code
    reconnects: int = 0
    tokens: Counter[str] = field(default_factory=Counter)
