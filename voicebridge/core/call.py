"""One call's bridge state: Twilio events and Realtime events in, actions out. No I/O.

The asyncio shell (``voicebridge.server.call``) feeds every received message to
:meth:`CallCore.receive_twilio` / :meth:`CallCore.receive_realtime` with the current
time, and carries out the returned actions in order. Audio for the caller leaves as
:class:`Playback` items that the Twilio writer renders with :meth:`CallCore.render`
at the moment it writes them, so "sent" means written to the socket.

``CallCore`` dispatches. Call state lives in these sub-machines, small classes in the modules
named, each drawing its transitions in its docstring (h11 keeps its states the same way).
Two helpers turn their decisions into events: ``conversation.Conversation`` (the model's
turns) and ``assistant_audio.AssistantAudio`` (the model's audio on its way to the caller).

==========================  ========================================  ============================
sub-machine                 states                                    moved by
==========================  ========================================  ============================
call.Phase                  WAITING_START → STREAMING → ENDED         Twilio start, stop
session_state.SessionState  OPENING → READY → RESUMING → READY;       session.updated,
                            OPENING again if lost unconfirmed         new_session()
responses.Responses         IDLE ⇄ ACTIVE; a create queued if ACTIVE  response.created/.done
responses.Requests          ours asked → answered (metadata tag)      response.create/.created
responses.FailureLadder     0 → RETRY → APOLOGISE → GIVE_UP; reset    response.done status
responses.ToolCalls         n running; the model answers at 0         response.done, tool_result()
closing.Closing             OPEN → ASKED → SAYING → SPOKEN, via       close(),
                            CANCELLING if busy; OPEN → UNSAID;        response.created/.done,
                            back to OPEN if it yields to the caller   speech_started
caller_turns.IdleCaller     0 … limit unanswered, then the end        timeout_triggered, speech
caller_turns.KeypadPause    IDLE → WAITING → IDLE; held unconfirmed   dtmf, dtmf_pause()
barge_in.ReceivedItems      per item: RECEIVING → TRUNCATED           audio deltas, barge-in
playback.PlaybackTracker    idle ⇄ a run playing; marks echoing       render(), mark echoes
stats.Latency               speech end noted → sampled at next audio  speech_stopped, render()
pacing.AudioBudget          credit 0 … caller_burst_ms of audio       caller media, the clock
local_barge_in.LocalBargeIn LISTENING → PAUSED → LISTENING, by a     caller media (LOCAL_BARGE_IN),
                            confirmation or a resume                  speech_started, wake()
==========================  ========================================  ============================

Barge-in (PROTOCOLS.md C.3, C.6) is described in :mod:`voicebridge.core.barge_in`.
"""

from __future__ import annotations

import enum
from typing import Any

from voicebridge.core import realtime as rt
from voicebridge.core import twilio as tw
from voicebridge.core.actions import (
    Action,
    ClosingStarted,
    EndCall,
    Ignored,
    Playback,
    Probe,
    Rendered,
    SendUpstream,
)
from voicebridge.core.assistant_audio import AssistantAudio
from voicebridge.core.caller_audio import CallerAudio
from voicebridge.core.caller_turns import IdleCaller, KeypadPause
from voicebridge.core.continuity import PauseWatch, cut_answer, seed_items
from voicebridge.core.conversation import Conversation
from voicebridge.core.policy import CallPolicy
from voicebridge.core.session_state import OnConfirm, SessionState
from voicebridge.core.stats import CallStats
from voicebridge.core.transcript import Transcript

__all__ = ["CallCore", "CallPolicy", "Phase"]

_DEFAULT_POLICY = CallPolicy()


class Phase(enum.Enum):
    WAITING_START = "waiting_start"
    STREAMING = "streaming"
    ENDED = "ended"


