"""What :class:`~voicebridge.core.call.CallCore` asks its shell to do.

Actions are plain data, carried out by ``voicebridge.server.call`` in the order returned.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicebridge.core.tools import FunctionCall

__all__ = [
    "Action",
    "ClosingStarted",
    "EndCall",
    "FlushPlayback",
    "Ignored",
    "Note",
    "Playback",
    "Probe",
    "Rendered",
    "RunTool",
    "SendTwilio",
    "SendUpstream",
    "Timing",
    "WakeAt",
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
class Note:
    """Something worth one line in the call's log (INFO), e.g. a false interruption."""

    text: str


@dataclass(frozen=True, slots=True)
class WakeAt:
    """Call :meth:`CallCore.wake` at ``at`` (ms, the core's clock), e.g. when a local
    barge-in's window ends."""

    at: float


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
class ClosingStarted:
    """The core began a deliberate ending itself (a caller silent past the re-prompts): the
    shell ends the call once the closing line is heard, as for one it asked for."""

    reason: str


@dataclass(frozen=True, slots=True)
class RunTool:
    """The model called a function; run it off the audio path and report its output."""

    call: FunctionCall
    spoke: bool  # the response that called it also said something (e.g. the goodbye)


Action = (
    SendUpstream
    | SendTwilio
    | Playback
    | Probe
    | FlushPlayback
    | EndCall
    | ClosingStarted
    | RunTool
    | Ignored
    | Note
    | WakeAt
)
