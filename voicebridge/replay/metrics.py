"""What one replayed call felt like, computed after it ended: pure, no I/O, no clock.

All times are ms on the call's clock *at Twilio*: the caller's audio as Twilio sends it
(before the emulated uplink delay), the server's messages as they reach Twilio (after the
emulated downlink delay). Without an emulated network these are the socket's own times.

* first audio: Twilio sends ``start`` (call clock 0) → the first assistant ``media``.
* response: the caller's end of speech → the first assistant ``media`` after it and before
  the caller speaks again (none in time: the utterance is *unanswered*).
* barge-in: the caller starts speaking while assistant audio is playing → ``clear``; and
  the assistant audio the caller heard in between (*heard after barge-in*).
* turns: assistant audio runs in turns; a ``clear``, or the playback buffer staying empty
  for ``turn_gap_ms``, starts a new one. Inside a turn, each chunk's arrival is compared
  with real time since the turn's first chunk (*ahead* / *behind*), the interarrival
  jitter is estimated as in RFC 3550 §6.4.1 (``J += (|D| - J) / 16`` with ``D`` the
  difference between a chunk's inter-arrival time and the previous chunk's duration), and
  each moment the buffer ran dry is a playback *gap* (its length: the silence heard).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from voicebridge.twilio_sim.player import PlayedChunk

__all__ = ["NO_ANSWER_GRACE_MS", "CallMetrics", "call_metrics"]

NO_ANSWER_GRACE_MS = 3000.0  # an utterance this close to the call's end is not "unanswered"
# A bridge that hears the caller itself (LOCAL_BARGE_IN) may clear at the first, quiet sound
# of an utterance, before the level its start is measured at: a clear this early still counts.
EARLY_CLEAR_MS = 100.0


@dataclass
class CallMetrics:
    first_audio_ms: float | None = None
    response_ms: list[float] = field(default_factory=list)
    utterances: int = 0
    unanswered: int = 0
    barge_in_ms: list[float] = field(default_factory=list)
    heard_after_barge_in_ms: list[float] = field(default_factory=list)
    barge_ins_uncleared: int = 0  # spoke over the assistant, no clear before speaking again
    turns: int = 0
    jitter_ms: float | None = None
    ahead_ms: float | None = None  # at most, the audio received ahead of real time
    behind_ms: float | None = None  # at most, how late a chunk came against real time
    gaps_ms: list[float] = field(default_factory=list)
    heard_ms: float = 0.0


def call_metrics(
    chunks: Sequence[PlayedChunk],
    clears: Sequence[float],
    speech: Sequence[tuple[float, float]],
    *,
    call_end_ms: float,
    turn_gap_ms: float = 1000.0,
) -> CallMetrics:
    """Metrics of one call from its playback record and the caller's utterances.

    Args:
        chunks: the assistant audio in arrival order (``TwilioPlayer.chunks``).
        clears: when each ``clear`` reached Twilio, in order.
        speech: the caller's utterances (start, end), in order.
        call_end_ms: when the stream ended.
    """
    m = CallMetrics()
    if chunks:
        m.first_audio_ms = chunks[0].arrived
    m.heard_ms = sum(c.played for c in chunks)
    _turns(m, chunks, clears, turn_gap_ms)
    arrivals = [c.arrived for c in chunks]
    # Barge-ins are placed among the audio the caller heard: a chunk a ``clear`` cut before
    # it played would have started after chunks that came later, so the starts of all
    # chunks are not sorted once there is a clear; heard spans never overlap and stay sorted.
    heard = [c for c in chunks if c.played > 0]
    heard_starts = [c.start for c in heard]
    for i, (s, e) in enumerate(speech):
        following = speech[i + 1][0] if i + 1 < len(speech) else call_end_ms
        m.utterances += 1
        j = bisect.bisect_left(arrivals, e)
        if j < len(arrivals) and arrivals[j] < following:
            m.response_ms.append(arrivals[j] - e)
        elif call_end_ms - e >= NO_ANSWER_GRACE_MS:
            m.unanswered += 1
        _barge_in(m, heard, heard_starts, clears, s, following)
    return m


def _barge_in(
    m: CallMetrics,
    heard: Sequence[PlayedChunk],
    starts: Sequence[float],
    clears: Sequence[float],
    s: float,
    following: float,
) -> None:
    """Speech from ``s`` (until ``following``) over playing audio: cleared, or not.

    ``heard``: the chunks with audio heard, in order; ``starts``: their start times.
    """
    c = bisect.bisect_left(clears, s - EARLY_CLEAR_MS)
    # What played when the caller spoke, or just before a clear that came a little early.
    at = s if c == len(clears) or clears[c] >= s else clears[c] - 1.0
    k = bisect.bisect_right(starts, at) - 1
    if k < 0 or at >= heard[k].start + heard[k].played:
        return  # nothing was playing when the caller started speaking
    if c == len(clears) or clears[c] >= following:
        m.barge_ins_uncleared += 1
        return
    cleared = clears[c]
    m.barge_in_ms.append(cleared - s)
    after = 0.0
    while k < len(heard) and heard[k].start < cleared:
        chunk = heard[k]
        after += max(0.0, min(chunk.start + chunk.played, cleared) - max(chunk.start, s))
        k += 1
    m.heard_after_barge_in_ms.append(after)


def _turns(
    m: CallMetrics, chunks: Sequence[PlayedChunk], clears: Sequence[float], turn_gap_ms: float
) -> None:
    jitter: float | None = None
    ahead = behind = 0.0
    first_arrival = received = 0.0
    prev: PlayedChunk | None = None
    for chunk in chunks:
        new_turn = prev is None
        if prev is not None:
            dry_at = prev.start + prev.duration  # when the buffer would have run out
            cleared = bisect.bisect_right(clears, chunk.arrived) > bisect.bisect_right(
                clears, prev.arrived
            )
            if cleared or chunk.arrived - dry_at >= turn_gap_ms:
                new_turn = True
            else:
                d = (chunk.arrived - prev.arrived) - prev.duration
                jitter = abs(d) if jitter is None else jitter + (abs(d) - jitter) / 16.0
                if chunk.arrived > dry_at:
                    m.gaps_ms.append(chunk.start - dry_at)
        if new_turn:
            m.turns += 1
            first_arrival, received = chunk.arrived, 0.0
        lead = received - (chunk.arrived - first_arrival)
        behind = max(behind, -lead)
        received += chunk.duration
        ahead = max(ahead, lead + chunk.duration)
        prev = chunk
    if chunks:
        m.ahead_ms, m.behind_ms = ahead, behind
        m.jitter_ms = jitter
