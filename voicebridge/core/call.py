"""One call's bridge state: Twilio events and Realtime events in, actions out. No I/O.

The asyncio shell (``voicebridge.server.call``) feeds every received message to
:meth:`CallCore.receive_twilio` / :meth:`CallCore.receive_realtime` with the current
time, and carries out the returned actions in order. Audio for the caller leaves as
:class:`Playback` items that the Twilio writer renders with :meth:`CallCore.render`
at the moment it writes them, so "sent" means written to the socket.

Barge-in (PROTOCOLS.md C.3, C.6), on ``input_audio_buffer.speech_started`` while assistant
audio is playing or queued:

1. snapshot what the caller heard of the item being played (``PlaybackTracker``);
2. drop queued audio and send Twilio ``clear``; ignore the echoes it causes;
3. ``conversation.item.truncate`` at the heard position, capped at what was sent,
   unless everything received was heard;
4. ``response.cancel`` only if a response is active and the server does not cancel
   it itself (``interrupt_response`` off);
5. drop late deltas of the interrupted response.
"""

from __future__ import annotations

import binascii
import enum
from collections import deque
from dataclasses import dataclass
from typing import Any

from voicebridge.core import realtime as rt
from voicebridge.core import twilio as tw
from voicebridge.core.actions import (
    Action,
    CallStats,
    EndCall,
    FlushPlayback,
    Ignored,
    Playback,
    Probe,
    Rendered,
    RunTool,
    SendTwilio,
    SendUpstream,
    Timing,
)
from voicebridge.core.audio import ULAW_BYTES_PER_MS, b64_decoded_len
from voicebridge.core.playback import PlaybackTracker
from voicebridge.core.tools import function_calls, output_item
from voicebridge.core.transcode import CallerToModel, ModelToCaller, ulaw_silence
from voicebridge.core.transcript import Transcript

__all__ = ["CallCore", "CallPolicy", "Phase"]

_RECENT = 32  # interrupted response ids remembered for dropping late deltas
_FRAME_MS = 20
_SILENCE = ulaw_silence(_FRAME_MS)
_MAX_COUNTER_KEYS = 32  # distinct error codes kept per call
_NOTHING = Rendered()
_MAX_FAILED = 2  # failed responses in a row: one retry, then a spoken apology, then give up
# Twilio sends 20 ms (216 base64 characters); anything past a second of audio is not Twilio.
MAX_PAYLOAD_B64 = 11_000


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How the conversation is steered beyond the session's own settings."""

    greeting_instructions: str = ""  # non-empty: the model speaks first, like this
    idle_reprompts: int = 2  # unanswered idle re-prompts before the call is ended
    apology_instructions: str = "Apologise briefly for a technical problem."
    resume_instructions: str = (
        "The line dropped for a moment. Tell the caller in a few words that you are back, "
        "then continue where you left off."
    )


class Phase(enum.Enum):
    WAITING_START = "waiting_start"
    STREAMING = "streaming"
    ENDED = "ended"


@dataclass(slots=True)
class _Item:
    response_id: str
    received_ms: float = 0.0
    truncated: bool = False