class CallCore:
    """Bridge decisions for one call. Times are ms on any monotonic clock."""

    def __init__(self, session: rt.SessionConfig, policy: CallPolicy = _DEFAULT_POLICY) -> None:
        self.session_config = session
        self.policy = policy
        self.phase = Phase.WAITING_START
        self.start: tw.Start | None = None
        self.stats = CallStats()
        self.transcript = Transcript()
        self._session = SessionState(greets=bool(policy.greeting_instructions))
        self._talk = Conversation(self.stats, self.next_event_id, policy.apology_instructions)
        self._idle = IdleCaller(policy.idle_reprompts)
        self._keypad = KeypadPause()
        self._pause = PauseWatch(transcribes=bool(session.transcription_model))
        self._idle_close_due = False  # past the re-prompts: close once the server's is created
        self._resume_line = policy.resume_instructions
        self._audio = AssistantAudio(
            session.output_format,
            self._talk.responses,
            self.stats,
            self.transcript,
            self.next_event_id,
            policy.local_barge_in,
        )
        self._caller = CallerAudio(
            session.input_format, policy.caller_burst_ms, self.stats, self._audio
        )
        self._started_at: float | None = None
        self._event_seq = 0
        self.hold_answers = False  # an outbound call's answers wait for the AMD verdict
        self._turn_held = False  # a turn ended meanwhile: answered by release_answers()

    @property
    def started_at(self) -> float | None:
        """When Twilio's ``start`` arrived (ms), the zero of the call's clock."""
        return self._started_at

    @property
    def stream_sid(self) -> str:
        return self.start.stream_sid if self.start else ""

    @property
    def session_ready(self) -> bool:
        """``session.updated`` confirmed the current upstream session."""
        return self._session.ready

    @property
    def closing(self) -> str | None:
        """Why the call is being closed deliberately, once it is."""
        return self._talk.closing.reason

    def next_event_id(self) -> str:
        self._event_seq += 1
        return f"vb_{self._event_seq}"

    # -- Twilio --------------------------------------------------------------------

    def receive_twilio(self, event: tw.TwilioEvent, now: float) -> list[Action]:
        if isinstance(event, tw.Media):
            if self.phase is not Phase.STREAMING:
                return self._ignore("media_before_start")
            return self._caller.media(event, self.stream_sid, now)
        if isinstance(event, tw.Mark):
            if event.stream_sid != self.stream_sid:
                return self._ignore("wrong_stream_sid")
            if self._audio.mark_echoed(event.name, now) == "unknown":
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
            return self._dtmf(event, now)
        if isinstance(event, tw.Connected):
            return []
        # One reason whatever the name: a client's words never become a metric label.
        return [Ignored("unknown_event")] if self.stats.count_unknown_event(event.event) else []

    def _dtmf(self, event: tw.Dtmf, now: float) -> list[Action]:
        if self.phase is not Phase.STREAMING:
            return self._ignore("dtmf_before_start")
        if event.digit not in "0123456789*#ABCD" or len(event.digit) != 1:
            return self._ignore("bad_dtmf_digit")
        self._idle.answered()  # a caller answering by keypad is not idle
        if not self.session_ready:
            # Held for the session to come: it is the one that will answer them.
            if not self._keypad.hold(event.digit, now):
                return self._ignore("dtmf_held_too_many")
            self.stats.dtmf += 1
            return []
        self.stats.dtmf += 1
        self._keypad.digit(now)
        return [self._digit_item(event.digit)]

    def _digit_item(self, digit: str) -> SendUpstream:
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": f"[keypad] {digit}"}],
        }
        return SendUpstream(rt.create_item(item, self.next_event_id()))

    def media_gap(self) -> list[Action]:
        """A frame of silence for the upstream while Twilio sends no media.

        Some carriers send nothing in silence; without audio the upstream's VAD never hears
        the caller's turn end.
        """
        return self._caller.gap() if self.phase is Phase.STREAMING else []

    def wake(self, now: float) -> list[Action]:
        """At a ``WakeAt``'s time: a local pause the upstream did not confirm resumes."""
        return self._audio.wake(now)

    def dtmf_pause(self, now: float) -> list[Action]:
        """Call a second after a digit: if no other digit came, the model answers."""
        if not self.session_ready:
            return []  # the digits are held: the session's confirmation answers them
        return self.request_response() if self._keypad.paused(now) else []

    def _ignore(self, reason: str) -> list[Action]:
        return [Ignored(reason)] if self.stats.count_ignored(reason) else []

    def count_upstream_error(self, code: str) -> None:
        self.stats.count_upstream_error(code)

    # -- Realtime ------------------------------------------------------------------

    def receive_realtime(self, event: rt.RealtimeEvent, now: float) -> list[Action]:
        if isinstance(event, rt.AudioDelta):
            return self._audio.delta(event)
        if isinstance(event, rt.TranscriptDelta):
            self.transcript.partial(event.item_id, event.delta, self._since(now))
            return []
        if isinstance(event, rt.SpeechStarted):
            return self._caller_speaks(now)
        if isinstance(event, rt.TimeoutTriggered):
            # Silence while keypad digits await their answer is the caller at work, not idle.
            if not self._keypad.waiting and self._idle.timed_out():
                # A server answering turns is starting one more re-prompt: the goodbye
                # replaces it once it is created.
                self._idle_close_due = self._session.create_response
                return [] if self._idle_close_due else self._close_idle()
            self.stats.idle_reprompts += 1
            return []
        if isinstance(event, rt.Committed):
            # create_response off: the server detects turns and the bridge answers them, one
            # at a time (a turn ending while the model speaks is answered after it).
            if self.hold_answers and not self._session.create_response:
                self._turn_held = True
                return []
            return [] if self._session.create_response else self.request_response()
        if isinstance(event, rt.SpeechStopped):
            self._audio.latency.speech_stopped(now)
            self._pause.speech_stopped(event.item_id, now)
            self.transcript.expect("caller", event.item_id, self._since(now))
            return []
        if isinstance(event, rt.ResponseCreated):
            self._pause.answered()
            actions = self._talk.response_created(event)
            if self._idle_close_due:  # the server's re-prompt: cut it for the goodbye
                self._idle_close_due = False
                actions += self._close_idle()
            return actions
        if isinstance(event, rt.ResponseDone):
            return self._talk.response_done(event)
        if isinstance(event, rt.Transcribed):
            self._pause.transcribed(event.item_id)
            self.transcript.add(event.role, event.text, event.item_id, self._since(now))
            if self._audio.items.truncated(event.item_id):
                self.transcript.mark_interrupted(event.item_id)
            return []
        if isinstance(event, rt.ErrorEvent):
            self.count_upstream_error(event.code or event.type or "unknown")
            return []
        if isinstance(event, rt.SessionUpdated):
            return self._session_updated(event.session, now)
        return []

    def _caller_speaks(self, now: float) -> list[Action]:
        """Speech started: the caller is not idle, calls off a goodbye, may barge in (C.3)."""
        self._idle.answered()
        self._idle_close_due = False
        self._pause.speech_started()
        self._talk.caller_spoke()
        if not self._audio.interrupts(now):  # a local pause: confirmed
            return []
        return self._audio.barge_in(
            now, self.stream_sid, server_cancels=self._session.interrupt_response
        )

    def release_answers(self) -> list[Action]:
        """A person answered the outbound call: turns are answered from now on, the one
        they ended meanwhile ("Hello?") first."""
        self.hold_answers = False
        held, self._turn_held = self._turn_held, False
        return self.request_response() if held and self.closing is None else []

    def request_response(self) -> list[Action]:
        """``response.create`` now, or as soon as the active response is done."""
        return self._talk.request_response()

    def configure(self, session: rt.SessionConfig, policy: CallPolicy) -> None:
        """The called number's own session and policy, set once ``start`` is admitted and
        before the upstream opens (the audio formats stay those the core was built with)."""
        self.session_config, self.policy = session, policy
        self._session = SessionState(greets=bool(policy.greeting_instructions))
        self._idle = IdleCaller(policy.idle_reprompts)

    def holding_line(self, instructions: str) -> list[Action]:
        """A slow tool: the model says a short holding line while the caller waits."""
        return self._talk.hold(instructions) if self.session_ready else []

    def tool_result(self, call_id: str, output: str, *, respond: bool = True) -> list[Action]:
        """The tool's output goes back to the model, which then answers (one at a time)."""
        return self._talk.tool_result(call_id, output, respond=respond)

    def _session_updated(self, session: dict[str, Any], now: float) -> list[Action]:
        want = (self.session_config.input_format, self.session_config.output_format)
        got = rt.session_audio_formats(session)
        if got != want:
            shown = tuple((g or "")[:32] for g in got)  # a peer's text: keep log lines short
            return [EndCall(f"session_format_mismatch: asked {want}, got {shown}", failed=True)]
        step = self._session.confirmed(
            rt.session_interrupts_response(session), rt.session_creates_response(session)
        )
        actions: list[Action] = []
        if step in (OnConfirm.RESUME, OnConfirm.SEED):
            # A fresh session taking over: the call so far as text (both sides), told to
            # carry on; after a lost one, a word to the caller too (RESUME).
            actions += self._seed()
        actions += [self._digit_item(digit) for digit in self._keypad.release()]
        if self.closing is not None:
            return actions  # closing: the last line is all the model is asked for
        if step in (OnConfirm.NOTHING, OnConfirm.SEED):
            return actions + self.dtmf_pause(now)  # held digits: answered after their pause
        # The model speaks first (nothing is active yet, so a response may be created); held
        # digits came before it, so it answers them too.
        self._keypad.answered()
        if step is OnConfirm.RESUME:
            return [*actions, self._talk.create(self._resume_line)]
        return [*actions, self._talk.create(self.policy.greeting_instructions)]

    def new_session(self, *, announce: bool, renewal: bool = False) -> None:
        """Forget the replaced session's state before a fresh one is opened.

        Audio already at Twilio keeps playing; its items are unknown to the new session, so
        a barge-in over it clears Twilio but truncates nothing. An answer in progress is cut
        (``continuity.cut_answer``) and resumed. ``renewal``: the session reached its age
        limit, counted apart from a reconnect.
        """
        active = self._talk.responses.active
        cut = active is not None and cut_answer(
            self.transcript, self._audio.items.of_response(active), self._audio.playback
        )
        if renewal:
            self.stats.renewals += 1
        else:
            self.stats.reconnects += 1
        self._resume_line = (
            self.policy.renew_resume_instructions if renewal else self.policy.resume_instructions
        )
        self._session.replaced(announce=announce or cut)
        self._talk.responses.forget_active()
        self._audio.forget()

    def at_pause(self, now: float) -> bool:
        """Nobody is speaking and nothing is owed: the model has finished and been heard,
        the caller is silent with no turn unanswered. A session replaced now loses nothing."""
        return (
            self.session_ready
            and self.closing is None
            and self._talk.responses.active is None
            and self._talk.tools.running == 0
            and not self._keypad.waiting
            and self._audio.played_out(now)
            and self._pause.quiet(now)
        )

    def _seed(self) -> list[Action]:
        items = seed_items(self.transcript, self.policy.continuation)
        return [SendUpstream(rt.create_item(item, self.next_event_id())) for item in items]

    def _since(self, now: float) -> float:
        return now - self._started_at if self._started_at is not None else 0.0

    def _close_idle(self) -> list[Action]:
        """Past the re-prompts: a short goodbye, then a deliberate end (the shell waits)."""
        line = self.policy.idle_goodbye_instructions
        return [*self.close("idle_caller", line, yields=True), ClosingStarted("idle_caller")]

    # -- closing ---------------------------------------------------------------------

    def close(self, reason: str, instructions: str | None, *, yields: bool = False) -> list[Action]:
        """Start ending the call deliberately: the model says ``instructions``, then the end.

        With ``instructions=None`` the last line was already said (e.g. a goodbye before the
        model called ``end_call``): only its playback is awaited. ``yields``: the caller
        speaking before the end calls the closing off (:attr:`closing` is None again), as
        for the model's own goodbye; a drain or the session limit ends the call regardless.
        """
        return self._talk.close(reason, instructions, can_speak=self.session_ready, yields=yields)

    def closing_finished(self, now: float) -> bool:
        """The closing line has been spoken and Twilio has confirmed playing all of it."""
        return self._talk.closing.spoken and self._audio.played_out(now)

    # -- rendering for the Twilio writer ------------------------------------------

    def render(self, action: Playback | Probe, now: float) -> Rendered:
        """Messages to write for a queued item, accounted as sent at ``now``."""
        return self._audio.render(action, now, self.stream_sid, self._started_at)
