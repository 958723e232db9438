"""The fake Realtime server's input audio buffer: VAD turns, commits, idle timeout, transcripts.

Everything here is measured on the input timeline (ms of audio appended, PROTOCOLS.md B.3).
Methods are synchronous and only emit events; the connection flushes them.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable

from voicebridge.core.audio import b64_decoded_len

from .clips import BYTES_PER_MS
from .conversation import Conversation
from .responder import Responder
from .response import FakeResponse
from .session import JSON, FakeRealtimeOptions, InvalidRequest, new_id
from .turns import SEMANTIC_SILENCE_MS, IdleTimer, transcription_events
from .vad import EnergyVad, VadEvent

__all__ = ["MIN_COMMIT_MS", "InputAudioBuffer"]

MIN_COMMIT_MS = 100


class InputAudioBuffer:
    """``input_audio_buffer.*`` for one session, and the turns its VAD finds in it."""

    def __init__(
        self,
        emit: Callable[[JSON], JSON],
        conv: Conversation,
        responder: Responder,
        config: Callable[[], JSON],
        options: FakeRealtimeOptions,
    ) -> None:
        self._emit = emit
        self._conv = conv
        self._responder = responder
        self._config = config
        self._vad = EnergyVad(options.vad_threshold, options.vad_start_ms)
        self._idle = IdleTimer()
        self._user_item_id: str | None = None  # between speech_started and speech_stopped
        self._user_start_ms = 0  # audio_start_ms of that speech
        self._buffer_ms = 0.0  # uncommitted input audio
        self.input_ms_total = 0.0  # all audio appended: the session's clock
        self.configure()

    def _turn_detection(self) -> JSON | None:
        td: JSON | None = self._config()["audio"]["input"]["turn_detection"]
        return td

    def configure(self) -> None:
        """Follow the session's input format and turn detection (after each update)."""
        td = self._turn_detection()
        fmt = self._config()["audio"]["input"]["format"]["type"]
        if td is None or td["type"] == "server_vad":
            prefix = td["prefix_padding_ms"] if td else 300
            silence = td["silence_duration_ms"] if td else 500
        else:  # semantic_vad: trailing silence by eagerness stands in for the model's judgement
            prefix, silence = 300, SEMANTIC_SILENCE_MS[td["eagerness"]]
        self._vad.configure(fmt, prefix, silence)

    def session_updated(self) -> None:
        if not self._idle.responded and not self._vad.speaking and self._responder.active is None:
            self._idle.arm(self.input_ms_total)  # before the first response: from here

    def response_done(self, response: FakeResponse) -> None:
        played = response.item if response.kind == "audio" else None
        self._idle.arm_after_response(self.input_ms_total, played)

    def append(self, audio: str) -> None:
        """``input_audio_buffer.append``: base64 audio in the session's input format."""
        fmt = self._config()["audio"]["input"]["format"]["type"]
        if self._turn_detection() is None:
            nbytes = b64_decoded_len(audio)
            self._vad.skip(nbytes)
            vad_events: list[VadEvent] = []
        else:
            try:
                raw = binascii.a2b_base64(audio)
            except binascii.Error:
                raise InvalidRequest(
                    "invalid_value", "Invalid 'audio'. Expected base64-encoded audio.", "audio"
                ) from None
            nbytes = len(raw)
            vad_events = self._vad.feed(raw)
        ms = nbytes / BYTES_PER_MS[fmt]
        self._buffer_ms += ms
        self.input_ms_total += ms
        for vad_event in vad_events:
            if vad_event.kind == "started":
                self._speech_started(vad_event.ms)
            else:
                self._speech_stopped(vad_event.ms)
        self._check_idle()

    def commit(self) -> None:
        """``input_audio_buffer.commit``: the buffer becomes a user item."""
        if self._buffer_ms < MIN_COMMIT_MS:
            raise InvalidRequest(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {self._buffer_ms:.2f}ms "
                "of audio.",
            )
        item_id = self._user_item_id or new_id("item")
        self._user_item_id = None
        # A manual commit is taken to hold caller speech (the fake cannot tell).
        self._commit_audio(item_id, self._buffer_ms)

    def clear(self) -> None:
        self._buffer_ms = 0.0
        self._emit({"type": "input_audio_buffer.cleared"})

    def _check_idle(self) -> None:
        """server_vad's ``idle_timeout_ms``: no speech for that long after the last reply."""
        td = self._turn_detection()
        if td is None or td["type"] != "server_vad" or td.get("idle_timeout_ms") is None:
            return
        if self._vad.speaking or self._responder.active is not None:
            return
        start = self._idle.due(self.input_ms_total, td["idle_timeout_ms"])
        if start is None:
            return
        self._idle.disarm()  # until the next response or speech
        item_id = new_id("item")
        self._emit(
            {
                "type": "input_audio_buffer.timeout_triggered",
                "audio_start_ms": int(start),
                "audio_end_ms": int(self.input_ms_total),
                "item_id": item_id,
            }
        )
        self._commit_audio(item_id, None)  # "the empty audio will be committed"
        if td.get("create_response", True):
            self._responder.start(None, reprompt=True)

    def _speech_started(self, audio_start_ms: int) -> None:
        self._user_item_id = new_id("item")
        self._user_start_ms = audio_start_ms
        self._emit(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": audio_start_ms,
                "item_id": self._user_item_id,
            }
        )
        td = self._turn_detection()
        if td is not None and td.get("interrupt_response", True):
            self._responder.cancel("turn_detected")
        self._idle.disarm()  # after the cancel: its response.done would rearm the timer

    def _speech_stopped(self, audio_end_ms: int) -> None:
        item_id = self._user_item_id or new_id("item")
        self._user_item_id = None
        self._emit(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": audio_end_ms,
                "item_id": item_id,
            }
        )
        self._idle.arm(audio_end_ms)
        self._commit_audio(item_id, audio_end_ms - self._user_start_ms)
        td = self._turn_detection()
        # A response already in progress is left alone (interrupt_response false).
        if td is not None and td.get("create_response", True) and self._responder.active is None:
            self._responder.start(None)

    def _commit_audio(self, item_id: str, speech_ms: float | None) -> None:
        """Commit the buffer as a user item; ``speech_ms`` is None when it held no speech."""
        self._conv.commit_audio(item_id)
        self._buffer_ms = 0.0
        transcription = self._config()["audio"]["input"]["transcription"]
        if speech_ms is None:
            return
        self._responder.caller_spoke = True
        if transcription is not None:
            # Transcription "runs asynchronously… may come before or after the Response
            # events" (B.3); the fake sends it at once, before any response it triggers.
            events, transcript = transcription_events(transcription["model"], item_id, speech_ms)
            for event in events:
                self._emit(event)
            self._conv.set_transcript(item_id, transcript)
