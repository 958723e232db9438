"""One call: the Twilio socket and the Realtime socket, joined by bounded queues.

``run_call`` owns the call's tasks in one TaskGroup. The audio moves through two pumps, a
receive half and a send half for each direction, so neither socket's reader ever waits on
the other socket:

    twilio-in  --(upstream queue: caller audio, control)-->  upstream-out
    upstream-in --(playback queue: model audio, marks, clear)--> twilio-out

(A caller frame that could not wait anyway, with nothing queued ahead and an empty send
buffer upstream, is written by twilio-in itself: ``Call._send_now``.)

The upstream side (``upstream-in``, ``upstream-out``, ``upstream-watch``, ``session-clock``)
lives in a nested TaskGroup, so a lost upstream can be replaced mid-call; beside the pumps run
``media-watch`` (silence upstream when Twilio's media stops), ``closer``, ``tools`` and,
with ``RECORD_DIR``, ``recorder``.

Any task ends the call by raising ``_CallEnded``; the TaskGroup then cancels the rest and
``run_call`` closes both sockets. A failed call closes Twilio's socket so the TwiML after
``</Connect>`` (the apology) plays.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.protocol import State

from voicebridge.config import Settings
from voicebridge.core import realtime as rt
from voicebridge.core import twilio as tw
from voicebridge.core.actions import (
    Action,
    EndCall,
    FlushPlayback,
    Ignored,
    Playback,
    Probe,
    RunTool,
    SendTwilio,
    SendUpstream,
)
from voicebridge.core.call import CallCore, CallPolicy, Phase
from voicebridge.core.stats import CallStats
from voicebridge.core.stall import StallWatch
from voicebridge.errors import ProtocolError, UpstreamError
from voicebridge.logs import mask_number
from voicebridge.server.queues import FrameQueue, QueueOverflow
from voicebridge.server.recorder import CallRecorder, RecordingHealth, write_transcript
from voicebridge.server.tools import Ending, Toolbox
from voicebridge.server.twilio_rest import TwilioRestError, rest_configured, update_call
from voicebridge.server.upstream import close_upstream, open_upstream

__all__ = ["Call", "CallResult", "run_call", "session_config"]

log = logging.getLogger(__name__)

# A caller frame written straight upstream is at most this long: far below the write limit
# (32 KiB) past which websockets' send waits to drain. A μ-law frame's append is ~250 bytes,
# a 24 kHz PCM one ~1.3 KB; an oversized frame takes the queue.
DIRECT_SEND_MAX = 4096


class _CallEnded(Exception):
    def __init__(
        self, reason: str, failed: bool, close_code: int | None = None, deliberate: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failed = failed
        self.close_code = close_code
        self.deliberate = deliberate


class _UpstreamLost(Exception):
    """The upstream connection ended or stopped responding; it may be replaced once."""


class _Renew(Exception):
    """The upstream session reached its age limit: continue in a fresh one."""


E = TypeVar("E", bound=BaseException)


def _first(group: BaseException, kind: type[E]) -> E:
    """The first ``kind`` exception in a (nested) exception group."""
    if isinstance(group, kind):
        return group
    if isinstance(group, BaseExceptionGroup):
        for exc in group.exceptions:
            found = _first_or_none(exc, kind)
            if found is not None:
                return found
    raise LookupError(kind.__name__)


def _first_or_none(exc: BaseException, kind: type[E]) -> E | None:
    try:
        return _first(exc, kind)
    except LookupError:
        return None


Admit = Callable[[tw.Start], "str | None"]  # the refusal reason, or None to admit


@dataclass(slots=True)
class CallResult:
    reason: str
    failed: bool
    call_sid: str = ""
    stream_sid: str = ""
    duration_s: float = 0.0
    stats: CallStats = field(default_factory=CallStats)
    caller_frames_dropped: int = 0
    playback_dropped: int = 0
    deliberate: bool = False  # ended on purpose after a closing line
    admitted: bool = False  # holds a call slot until released
    refused: str | None = None  # why `start` was refused, if it was
    close_code: int | None = None


def session_config(
    settings: Settings, tools: tuple[dict[str, object], ...] = ()
) -> rt.SessionConfig:
    """The session voicebridge asks for, from the settings (README "Turn-taking")."""
    fmt: rt.AudioFormat = "audio/pcm" if settings.upstream_audio == "pcm24k" else "audio/pcmu"
    turn: dict[str, object] = {
        "type": settings.turn_detection,
        "create_response": settings.create_response,
        "interrupt_response": settings.interrupt_response,
    }
    if settings.turn_detection == "server_vad":
        turn.update(
            threshold=settings.vad_threshold,
            prefix_padding_ms=settings.vad_prefix_padding_ms,
            silence_duration_ms=settings.vad_silence_ms,
        )
        if settings.idle_timeout_ms:
            turn["idle_timeout_ms"] = settings.idle_timeout_ms
    else:
        turn["eagerness"] = settings.vad_eagerness
    return rt.SessionConfig(
        instructions=settings.instructions,
        voice=settings.voice,
        input_format=fmt,
        output_format=fmt,
        turn_detection=turn,
        noise_reduction=None if settings.noise_reduction == "off" else settings.noise_reduction,
        transcription_model=settings.transcription_model or None,
        tools=tools,
    )


def call_policy(settings: Settings) -> CallPolicy:
    return CallPolicy(
        greeting_instructions=settings.greeting_instructions,
        idle_reprompts=settings.idle_reprompts,
        apology_instructions=settings.apology_instructions,
    )


def _now() -> float:
    return time.monotonic() * 1000.0


class Call:
    """One call's sockets, queues and tasks; ``run`` it, ``request_close`` to end it well."""

    def __init__(
        self,
        ws: WebSocket,
        settings: Settings,
        admit: Admit,
        observe: Callable[[str, float], None] = lambda name, ms: None,
        toolbox: Toolbox | None = None,
        recording: RecordingHealth | None = None,
    ) -> None:
        self.ws = ws
        self.recording = recording or RecordingHealth()
        self.observe = observe
        self.toolbox = toolbox or Toolbox(settings, [])
        # Tool calls wait here for the tools task; a model calling more than this many at
        # once gets an error output for the excess (counted).
        self.tool_q: asyncio.Queue[RunTool] = asyncio.Queue(maxsize=8)
        self.ending: Ending | None = None
        self.close_instructions: str | None = settings.closing_instructions
        self._timers: list[asyncio.TimerHandle] = []
        self._ended_through_twilio: str | None = None
        self.recorder: CallRecorder | None = None
        self._early: list[str] = []  # inbound messages before `start` names the call
        self.settings = settings
        self.admit = admit
        self.admitted = False
        self.core = CallCore(
            session_config(settings, self.toolbox.declarations()), call_policy(settings)
        )
        self.last_media = time.monotonic()
        self.upstream_q: FrameQueue[str] = FrameQueue(settings.caller_queue_frames)
        self._upstream_conn: ClientConnection | None = None  # open, and upstream-out running
        self.playback_q: FrameQueue[Playback | Probe | str] = FrameQueue(
            settings.playback_queue_chunks
        )
        self.session_ready = asyncio.Event()
        self.close_requested = asyncio.Event()
        self.close_reason = ""
        self.log: logging.LoggerAdapter[logging.Logger] = logging.LoggerAdapter(log, {})
        self._logged: set[str] = set()

    # -- actions -------------------------------------------------------------------

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendUpstream):
                if not action.audio:
                    self.upstream_q.put_control(action.text)
                elif not self.upstream_q.put_audio(action.text):
                    self.core.stats.caller_queue_dropped += 1
                    self._once(
                        "caller_drop", "upstream not keeping up: dropping oldest caller audio"
                    )
            elif isinstance(action, Playback):
                if not self.playback_q.put_audio(action):
                    self.core.stats.playback_queue_dropped += 1
                    self._once(
                        "playback_drop", "Twilio not keeping up: dropping oldest model audio"
                    )
            elif isinstance(action, (SendTwilio, Probe)):
                self.playback_q.put_control(
                    action.text if isinstance(action, SendTwilio) else action
                )
            elif isinstance(action, FlushPlayback):
                self.playback_q.drain_audio()
                if self.recorder is not None:
                    self.recorder.cleared(_now())
            elif isinstance(action, RunTool):
                try:
                    self.tool_q.put_nowait(action)
                except asyncio.QueueFull:
                    self.core.stats.upstream_ignored["tool_calls_over_limit"] += 1
                    error = json.dumps({"ok": False, "error": "too many tool calls at once"})
                    self.apply(self.core.tool_result(action.call.call_id, error))
            elif isinstance(action, Ignored):
                self._once(
                    f"ignored:{action.reason}", f"ignoring bad input ({action.reason}); counting it"
                )
            elif isinstance(action, EndCall):
                raise _CallEnded(action.reason, action.failed, deliberate=action.deliberate)

    def _once(self, key: str, message: str) -> None:
        """Log a recurring condition once per call; the counters carry the totals."""
        if key not in self._logged:
            self._logged.add(key)
            self.log.warning("%s", message)

    # -- Twilio side ---------------------------------------------------------------

    async def receive_twilio(self) -> tw.TwilioEvent | None:
        """The next Twilio event, or None for a frame that was ignored (and counted)."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            if message.get("code") == 1009:
                self.core.stats.ignored["message_too_big"] += 1
                raise _CallEnded("twilio_message_too_big", failed=True)
            raise _CallEnded("caller_disconnected", failed=False)
        text = message.get("text")
        if text is not None and self.settings.record_dir:
            if self.recorder is not None:
                self.recorder.inbound(text)
            elif len(self._early) < 16:
                self._early.append(text)
        if text is None:
            self.core.stats.ignored["binary_frame"] += 1
            self._once("binary_frame", "Twilio sent a binary frame; ignored")
            return None
        try:
            return tw.parse_twilio(text)
        except ProtocolError as exc:
            self.core.stats.ignored[exc.reason] += 1
            self._once(f"twilio:{exc.reason}", f"bad message from Twilio ignored: {exc}")
            return None

    async def wait_start(self) -> None:
        while self.core.phase is Phase.WAITING_START:
            event = await self.receive_twilio()
            if event is not None:
                self.apply(self.core.receive_twilio(event, _now()))

    async def twilio_in(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            event = await self.receive_twilio()
            if event is None:
                continue
            if isinstance(event, tw.Media):
                self.last_media = time.monotonic()
                actions = self.core.receive_twilio(event, _now())
                if len(actions) == 1 and await self._send_now(actions[0]):
                    continue
            else:
                if isinstance(event, tw.Dtmf):
                    # After a 1 s pause with no further digit the model answers.
                    self._timers = [t for t in self._timers if not t.cancelled()][-8:]
                    self._timers.append(loop.call_later(1.0, self._dtmf_pause))
                actions = self.core.receive_twilio(event, _now())
            self.apply(actions)

    async def _send_now(self, action: Action) -> bool:
        """Write a caller frame straight upstream when that cannot wait; else leave it queued.

        A frame skips the queue, and upstream-out's wake-up (about 3 % of the CPU per frame,
        bench/RESULTS.md), only when nothing is queued ahead of it (so order holds) and the
        upstream socket is open (a closing one makes send wait for the close), not paused by
        flow control, with an empty send buffer, and the frame is far smaller than websockets'
        write limit (so send returns without waiting to drain). Otherwise it takes the queue
        and its drop-oldest policy as before: the Twilio reader never waits on the upstream.
        """
        conn = self._upstream_conn
        if (
            conn is None
            or not isinstance(action, SendUpstream)
            or not action.audio
            or len(action.text) > DIRECT_SEND_MAX
            or self.upstream_q.waiting()
            or conn.state is not State.OPEN
            or conn.transport.get_write_buffer_size()
            or getattr(conn, "paused", True)  # flow control, e.g. TLS's own buffer full
        ):
            return False
        try:
            await conn.send(action.text)
        except ConnectionClosed:
            return False  # queued for the next session; upstream-in reports the loss
        return True

    async def media_watch(self) -> None:
        """Feed silence upstream, a frame per 20 ms, while Twilio's media has stopped.

        The gap is watched by a timer callback, re-armed about ten times a second, rather
        than by this task: a task woken that often cost about 3 % of the CPU at 150 calls
        (bench/RESULTS.md). The task only wakes to fill a gap.
        """
        gap = self.settings.media_gap_ms / 1000.0
        loop = asyncio.get_running_loop()
        media_stopped = asyncio.Event()
        timer: asyncio.TimerHandle | None = None

        def check() -> None:
            nonlocal timer
            quiet = time.monotonic() - self.last_media
            if quiet < gap:
                timer = loop.call_later(gap - quiet, check)
            else:
                media_stopped.set()

        try:
            while True:
                media_stopped.clear()
                check()
                await media_stopped.wait()
                self._once("media_gap", "Twilio media stopped: feeding silence upstream")
                while time.monotonic() - self.last_media >= gap:
                    self.apply(self.core.media_gap())
                    await asyncio.sleep(0.02)
        finally:
            if timer is not None:
                timer.cancel()

    async def twilio_out(self) -> None:
        send = self.ws.send_text
        try:
            while True:
                item = await self.playback_q.get()
                if isinstance(item, str):
                    await send(item)
                    continue
                now = _now()
                rendered = self.core.render(item, now)
                for text in rendered.messages:
                    await send(text)
                if self.recorder is not None and rendered.messages and isinstance(item, Playback):
                    self.recorder.assistant(item.payload, now, item.ms)
                for timing in rendered.timings:
                    self.observe(timing.name, timing.ms)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise _CallEnded(f"twilio_send_failed: {exc!r}", failed=False) from None

    # -- upstream side -------------------------------------------------------------

    async def upstream_in(self, conn: ClientConnection) -> None:
        try:
            async for text in conn:
                try:
                    event = rt.parse_realtime(text)
                except ProtocolError as exc:
                    self.core.count_upstream_error(f"bad_event:{exc.reason}")
                    self._once(
                        f"rt:{exc.reason}", f"bad event from the Realtime API ignored: {exc}"
                    )
                    continue
                actions = self.core.receive_realtime(event, _now())
                if isinstance(event, rt.ErrorEvent):
                    self._log_upstream_error(event)
                elif isinstance(event, rt.ResponseDone) and event.status in (
                    "failed",
                    "incomplete",
                ):
                    self._log_response(event)
                self.apply(actions)
                if self.core.session_ready and not self.session_ready.is_set():
                    self.session_ready.set()
        except ConnectionClosedOK:
            pass
        except ConnectionClosed as exc:
            raise _UpstreamLost(str(exc)) from None
        raise _UpstreamLost(f"closed with code {conn.close_code} {conn.close_reason or ''}")

    def _log_upstream_error(self, err: rt.ErrorEvent) -> None:
        if err.code == "response_cancel_not_active":
            # A race with the response's own end; harmless.
            self.log.debug("upstream: %s", err.message)
        else:
            self.log.warning(
                "upstream error %s (%s) for event %s: %s",
                err.code,
                err.type,
                err.event_id,
                err.message,
            )

    def _log_response(self, done: rt.ResponseDone) -> None:
        details = done.status_details or {}
        error = details.get("error") if isinstance(details.get("error"), dict) else {}
        self.log.warning(
            "response %s %s: %s",
            done.response_id,
            done.status,
            details.get("reason") or (error or {}).get("message") or "no reason given",
        )

    async def upstream_out(self, conn: ClientConnection) -> None:
        # No timer per send (it cost about 5 % of the CPU, bench/RESULTS.md): a peer that
        # stops reading is caught by its unanswered pings (upstream.py), or by upstream_watch
        # when a full send buffer holds the pings back too.
        self._upstream_conn = conn  # twilio-in may now write to it directly (_send_now)
        try:
            while True:
                await conn.send(await self.upstream_q.get())
        except ConnectionClosed as exc:
            raise _UpstreamLost(str(exc)) from None
        finally:
            self._upstream_conn = None

    async def upstream_watch(self) -> None:
        """End a connection whose sends have made no progress for the stall timeout."""
        watch = StallWatch(self.settings.upstream_stall_timeout_s)
        while True:
            await asyncio.sleep(watch.limit / 4)
            queue = self.upstream_q
            if watch.check(queue.taken, queue.waiting(), time.monotonic()):
                self._upstream_conn = None
                raise _UpstreamLost(
                    f"stalled: no frame sent for {watch.stuck_for(time.monotonic()):.1f} s"
                )

    # -- owning the upstream ---------------------------------------------------------

    async def _open(self, deadline: float) -> ClientConnection:
        began = _now()
        try:
            conn = await open_upstream(self.settings, deadline)
            self.observe("upstream_connect", _now() - began)
        except UpstreamError as exc:
            if exc.config_error:
                self.log.error("configuration error: %s", exc)
            raise _CallEnded(f"upstream_connect_failed: {exc}", failed=True) from None
        try:
            await conn.send(rt.session_update(self.core.session_config, self.core.next_event_id()))
        except ConnectionClosed as exc:
            await close_upstream(conn)
            raise _CallEnded(f"upstream_connect_failed: {exc}", failed=True) from None
        return conn

    async def upstream(self) -> None:
        """Open the upstream, pump it, and replace it once if it is lost mid-call."""
        reconnects = 1 if self.settings.upstream_reconnect else 0
        deadline = self.settings.upstream_connect_timeout_s
        while True:
            conn = await self._open(deadline)
            lost: _UpstreamLost | None = None
            renew = False
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self.upstream_in(conn), name="upstream-in")
                    tg.create_task(self.upstream_out(conn), name="upstream-out")
                    tg.create_task(self.upstream_watch(), name="upstream-watch")
                    try:
                        async with asyncio.timeout(self.settings.upstream_connect_timeout_s):
                            await self.session_ready.wait()
                    except TimeoutError:
                        raise _CallEnded("session_not_confirmed", failed=True) from None
                    tg.create_task(self._session_clock(), name="session-clock")
            except* _UpstreamLost as group:
                lost = _first(group, _UpstreamLost)
            except* _Renew:
                renew = True
            finally:
                await close_upstream(conn)
            if lost is not None:
                if reconnects == 0 or self.core.closing is not None:
                    raise _CallEnded(f"upstream_lost: {lost}", failed=True)
                reconnects -= 1
                self.log.warning("upstream lost (%s): opening a fresh session", lost)
            elif renew:
                self.log.info("upstream session at its age limit: continuing in a fresh one")
            self.core.new_session(announce=lost is not None)
            self.session_ready.clear()
            self.upstream_q.drain_control()  # meant for the session that is gone
            deadline = self.settings.reconnect_timeout_s

    async def _session_clock(self) -> None:
        # The upstream cuts sessions at 60 minutes, mid-sentence and without warning.
        await asyncio.sleep(self.settings.session_limit_s)
        if self.settings.session_limit_action == "renew":
            self._upstream_conn = None  # frames from now on wait for the fresh session
            raise _Renew()
        self.request_close("session_limit")

    def request_close(self, reason: str, instructions: str | None = "") -> None:
        """End the call well: the model says a closing line, the caller hears it, the end.

        ``instructions`` is the closing line ("" for CLOSING_INSTRUCTIONS; None when the
        model has already said its last words).
        """
        if not self.close_requested.is_set():
            self.close_reason = reason
            self.close_instructions = (
                self.settings.closing_instructions if instructions == "" else instructions
            )
            self.close_requested.set()

    async def closer(self) -> None:
        await self.close_requested.wait()
        reason = self.close_reason
        self.log.info("closing the call (%s)", reason)
        self.apply(self.core.close(reason, self.close_instructions))
        deadline = time.monotonic() + self.settings.closing_timeout_s
        # Polled: the last echo is an event, but "nothing left to play" is a projection.
        while not self.core.closing_finished(_now()) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if not self.core.closing_finished(_now()):
            self.log.warning("closing line not heard within %g s", self.settings.closing_timeout_s)
        await self._end_through_twilio(reason)
        raise _CallEnded(reason, failed=False, deliberate=True)

    async def _end_through_twilio(self, reason: str) -> None:
        """Replace the call's TwiML (hang up, or transfer) so no apology follows."""
        start = self.core.start
        if start is None:
            return
        params = self.ending.rest_params if self.ending else {"Status": "completed"}
        if not rest_configured(self.settings):
            self._once(
                "no_rest",
                "no TWILIO_ACCOUNT_SID: closing the stream instead (the "
                "caller also hears FAILURE_SAY)",
            )
            return
        try:
            await update_call(self.settings, start.call_sid, params)
        except TwilioRestError as exc:
            self.log.warning("could not end the call through Twilio (%s): %s", reason, exc)
            return
        self.log.info("call %s through Twilio's REST API (%s)", reason, ", ".join(params))
        self._ended_through_twilio = reason
        # Twilio now stops the stream: wait briefly for its `stop` (twilio-in ends the call).
        await asyncio.sleep(2.0)

    async def tools(self) -> None:
        """Run the model's function calls one at a time, off the audio path."""
        while True:
            job = await self.tool_q.get()
            outcome = await self.toolbox.run(job.call)
            ending = outcome.ending
            self.apply(
                self.core.tool_result(job.call.call_id, outcome.output, respond=ending is None)
            )
            if ending is not None and not self.close_requested.is_set():
                self.ending = ending
                self.request_close(ending.reason, None if job.spoke else ending.instructions)

    def _dtmf_pause(self) -> None:
        if self.core.phase is Phase.STREAMING:
            self.apply(self.core.dtmf_pause(_now()))

    # -- the call ------------------------------------------------------------------

    async def run(self) -> CallResult:
        started = time.monotonic()
        result = CallResult("unknown", failed=True)
        try:
            try:
                async with asyncio.timeout(self.settings.start_timeout_s):
                    await self.wait_start()
            except TimeoutError:
                raise _CallEnded("refused: no_start", failed=True, close_code=1008) from None
            assert self.core.start is not None
            refusal = self.admit(self.core.start)
            if refusal:
                # Checked before any upstream connection: a stray client costs nothing.
                raise _CallEnded(f"refused: {refusal}", failed=True, close_code=1008)
            self.admitted = True
            self._call_started()
            if self.settings.record_dir:
                self.recorder = CallRecorder(
                    self.settings.record_dir, self.core.start.call_sid, self.recording
                )
                for text in self._early:
                    self.recorder.inbound(text)
                self._early.clear()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.twilio_in(), name="twilio-in")
                tg.create_task(self.twilio_out(), name="twilio-out")
                tg.create_task(self.media_watch(), name="media-watch")
                tg.create_task(self.closer(), name="closer")
                tg.create_task(self.tools(), name="tools")
                if self.recorder is not None:
                    tg.create_task(self.recorder.run(), name="recorder")
                tg.create_task(self.upstream(), name="upstream")
        except* _CallEnded as group:
            ended = _first(group, _CallEnded)
            result = CallResult(ended.reason, ended.failed, close_code=ended.close_code)
            result.deliberate = ended.deliberate
        except* QueueOverflow as group:
            result = CallResult(f"queue_overflow: {_first(group, QueueOverflow)}", failed=True)
        except* Exception as group:
            self.log.error("call failed", exc_info=group)
            result = CallResult("internal_error", failed=True)
        finally:
            for timer in self._timers:
                timer.cancel()
            if self._ended_through_twilio and result.reason in (
                "caller_hangup",
                "caller_disconnected",
            ):
                # The `stop` that followed our REST update: still our deliberate ending.
                result = CallResult(self._ended_through_twilio, failed=False)
                result.deliberate = True
            result.close_code = result.close_code or (1011 if result.failed else 1000)
            await self._close_twilio(result.close_code)
        start = self.core.start
        result.call_sid = start.call_sid if start else ""
        result.stream_sid = start.stream_sid if start else ""
        result.duration_s = time.monotonic() - started
        result.stats = self.core.stats
        result.caller_frames_dropped = self.upstream_q.dropped
        result.playback_dropped = self.playback_q.dropped
        result.admitted = self.admitted
        if result.reason.startswith("refused: "):
            result.refused = result.reason.removeprefix("refused: ")
            return result  # logged and counted by the guard: never a call
        self._call_ended(result)
        if self.recorder is not None:
            await self.recorder.finish(self.core.started_at or 0.0)
        if self.settings.record_dir and self.core.transcript.turns and start is not None:
            records = [turn.as_record() for turn in self.core.transcript.turns]
            await write_transcript(
                self.settings.record_dir, start.call_sid, records, self.recording
            )
        return result

    async def _close_twilio(self, code: int) -> None:
        # Closing our side makes Twilio run the TwiML after </Connect>: for a failed call,
        # that is the apology.
        if self.ws.application_state is WebSocketState.DISCONNECTED:
            return
        try:
            async with asyncio.timeout(1.0):
                await self.ws.close(code)
        except (TimeoutError, RuntimeError, OSError, WebSocketDisconnect):
            pass

    def _call_started(self) -> None:
        start = self.core.start
        assert start is not None
        self.log = logging.LoggerAdapter(
            log, {"call_sid": start.call_sid, "stream_sid": start.stream_sid}
        )
        params = start.custom_parameters
        fields = {
            "event": "call_started",
            "call_sid": start.call_sid,
            "stream_sid": start.stream_sid,
            "from": mask_number(params.get("From", "")),
            "to": mask_number(params.get("To", "")),
        }
        log.info("call started %s", _kv(fields, skip="event"), extra={"fields": fields})

    def _call_ended(self, r: CallResult) -> None:
        s = r.stats
        fields: dict[str, object] = {
            "event": "call_ended",
            "call_sid": r.call_sid,
            "stream_sid": r.stream_sid,
            "outcome": "failed" if r.failed else "deliberate" if r.deliberate else "ok",
            "reason": r.reason,
            "duration_s": round(r.duration_s, 1),
            "frames_in": s.frames_in,
            "chunks_out": s.chunks_out,
            "caller_dropped": r.caller_frames_dropped,
            "playback_dropped": r.playback_dropped,
            "barge_ins": s.barge_ins,
            "truncations": s.truncations,
            "late_deltas": s.late_deltas_dropped,
            "silence_frames": s.silence_frames,
            "idle_reprompts": s.idle_reprompts,
            "failed_responses": s.failed_responses,
            "incomplete_responses": s.incomplete_responses,
            "reconnects": s.reconnects,
            "dtmf": s.dtmf,
            "ignored": dict(s.ignored),
            "upstream_ignored": dict(s.upstream_ignored),
            "upstream_errors": dict(s.upstream_errors),
            "tokens": dict(s.tokens),
        }
        level = logging.WARNING if r.failed else logging.INFO
        log.log(level, "call ended %s", _kv(fields, skip="event"), extra={"fields": fields})


def _kv(fields: Mapping[str, object], skip: str) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items() if k != skip)


async def run_call(ws: WebSocket, settings: Settings, admit: Admit) -> CallResult:
    """Bridge one accepted Media Streams WebSocket until the call ends.

    ``admit`` decides from Twilio's ``start`` whether the call may reach the upstream.
    """
    return await Call(ws, settings, admit).run()
