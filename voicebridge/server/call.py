"""One call: the Twilio socket and the Realtime connection, joined by bounded queues.

``Call.run`` owns the call's tasks in one TaskGroup. The audio moves through two pumps, a
receive half and a send half for each direction, so neither socket's reader ever waits on
the other socket:

    twilio-in  --(upstream queue: caller audio, control)-->  upstream-out
    upstream-in --(playback queue: model audio, marks, clear)--> twilio-out

(A caller frame that could not wait anyway, with nothing queued ahead and an empty send
buffer upstream, is written by twilio-in itself: ``TwilioSide._send_now``.)

The tasks belong to three collaborators: :class:`TwilioSide` (``twilio-in``,
``twilio-out``, ``media-watch``), :class:`UpstreamSide` (``upstream``, and in its nested
TaskGroup ``upstream-in``, ``upstream-out``, ``upstream-watch``, ``session-clock``, so a
lost upstream can be replaced mid-call) and :class:`Closer` (``closer``, ``tools``); with
``RECORD_DIR``, ``recorder`` runs beside them. ``Call.apply`` carries out the core's actions.

Any task ends the call by raising ``CallEnded``; the TaskGroup then cancels the rest and
``run`` closes both sockets. Just before closing Twilio's, it records how the call ended
(``OutcomeStore``): Twilio then requests ``<Connect action>``, answered by that outcome (a
hang-up after a goodbye, a transfer's ``<Dial>``, the apology after a failure).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from voicebridge.config import Settings
from voicebridge.core import twilio as tw
from voicebridge.core.actions import (
    Action,
    ClosingStarted,
    EndCall,
    FlushPlayback,
    Ignored,
    Note,
    Playback,
    Probe,
    RunTool,
    SendTwilio,
    SendUpstream,
    WakeAt,
)
from voicebridge.core.call import CallCore
from voicebridge.core.outcomes import OutcomeStore
from voicebridge.errors import QueueOverflow
from voicebridge.server.call_log import CallLog
from voicebridge.server.clock import now_s
from voicebridge.server.closing import Closer
from voicebridge.server.connect import CallSetup, Connect
from voicebridge.server.lifetime import CallEnded, CallResult, first
from voicebridge.server.queues import FrameQueue
from voicebridge.server.recorder import RecordingHealth, write_transcript
from voicebridge.server.session import call_policy, session_config
from voicebridge.server.twilio_side import TwilioSide
from voicebridge.server.twilio_socket import TwilioSocket
from voicebridge.server.upstream import ConnectUpstream, connect_upstream
from voicebridge.server.upstream_side import UpstreamSide

__all__ = ["Admit", "Call", "CallResult"]

# A shared outcome store (Redis) answers in milliseconds; a slower one loses the outcome.
OUTCOME_PUT_TIMEOUT_S = 1.0
Admit = Callable[[tw.Start], Awaitable["str | None"]]  # the refusal reason, or None to admit

# Endings before `start` was admitted: the socket never was a call, so each is a refusal
# (counted by reason, never as a finished call), under these names.
_BEFORE_ADMISSION = {
    "caller_disconnected": "closed_before_start",
    "caller_hangup": "stop_before_start",
    "twilio_message_too_big": "message_too_big",
}


class Call:
    """One call's queues and tasks; ``run`` it, ``request_close`` to end it well."""

    def __init__(
        self,
        socket: TwilioSocket,
        settings: Settings,
        admit: Admit,
        observe: Callable[[str, float], None] = lambda name, ms: None,
        connect: Connect | None = None,
        recording: RecordingHealth | None = None,
        connect_upstream: ConnectUpstream = connect_upstream,
        outcomes: OutcomeStore | None = None,
    ) -> None:
        self.settings = settings
        self.admit = admit
        self.outcomes = outcomes  # where the after-stream answer finds how the call ended
        self.admitted = False
        self.recording = recording or RecordingHealth()
        # Profiles, tools, call events; the number's profile is applied once admitted.
        self.connect = connect or Connect(settings, custom=[])
        self.setup: CallSetup | None = None
        toolbox = self.connect.profiles.default.toolbox
        self.core = CallCore(
            session_config(settings, toolbox.declarations()), call_policy(settings)
        )
        self.log = CallLog()
        self.upstream_q: FrameQueue[str] = FrameQueue(settings.caller_queue_frames)
        self.playback_q: FrameQueue[Playback | Probe | str] = FrameQueue(
            settings.playback_queue_chunks
        )
        self.closer = Closer(settings, self.core, self.log, self.apply, toolbox)
        self.closer.http = self.connect.http
        self.upstream = UpstreamSide(
            connect_upstream,
            settings,
            self.core,
            self.log,
            self.apply,
            self.upstream_q,
            observe,
            self.closer.request_close,
        )
        self.twilio = TwilioSide(
            socket,
            settings,
            self.core,
            self.log,
            self.apply,
            self.upstream_q,
            self.playback_q,
            lambda: self.upstream.conn,
            observe,
        )
        # end_by: the loop time the call ends at the latest, and why (a shutdown's cutoff).
        self._cutoff_at: float | None = None
        self._cutoff: asyncio.Timeout | None = None  # while run() is inside it
        self.forced_by = ""

    # -- actions -------------------------------------------------------------------

    def apply(self, actions: list[Action]) -> None:
        """Carry out the core's actions, in order."""
        for action in actions:
            if isinstance(action, SendUpstream):
                if not action.audio:
                    self.upstream_q.put_control(action.text)
                elif not self.upstream_q.put_audio(action.text):
                    self.core.stats.caller_queue_dropped += 1
                    if self.upstream.conn is None:  # still opening (or replacing) it
                        self.log.once(
                            "caller_drop_unopened",
                            "upstream not connected yet: dropping oldest caller audio",
                        )
                    else:
                        self.log.once(
                            "caller_drop", "upstream not keeping up: dropping oldest caller audio"
                        )
            elif isinstance(action, Playback):
                if not self.playback_q.put_audio(action):
                    self.core.stats.playback_queue_dropped += 1
                    self.log.once(
                        "playback_drop", "Twilio not keeping up: dropping oldest model audio"
                    )
            elif isinstance(action, SendTwilio):
                self.playback_q.put_control(action.text)
            elif isinstance(action, Probe):
                self.playback_q.put_control(action)
            elif isinstance(action, FlushPlayback):
                self.twilio.flush_playback()
            elif isinstance(action, RunTool):
                self.closer.submit(action)
            elif isinstance(action, Ignored):
                self.log.once(
                    f"ignored:{action.reason}", f"ignoring bad input ({action.reason}); counting it"
                )
            elif isinstance(action, WakeAt):
                self.twilio.wake_at(action.at)
            elif isinstance(action, Note):
                self.log.info("%s", action.text)
            elif isinstance(action, EndCall):
                raise CallEnded(action.reason, action.failed, deliberate=action.deliberate)
            elif isinstance(action, ClosingStarted):
                # The core is saying the last line already: the closer waits for it.
                self.closer.request_close(action.reason, None)

    def request_close(self, reason: str, instructions: str | None = "") -> None:
        """End the call well (see ``Closer.request_close``)."""
        self.closer.request_close(reason, instructions)

    def end_by(self, when: float, reason: str) -> None:
        """End the call at loop time ``when`` at the latest, whatever it is doing then (the
        shutdown budget's cutoff; a second signal's is now). The ending is ``forced``,
        unless Twilio's REST API already took the call's deliberate one."""
        if self._cutoff_at is not None and self._cutoff_at <= when:
            return
        self._cutoff_at, self.forced_by = when, reason
        cutoff = self._cutoff
        if cutoff is not None and not cutoff.expired():
            cutoff.reschedule(when)

    # -- the call ------------------------------------------------------------------

    async def run(self) -> CallResult:
        started = now_s()
        result = CallResult("unknown", failed=True)
        try:
            # The cutoff (end_by) cancels whatever runs then; asyncio.timeout's own cancel.
            async with asyncio.timeout_at(self._cutoff_at) as self._cutoff:
                await self._admit()
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self.twilio.twilio_in(), name="twilio-in")
                    tg.create_task(self.twilio.twilio_out(), name="twilio-out")
                    tg.create_task(self.twilio.media_watch(), name="media-watch")
                    tg.create_task(self.closer.closer(), name="closer")
                    tg.create_task(self.closer.tools(), name="tools")
                    if self.twilio.recorder is not None:
                        tg.create_task(self.twilio.recorder.run(), name="recorder")
                    tg.create_task(self.upstream.upstream(), name="upstream")
        except* CallEnded as group:
            ended = first(group, CallEnded)
            result = CallResult(ended.reason, ended.failed, close_code=ended.close_code)
            result.deliberate = ended.deliberate
        except* QueueOverflow as group:
            result = CallResult(f"queue_overflow: {first(group, QueueOverflow)}", failed=True)
        except* TimeoutError as group:
            result = self._cut_off(group)
        except* Exception as group:
            self.log.error("call failed", exc_info=group)
            result = CallResult("internal_error", failed=True)
        finally:
            self._cutoff = None  # exited: end_by may no longer reschedule it
            self.twilio.cancel_timers()
            ours = self.closer.ended_through_twilio or self.closer.ending_through_twilio
            if ours and result.reason in ("caller_hangup", "caller_disconnected"):
                # The `stop` that followed our REST update: still our deliberate ending.
                result = CallResult(ours, failed=False, deliberate=True)
            if not self.admitted and not result.reason.startswith("refused: "):
                why = result.reason.partition(":")[0]
                result.reason = "refused: " + _BEFORE_ADMISSION.get(why, why)
                if why != "internal_error":  # (a bug: logged above, and closed 1011)
                    result.close_code = result.close_code or 1008
            result.close_code = result.close_code or (1011 if result.failed else 1000)
            await self._record_outcome(result)
            await self.twilio.close(result.close_code)
        return await self._finish(result, now_s() - started)

    def _cut_off(self, group: BaseExceptionGroup[TimeoutError]) -> CallResult:
        """The result of a call that end_by's cutoff ended."""
        if self._cutoff is None or not self._cutoff.expired():  # a task's own: a bug
            self.log.error("call failed", exc_info=group)
            return CallResult("internal_error", failed=True)
        if not self.admitted:  # a socket still waiting for `start`: never a call
            return CallResult("refused: draining", failed=True, close_code=1012)
        ours = self.closer.ended_through_twilio
        if ours:  # cut while waiting for the `stop` of the hang-up Twilio already took
            return CallResult(ours, failed=False, deliberate=True)
        self.log.warning("the shutdown ended the call (%s)", self.forced_by)
        closing = self.closer.requested.is_set()  # after its closing line: no apology
        return CallResult(self.forced_by, False, close_code=1012, deliberate=closing, forced=True)

    async def _record_outcome(self, result: CallResult) -> None:
        """Keep how the call ended for ``<Connect action>``, before Twilio's socket closes:
        Twilio requests the action as soon as the stream is over."""
        ending = self.closer.ending
        if result.deliberate and ending is not None and ending.reason == result.reason:
            result.destination = ending.destination
        start, outcome = self.core.start, result.after_stream()
        if self.outcomes is None or start is None or not self.admitted or outcome is None:
            return
        try:
            async with asyncio.timeout(OUTCOME_PUT_TIMEOUT_S):
                await self.outcomes.put(start.call_sid, outcome)
        except Exception as exc:  # a shared store's outage must not hold the call's end
            self.log.warning("outcome not recorded (%r): Twilio will hear the apology", exc)

    async def _admit(self) -> None:
        """Wait for `start` and let ``admit`` decide, before any upstream connection."""
        try:
            async with asyncio.timeout(self.settings.start_timeout_s):
                await self.twilio.wait_start()
        except TimeoutError:
            raise CallEnded("refused: no_start", failed=True, close_code=1008) from None
        start = self.core.start
        assert start is not None
        refusal = await self.admit(start)
        if refusal:
            # Checked before any upstream connection: a stray client costs nothing.
            raise CallEnded(f"refused: {refusal}", failed=True, close_code=1008)
        self.admitted = True
        self.log.started(start)
        self._set_up(start)
        if self.settings.record_dir:
            self.twilio.start_recording(self.settings.record_dir, start.call_sid, self.recording)

    def _set_up(self, start: tw.Start) -> None:
        """The called number's profile: its session, policy and tools, before the upstream
        opens; and the call.started event."""
        self.setup = setup = self.connect.setup(start)
        self.core.configure(setup.session, setup.policy)
        self.closer.toolbox, self.closer.context = setup.profile.toolbox, setup.context
        self.connect.call_started(setup)

    async def _finish(self, result: CallResult, duration_s: float) -> CallResult:
        start = self.core.start
        result.call_sid = start.call_sid if start else ""
        result.stream_sid = start.stream_sid if start else ""
        result.duration_s = duration_s
        result.stats = self.core.stats
        result.admitted = self.admitted
        if result.reason.startswith("refused: "):
            result.refused = result.reason.removeprefix("refused: ")
            return result  # logged and counted by the guard: never a call
        self.log.ended(result)
        if self.setup is not None:
            self.connect.call_ended(self.setup, result, self.core.transcript)
        if self.twilio.recorder is not None:
            await self.twilio.recorder.finish(self.core.started_at or 0.0)
        if self.settings.record_dir and self.core.transcript.turns and start is not None:
            records = [turn.as_record() for turn in self.core.transcript.spoken()]
            await write_transcript(
                self.settings.record_dir, start.call_sid, records, self.recording
            )
        return result