class CallCore:
    """Bridge decisions for one call. Times are ms on any monotonic clock."""

    def __init__(self, session: rt.SessionConfig, policy: CallPolicy = CallPolicy()) -> None:
        self.session_config = session
        self.policy = policy
        self.phase = Phase.WAITING_START
        self.start: tw.Start | None = None
        self.playback = PlaybackTracker()
        self.stats = CallStats()
        self.session_ready = False
        self.interrupt_response = True  # replaced by the session.updated echo
        self.active_response: str | None = None
        # Audio/pcm upstreams get their own converter per direction (state per call).
        self._up = CallerToModel() if session.input_format == "audio/pcm" else None
        self._down = ModelToCaller() if session.output_format == "audio/pcm" else None
        self._unanswered_idle = 0
        self._failed_in_a_row = 0
        self._greeted = False
        self._resumed = False  # a fresh session after a lost one: re-seed and speak
        self._done: deque[str] = deque(maxlen=_RECENT)  # finished response ids
        self.transcript = Transcript()
        self._started_at: float | None = None
        self._stopped_at: float | None = None  # the caller's last end of speech
        # Closing (drain, session cap): a last line from the model, then the end.
        self.closing: str | None = None  # the reason, once asked to close
        self._closing_instructions = ""
        self._closing_response: str | None = None  # id of the closing line's response
        self._closing_requested = False  # response.create for it sent
        self.closing_spoken = False
        self._spoke: deque[str] = deque(maxlen=_RECENT)  # responses that produced audio
        self._response_wanted = False  # a response.create waits for the active one to end
        self._tools_running = 0
        self._dtmf_at: float | None = None  # a keypad digit waits for the 1 s pause
        self._items: dict[str, _Item] = {}
        self._interrupted: deque[str] = deque(maxlen=_RECENT)
        self._event_seq = 0

    @property
    def started_at(self) -> float | None:
        """When Twilio's ``start`` arrived (ms), the zero of the call's clock."""
        return self._started_at

    @property
    def stream_sid(self) -> str:
        return self.start.stream_sid if self.start else ""

    def next_event_id(self) -> str:
        self._event_seq += 1
        return f"vb_{self._event_seq}"

    # -- Twilio --------------------------------------------------------------------

    def receive_twilio(self, event: tw.TwilioEvent, now: float) -> list[Action]:
        if isinstance(event, tw.Media):
            if self.phase is not Phase.STREAMING:
                return self._ignore("media_before_start")
            if event.stream_sid != self.stream_sid:
                return self._ignore("wrong_stream_sid")
            if len(event.payload) > MAX_PAYLOAD_B64:
                return self._ignore("oversized_payload")
            try:
                binascii.a2b_base64(event.payload, strict_mode=True)
            except ValueError:  # binascii.Error, or a non-ASCII str
                return self._ignore("invalid_base64")
            self.stats.frames_in += 1
            return [self._append(event.payload)]
        if isinstance(event, tw.Mark):
            if event.stream_sid != self.stream_sid:
                return self._ignore("wrong_stream_sid")
            kind = self.playback.mark_echoed(event.name, now)
            if kind == "unknown":
                return self._ignore("unknown_mark")
            return []
        if isinstance(event, tw.Start):
            if self.phase is not Phase.WAITING_START:
                return self._ignore("second_start")
            self.start = event
            self.phase = Phase.STREAMING
            self._started_at = now
            return [Probe()]  # Twilio is idle: this echo measures the round trip
        if isinstance(event, tw.Stop):
            self.phase = Phase.ENDED
            return [EndCall("caller_hangup", failed=False)]
        if isinstance(event, tw.Dtmf):
            if self.phase is not Phase.STREAMING or not self.session_ready:
                return self._ignore("dtmf_before_session")
            if event.digit not in "0123456789*#ABCD" or len(event.digit) != 1:
                return self._ignore("bad_dtmf_digit")
            self.stats.dtmf += 1
            self._dtmf_at = now
            item = {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": f"[keypad] {event.digit}"}],
            }
            return [SendUpstream(rt.create_item(item, self.next_event_id()))]
        if isinstance(event, tw.Connected):
            return []
        return self._ignore(f"unknown_event:{event.event}"[:48])

    def _append(self, payload: str) -> SendUpstream:
        audio = self._up.convert(payload) if self._up else payload
        return SendUpstream(rt.append_audio(audio), audio=True)

    def media_gap(self) -> list[Action]:
        """A frame of silence for the upstream while Twilio sends no media.

        Some carriers send nothing in silence; without audio the upstream's VAD never hears
        the caller's turn end.
        """
        if self.phase is not Phase.STREAMING:
            return []
        self.stats.silence_frames += 1
        return [self._append(_SILENCE)]

    def _ignore(self, reason: str) -> list[Action]:
        first = reason not in self.stats.ignored
        self.stats.ignored[reason] += 1
        return [Ignored(reason)] if first else []

    def count_upstream_error(self, code: str) -> None:
        # Codes come from the peer: bound their length and how many distinct ones are kept.
        code = code[:48]
        errors = self.stats.upstream_errors
        if code not in errors and len(errors) >= _MAX_COUNTER_KEYS:
            code = "other"
        errors[code] += 1

    def _drop_upstream(self, reason: str) -> list[Action]:
        first = reason not in self.stats.upstream_ignored
        self.stats.upstream_ignored[reason] += 1
        return [Ignored(f"upstream {reason}")] if first else []

    # -- Realtime ------------------------------------------------------------------

    def receive_realtime(self, event: rt.RealtimeEvent, now: float) -> list[Action]:
        if isinstance(event, rt.AudioDelta):
            return self._audio_delta(event)
        if isinstance(event, rt.SpeechStarted):
            self._unanswered_idle = 0
            return self._speech_started(now)
        if isinstance(event, rt.TimeoutTriggered):
            return self._idle()
        if isinstance(event, rt.SpeechStopped):
            self._stopped_at = now
            return []
        if isinstance(event, rt.ResponseCreated):
            self.active_response = event.response_id
            self.stats.responses += 1
            if self._closing_requested and self._closing_response is None:
                self._closing_response = event.response_id
            return []
        if isinstance(event, rt.ResponseDone):
            if self.active_response == event.response_id:
                self.active_response = None
            self._done.append(event.response_id)
            self._add_usage(event.usage)
            if self.closing is not None:
                return self._closing_step(event)
            return self._response_done(event)
        if isinstance(event, rt.Transcribed):
            since = now - self._started_at if self._started_at is not None else 0.0
            self.transcript.add(event.role, event.text, event.item_id, since)
            if event.item_id in self._items and self._items[event.item_id].truncated:
                self.transcript.mark_interrupted(event.item_id)
            return []
        if isinstance(event, rt.ErrorEvent):
            self.count_upstream_error(event.code or event.type or "unknown")
            return []
        if isinstance(event, rt.SessionUpdated):
            return self._session_updated(event.session)
        return []

    def _idle(self) -> list[Action]:
        # The server commits the silence and re-prompts by itself; we only count.
        self._unanswered_idle += 1
        if self._unanswered_idle > self.policy.idle_reprompts:
            return [EndCall("idle_caller", failed=True)]
        self.stats.idle_reprompts += 1
        return []

    def request_response(self) -> list[Action]:
        """``response.create`` now, or as soon as the active response is done."""
        if self.active_response is not None:
            self._response_wanted = True
            return []
        self._response_wanted = False
        return [SendUpstream(rt.response_create(self.next_event_id()))]

    def dtmf_pause(self, now: float) -> list[Action]:
        """Call a second after a digit: if no other digit came, the model answers."""
        if self._dtmf_at is None or now - self._dtmf_at < 1000.0:
            return []
        self._dtmf_at = None
        return self.request_response()

    def tool_result(self, call_id: str, output: str, *, respond: bool = True) -> list[Action]:
        """The tool's output goes back to the model, which then answers (one at a time)."""
        self._tools_running = max(0, self._tools_running - 1)
        actions: list[Action] = [
            SendUpstream(rt.create_item(output_item(call_id, output), self.next_event_id()))
        ]
        if respond and self._tools_running == 0 and self.closing is None:
            actions += self.request_response()
        return actions

    def _response_done(self, ev: rt.ResponseDone) -> list[Action]:
        actions: list[Action] = []
        if self._response_wanted:
            actions += self.request_response()
        if ev.status == "completed":
            calls = function_calls(ev.output)
            self._tools_running += len(calls)
            spoke = ev.response_id in self._spoke
            actions += [RunTool(call, spoke) for call in calls]
        return actions + self._response_status(ev)

    def _response_status(self, ev: rt.ResponseDone) -> list[Action]:
        if ev.status == "failed":
            self.stats.failed_responses += 1
            self._failed_in_a_row += 1
            if self._failed_in_a_row == 1:
                return [SendUpstream(rt.response_create(self.next_event_id()))]
            if self._failed_in_a_row == _MAX_FAILED:
                instructions = self.policy.apology_instructions
                return [SendUpstream(rt.response_create(self.next_event_id(), instructions))]
            return [EndCall("responses_failing", failed=True)]
        if ev.status == "incomplete":
            self.stats.incomplete_responses += 1
        elif ev.status == "completed":
            self._failed_in_a_row = 0
        return []

    def _audio_delta(self, ev: rt.AudioDelta) -> list[Action]:
        if ev.response_id in self._interrupted:
            self.stats.late_deltas_dropped += 1
            return []
        if ev.response_id in self._done:
            return self._drop_upstream("delta_after_done")
        try:
            # Twilio refuses a payload that is empty or not base64 (error 31951).
            if not binascii.a2b_base64(ev.delta, strict_mode=True):
                return self._drop_upstream("empty_delta")
        except ValueError:  # binascii.Error, or a non-ASCII str
            return self._drop_upstream("invalid_base64_delta")
        if not self._spoke or self._spoke[-1] != ev.response_id:
            self._spoke.append(ev.response_id)
        payload = self._down.convert(ev.delta) if self._down else ev.delta
        if not payload:
            return []  # less than one 8 kHz sample: carried into the next delta
        ms = b64_decoded_len(payload) / ULAW_BYTES_PER_MS
        item = self._items.get(ev.item_id)
        if item is None:
            item = self._items[ev.item_id] = _Item(ev.response_id)
            while len(self._items) > _RECENT:
                del self._items[next(iter(self._items))]
        item.received_ms += ms
        return [Playback(ev.item_id, ev.response_id, payload, ms)]

    def _session_updated(self, session: dict[str, Any]) -> list[Action]:
        want = (self.session_config.input_format, self.session_config.output_format)
        got = rt.session_audio_formats(session)
        if got != want:
            shown = tuple((g or "")[:32] for g in got)  # a peer's text: keep log lines short
            return [EndCall(f"session_format_mismatch: asked {want}, got {shown}", failed=True)]
        self.interrupt_response = rt.session_interrupts_response(session)
        was_ready, self.session_ready = self.session_ready, True
        if self._resumed:
            # A fresh session after a lost one: the call so far as text, then a word to the
            # caller, so the line is never silent for long.
            self._resumed = False
            actions: list[Action] = [
                SendUpstream(rt.create_item(item, self.next_event_id()))
                for item in self.transcript.as_items()
            ]
            resume = rt.response_create(self.next_event_id(), self.policy.resume_instructions)
            return [*actions, SendUpstream(resume)]
        if not was_ready and not self._greeted and self.policy.greeting_instructions:
            # The model speaks first: nothing is active yet, so a response may be created.
            self._greeted = True
            greeting = rt.response_create(self.next_event_id(), self.policy.greeting_instructions)
            return [SendUpstream(greeting)]
        return []

    def new_session(self, *, announce: bool) -> None:
        """Forget the lost session's state before a fresh one is opened.

        Audio already at Twilio keeps playing; its items are unknown to the new session, so
        a barge-in over it clears Twilio but truncates nothing.
        """
        self.stats.reconnects += 1
        # Only a confirmed session was heard from: a session lost before `session.updated`
        # is simply started afresh (greeting included), with nothing to announce.
        self._resumed = announce and self.session_ready
        self.session_ready = False
        if self.active_response is not None:
            self._interrupted.append(self.active_response)
        self.active_response = None
        self._items.clear()

    def close(self, reason: str, instructions: str | None) -> list[Action]:
        """Start ending the call deliberately: the model says ``instructions``, then the end.

        With ``instructions=None`` the last line was already said (e.g. a goodbye before the
        model called ``end_call``): only its playback is awaited.
        """
        if self.closing is not None:
            return []
        self.closing = reason
        self._closing_instructions = instructions or ""
        if instructions is None or not self.session_ready:
            self.closing_spoken = True  # nobody to speak it: end at once
            return []
        if self.active_response is not None:
            # Let the server finish (cancel) it first: one response at a time.
            self._interrupted.append(self.active_response)
            return [SendUpstream(rt.response_cancel(self.next_event_id(), self.active_response))]
        return self._say_closing()

    def _say_closing(self) -> list[Action]:
        self._closing_requested = True
        create = rt.response_create(self.next_event_id(), self._closing_instructions)
        return [SendUpstream(create)]

    def _closing_step(self, done: rt.ResponseDone) -> list[Action]:
        if not self._closing_requested:
            return self._say_closing()
        if done.response_id == self._closing_response:
            self.closing_spoken = True
        return []

    def closing_finished(self, now: float) -> bool:
        """The closing line has been spoken and Twilio has confirmed playing all of it."""
        return self.closing_spoken and not self.audio_pending(now) and self.playback.all_echoed()

    def _add_usage(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        for key in ("total_tokens", "input_tokens", "output_tokens"):
            value = usage.get(key)
            if isinstance(value, int):
                self.stats.tokens[key] += value

    def audio_pending(self, now: float) -> bool:
        """Assistant audio is playing at Twilio or waiting to be written."""
        if self.playback.playing(now):
            return True
        return any(
            item.received_ms > self.playback.written_ms(item_id) + 0.5
            for item_id, item in self._items.items()
            if item.response_id not in self._interrupted
        )

    def _speech_started(self, now: float) -> list[Action]:
        actions: list[Action] = []
        if self.audio_pending(now):
            actions += self._barge_in(now)
        return actions

    def _barge_in(self, now: float) -> list[Action]:
        self.stats.barge_ins += 1
        # 1. Snapshot before anything changes: what the clear will leave the caller with.
        target = self.playback.item_at(now)
        if target is None:
            # Nothing written is still playing: the cut falls on audio still queued here.
            target = next(
                (
                    item_id
                    for item_id, item in reversed(self._items.items())
                    if item.received_ms > self.playback.written_ms(item_id) + 0.5
                ),
                None,
            )
        heard = self.playback.heard_ms(target, now) if target else 0.0
        # 2. Clear Twilio and forget what is queued; echoes of cleared marks are ignored.
        self.playback.cleared()
        actions: list[Action] = [FlushPlayback(), SendTwilio(tw.clear_message(self.stream_sid))]
        # 3. Tell the model how much was heard.
        if target is not None and target not in self._items:
            target = None  # audio from a session that was replaced: clear it, truncate nothing
        if target is not None:
            item = self._items[target]
            self._interrupted.append(item.response_id)
            sent = self.playback.written_ms(target)
            if heard < item.received_ms:
                item.truncated = True
                self.transcript.mark_interrupted(target)
                end = int(min(heard, sent))
                actions.append(SendUpstream(rt.truncate_item(target, end, self.next_event_id())))
                self.stats.truncations += 1
                self.stats.truncated_heard_ms += end
                self.stats.truncated_sent_ms += sent
        # 4. Cancel only what the server will not cancel itself.
        if self.active_response is not None:
            if self.active_response not in self._interrupted:
                self._interrupted.append(self.active_response)
            if not self.interrupt_response:
                actions.append(
                    SendUpstream(rt.response_cancel(self.next_event_id(), self.active_response))
                )
        return actions

    # -- rendering for the Twilio writer ------------------------------------------

    def render(self, action: Playback | Probe, now: float) -> Rendered:
        """Messages to write for a queued item, accounted as sent at ``now``."""
        sid = self.stream_sid
        if isinstance(action, Probe):
            return Rendered((tw.mark_message(sid, self.playback.probe(now)),))
        if action.response_id in self._interrupted:
            self.stats.late_deltas_dropped += 1
            return _NOTHING
        out: tuple[str, ...] = ()
        if self.playback.wants_probe(now):
            # Twilio is idle, so a mark now comes straight back: a free round-trip sample.
            out = (tw.mark_message(sid, self.playback.probe(now)),)
        timings: tuple[Timing, ...] = ()
        if self.stats.chunks_out == 0 and self._started_at is not None:
            timings = (Timing("first_audio", now - self._started_at),)
        if self._stopped_at is not None:
            timings = (*timings, Timing("response_latency", now - self._stopped_at))
            self._stopped_at = None
        name = self.playback.audio_written(action.item_id, action.ms, now)
        self.stats.chunks_out += 1
        self.stats.audio_out_ms += action.ms
        return Rendered(
            (*out, tw.media_message(sid, action.payload), tw.mark_message(sid, name)), timings
        )
