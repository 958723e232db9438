"""The caller's audio on its way upstream: checked, paced, converted, and heard here too.

Every ``media`` frame of a streaming call comes through :meth:`CallerAudio.media`: bounded
and base64-checked (Twilio sends 20 ms, 216 characters), paced to real time plus
``caller_burst_ms`` (``pacing.AudioBudget``: upstream audio costs money per second),
converted for an ``audio/pcm`` upstream, and with ``LOCAL_BARGE_IN=on`` heard by the local
barge-in (``AssistantAudio.caller``). While Twilio sends nothing, :meth:`gap` feeds silence:
without audio the upstream's VAD never hears the caller's turn end.
"""

from __future__ import annotations

import binascii

from voicebridge.core import realtime as rt
from voicebridge.core import twilio as tw
from voicebridge.core.actions import Action, Ignored, SendUpstream
from voicebridge.core.assistant_audio import AssistantAudio
from voicebridge.core.pacing import AudioBudget
from voicebridge.core.stats import CallStats
from voicebridge.core.transcode import CallerToModel, ulaw_silence

__all__ = ["MAX_PAYLOAD_B64", "CallerAudio"]

_FRAME_MS = 20
_SILENCE = ulaw_silence(_FRAME_MS)
# Twilio sends 20 ms (216 base64 characters); anything past a second of audio is not Twilio.
MAX_PAYLOAD_B64 = 11_000


class CallerAudio:
    """One call's caller audio, from Twilio's frames to ``input_audio_buffer.append``."""

    def __init__(
        self, input_format: str, burst_ms: float, stats: CallStats, assistant: AssistantAudio
    ) -> None:
        self._pace = AudioBudget(burst_ms)
        # An audio/pcm upstream gets its own converter (state per call).
        self._up = CallerToModel() if input_format == "audio/pcm" else None
        self._stats = stats
        self._assistant = assistant

    def media(self, event: tw.Media, stream_sid: str, now: float) -> list[Action]:
        """A ``media`` frame of the streaming call: appended upstream, or ignored (counted)."""
        if event.stream_sid != stream_sid:
            return self._ignore("wrong_stream_sid")
        if len(event.payload) > MAX_PAYLOAD_B64:
            return self._ignore("oversized_payload")
        try:
            audio = binascii.a2b_base64(event.payload, strict_mode=True)
        except ValueError:  # binascii.Error, or a non-ASCII str
            return self._ignore("invalid_base64")
        if not self._pace.take(len(audio) * 0.125, now):  # μ-law: 8 bytes a ms
            return self._paced()
        self._stats.frames_in += 1
        if self._assistant.local is None:
            return [self._append(event.payload)]
        # A local pause's clear goes first: the caller's frame can wait a moment.
        return [*self._assistant.caller(audio, now, stream_sid), self._append(event.payload)]

    def gap(self) -> list[Action]:
        """A frame of silence for the upstream while Twilio sends no media."""
        self._stats.silence_frames += 1
        return [self._append(_SILENCE)]

    def _append(self, payload: str) -> SendUpstream:
        audio = self._up.convert(payload) if self._up else payload
        return SendUpstream(rt.append_audio(audio), audio=True)

    def _paced(self) -> list[Action]:
        self._stats.caller_paced_dropped += 1
        if self._stats.caller_paced_dropped == 1:
            return [Ignored("caller_audio_faster_than_real_time")]  # logged once per call
        return []

    def _ignore(self, reason: str) -> list[Action]:
        return [Ignored(reason)] if self._stats.count_ignored(reason) else []
