"""The assistant's audio on its way to the caller: deltas in, Twilio messages out, cuts.

Deltas become :class:`Playback` items for the Twilio writer, which renders each one at the
moment it writes it (:meth:`AssistantAudio.render`), so "sent" means written to the socket.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable

from voicebridge.core import realtime as rt
from voicebridge.core import twilio as tw
from voicebridge.core.actions import (
    Action,
    FlushPlayback,
    Ignored,
    Playback,
    Probe,
    Rendered,
    SendTwilio,
    SendUpstream,
)
from voicebridge.core.audio import ULAW_BYTES_PER_MS, b64_decoded_len
from voicebridge.core.barge_in import ReceivedItems
from voicebridge.core.playback import PlaybackTracker
from voicebridge.core.responses import Responses
from voicebridge.core.stats import CallStats, Latency
from voicebridge.core.transcode import ModelToCaller
from voicebridge.core.transcript import Transcript

__all__ = ["AssistantAudio"]

_NOTHING = Rendered()


class AssistantAudio:
    """One call's model audio: what was received, written, heard, and cut."""

    def __init__(
        self,
        output_format: str,
        responses: Responses,
        stats: CallStats,
        transcript: Transcript,
        next_event_id: Callable[[], str],
    ) -> None:
        self.playback = PlaybackTracker()
        self.items = ReceivedItems(self.playback, responses)
        self.latency = Latency()
        self._responses = responses
        self._stats = stats
        self._transcript = transcript
        self._next_event_id = next_event_id
        # An audio/pcm upstream gets its own converter (state per call).
        self._down = ModelToCaller() if output_format == "audio/pcm" else None

    def delta(self, ev: rt.AudioDelta) -> list[Action]:
        """``response.output_audio.delta``: a Playback item, or dropped and counted."""
        if self._responses.is_interrupted(ev.response_id):
            self._stats.late_deltas_dropped += 1
            return []
        if self._responses.is_done(ev.response_id):
            return self._drop("delta_after_done")
        try:
            # Twilio refuses a payload that is empty or not base64 (error 31951).
            if not binascii.a2b_base64(ev.delta, strict_mode=True):
                return self._drop("empty_delta")
        except ValueError:  # binascii.Error, or a non-ASCII str
            return self._drop("invalid_base64_delta")
        self._responses.spoke(ev.response_id)
        payload = self._down.convert(ev.delta) if self._down else ev.delta
        if not payload:
            return []  # less than one 8 kHz sample: carried into the next delta
        ms = b64_decoded_len(payload) / ULAW_BYTES_PER_MS
        self.items.received(ev.item_id, ev.response_id, ms)
        return [Playback(ev.item_id, ev.response_id, payload, ms)]

    def _drop(self, reason: str) -> list[Action]:
        first = self._stats.count_upstream_ignored(reason)
        return [Ignored(f"upstream {reason}")] if first else []

    def played_out(self, now: float) -> bool:
        """Nothing is left to write, and Twilio has confirmed playing all that was written."""
        return not self.items.pending(now) and self.playback.all_echoed()

    def barge_in(self, now: float, stream_sid: str, *, server_cancels: bool) -> list[Action]:
        """The caller spoke over the model: clear Twilio, truncate, maybe cancel (C.3)."""
        self._stats.barge_ins += 1
        cut = self.items.barge_in(now, server_cancels=server_cancels)
        actions: list[Action] = []
        if cut.clear:
            actions += [FlushPlayback(), SendTwilio(tw.clear_message(stream_sid))]
        for t in cut.truncations:
            self._transcript.mark_interrupted(t.item_id)
            event = rt.truncate_item(t.item_id, t.audio_end_ms, self._next_event_id())
            actions.append(SendUpstream(event))
            self._stats.truncations += 1
            self._stats.truncated_heard_ms += t.audio_end_ms
            self._stats.truncated_sent_ms += t.sent_ms
        if cut.cancel is not None:
            cancel = rt.response_cancel(self._next_event_id(), cut.cancel)
            actions.append(SendUpstream(cancel))
        return actions

    def render(
        self, action: Playback | Probe, now: float, stream_sid: str, started_at: float | None
    ) -> Rendered:
        """Messages to write for a queued item, accounted as sent at ``now``."""
        sid = stream_sid
        if isinstance(action, Probe):
            return Rendered((tw.mark_message(sid, self.playback.probe(now)),))
        if self._responses.is_interrupted(action.response_id):
            self._stats.late_deltas_dropped += 1
            return _NOTHING
        out: tuple[str, ...] = ()
        if self.playback.wants_probe(now):
            # Twilio is idle, so a mark now comes straight back: a free round-trip sample.
            out = (tw.mark_message(sid, self.playback.probe(now)),)
        first = self._stats.chunks_out == 0
        timings = self.latency.audio_written(now, started_at, first)
        name = self.playback.audio_written(action.item_id, action.ms, now)
        self._stats.chunks_out += 1
        self._stats.audio_out_ms += action.ms
        return Rendered(
            (*out, tw.media_message(sid, action.payload), tw.mark_message(sid, name)), timings
        )
