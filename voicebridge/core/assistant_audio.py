"""The assistant's audio on its way to the caller: deltas in, Twilio messages out, cuts.

Deltas become :class:`Playback` items for the Twilio writer, which renders each one at the
moment it writes it (:meth:`AssistantAudio.render`), so "sent" means written to the socket.
With ``LOCAL_BARGE_IN=on`` the caller's frames are heard here too (:meth:`caller`): speech
over the assistant pauses it at once, then the upstream confirms a barge-in or, after the
window, the held audio plays again (:meth:`wake`; ``local_barge_in``).
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
    Note,
    Playback,
    Probe,
    Rendered,
    SendTwilio,
    SendUpstream,
    WakeAt,
)
from voicebridge.core.audio import ULAW_BYTES_PER_MS, b64_decoded_len
from voicebridge.core.barge_in import ReceivedItems
from voicebridge.core.local_barge_in import LocalBargeIn, LocalSettings
from voicebridge.core.playback import EchoKind, PlaybackTracker
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
        local: LocalSettings | None = None,
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
        # LOCAL_BARGE_IN: the caller is heard here too; None when off (nothing runs).
        self.local = LocalBargeIn(local) if local is not None else None

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
        local = self.local
        if local is not None:
            local.received(ev.item_id, ev.response_id, payload, ms)
            if local.paused:
                return []  # held: played on a resume, or cut by the confirmed barge-in
        return [Playback(ev.item_id, ev.response_id, payload, ms)]

    def _drop(self, reason: str) -> list[Action]:
        first = self._stats.count_upstream_ignored(reason)
        return [Ignored(f"upstream {reason}")] if first else []

    def played_out(self, now: float) -> bool:
        """Nothing is left to write, and Twilio has confirmed playing all that was written."""
        return not self.paused and not self.items.pending(now) and self.playback.all_echoed()

    @property
    def paused(self) -> bool:
        """A local pause holds the assistant's audio, awaiting the upstream's word."""
        return self.local is not None and self.local.paused

    def interrupts(self, now: float) -> bool:
        """Caller speech now is a barge-in (C.3), or confirms a local pause."""
        return self.paused or self.items.interrupts(now)

    def mark_echoed(self, name: str, now: float) -> EchoKind:
        kind = self.playback.mark_echoed(name, now)
        if kind == "audio" and self.local is not None:
            item = self.playback.item_at(now)
            if item is not None:  # audio long heard need not be held for a resume
                self.local.heard(item, self.playback.heard_ms(item, now))
        return kind

    def forget(self) -> None:
        """The session was replaced: its items mean nothing to the next one."""
        self.items.forget()
        if self.local is not None:
            self.local.abandon()

    def caller(self, ulaw: bytes, now: float, stream_sid: str) -> list[Action]:
        """A caller frame heard here: speech over the assistant pauses it at once (C.3 steps
        1 and 2), until the upstream confirms a barge-in or :meth:`wake` resumes it."""
        local, playback = self.local, self.playback
        assert local is not None
        armed = self._responses.active is not None or playback.playing(now)
        if not local.caller_frame(ulaw, playback.echo_position(now), armed):
            return []
        if not self.items.interrupts(now):
            return []  # nothing a barge-in would cut
        paused = self.items.pause(now)
        local.paused_at(now, paused.heard, paused.position)
        self._stats.local_pauses += 1
        wake = WakeAt(now + local.settings.window_ms)
        if not paused.clear:
            return [wake]
        return [FlushPlayback(), SendTwilio(tw.clear_message(stream_sid)), wake]

    def wake(self, now: float) -> list[Action]:
        """A local pause the upstream did not confirm in time: play the held audio again
        from the cut less the rewind, and truncate nothing (a false interruption)."""
        local = self.local
        if local is None or not local.expired(now):
            return []
        self._stats.false_interruptions += 1
        again = [c for c in local.resume() if not self._responses.is_interrupted(c.response_id)]
        where = f"; resuming at {again[0].offset_ms:.0f} ms" if again else ""
        text = f"false interruption: no speech_started in {local.settings.window_ms} ms{where}"
        actions: list[Action] = [Note(text)]
        rewritten: set[str] = set()
        for chunk in again:
            if chunk.item_id not in rewritten:  # the item restarts there on the stream
                rewritten.add(chunk.item_id)
                self.playback.rewrite(chunk.item_id, chunk.offset_ms)
            actions.append(Playback(chunk.item_id, chunk.response_id, chunk.payload, chunk.ms))
        return actions

    def barge_in(self, now: float, stream_sid: str, *, server_cancels: bool) -> list[Action]:
        """The caller spoke over the model: clear Twilio, truncate, maybe cancel (C.3)."""
        self._stats.barge_ins += 1
        paused = None
        if self.local is not None and self.local.pause is not None:
            paused = self.local.confirmed().heard  # cleared already: cut where it was
            self._stats.local_confirmed += 1
        cut = self.items.barge_in(now, server_cancels=server_cancels, paused=paused)
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
        if self.local is not None:
            if self.local.paused:
                return _NOTHING  # held: resent on a resume
            self.local.written(self.playback.stream_ms, action.payload)
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
