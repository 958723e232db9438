"""One call: the Twilio socket and the Realtime socket, joined by bounded queues.

``run_call`` owns four tasks in one TaskGroup — a receive half and a send half for each
direction, so neither socket's reader ever waits on the other socket:

    twilio-in  --(upstream queue: caller audio, control)-->  upstream-out
    upstream-in --(playback queue: model audio, marks, clear)--> twilio-out

Any task ends the call by raising ``_CallEnded``; the TaskGroup then cancels the rest and
``run_call`` closes both sockets. A failed call closes Twilio's socket so the TwiML after
``</Connect>`` (the apology) plays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from voicebridge.config import Settings
from voicebridge.core import realtime as rt
from voicebridge.core import twilio as tw
from voicebridge.core.call import (
    Action,
    CallCore,
    CallPolicy,
    CallStats,
    EndCall,
    FlushPlayback,
    Phase,
    Playback,
    Probe,
    SendTwilio,
    SendUpstream,
)
from voicebridge.errors import ProtocolError, UpstreamError
from voicebridge.server.queues import FrameQueue, QueueOverflow
from voicebridge.server.upstream import close_upstream, open_upstream

__all__ = ["Call", "CallResult", "run_call", "session_config"]

log = logging.getLogger(__name__)


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


def session_config(settings: Settings) -> rt.SessionConfig:
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
    )


def call_policy(settings: Settings) -> CallPolicy:
    return CallPolicy(
        greeting_instructions=settings.greeting_instructions,
        idle_reprompts=settings.idle_reprompts,
        apology_instructions=settings.apology_instructions,
    )


def _now() -> float:
    return time.monotonic() * 1000.0


def mask_number(number: str) -> str:
    """+14155550123 -> +1415***0123; keeps enough to recognise a number in logs."""
    if len(number) <= 6:
        return "***" if number else ""
    return number[:5] + "***" + number[-4:]


class Call:
    """One call's sockets, queues and tasks; ``run`` it, ``request_close`` to end it well."""

    def __init__(self, ws: WebSocket, settings: Settings, admit: Admit) -> None:
        self.ws = ws
        self.settings = settings
        self.admit = admit
        self.admitted = False
        self.core = CallCore(session_config(settings), call_policy(settings))
        self.last_media = time.monotonic()
        self.upstream_q: FrameQueue[str] = FrameQueue(settings.caller_queue_frames)
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
        if self.core.first_ignored:
            for reason in self.core.first_ignored:
                self._once(f"ignored:{reason}", f"ignoring bad input ({reason}); counting it")
            self.core.first_ignored.clear()
        for action in actions:
            if isinstance(action, SendUpstream):
                if not action.audio:
                    self.upstream_q.put_control(action.text)
                elif not self.upstream_q.put_audio(action.text):
                    self._once(
                        "caller_drop", "upstream not keeping up: dropping oldest caller audio"
                    )
            elif isinstance(action, Playback):
                if not self.playback_q.put_audio(action):
                    self._once(
                        "playback_drop", "Twilio not keeping up: dropping oldest model audio"
                    )
            elif isinstance(action, (SendTwilio, Probe)):
                self.playback_q.put_control(
                    action.text if isinstance(action, SendTwilio) else action
                )
            elif isinstance(action, FlushPlayback):
                self.playback_q.drain_audio()
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
        while True:
            event = await self.receive_twilio()
            if event is not None:
                if isinstance(event, tw.Media):
                    self.last_media = time.monotonic()
                self.apply(self.core.receive_twilio(event, _now()))

    async def media_watch(self) -> None:
        """Feed silence upstream, a frame per 20 ms, while Twilio's media has stopped."""
        gap = self.settings.media_gap_ms / 1000.0
        while True:
            quiet = time.monotonic() - self.last_media
            if quiet < gap:
                await asyncio.sleep(gap - quiet)
                continue
            self._once("media_gap", "Twilio media stopped: feeding silence upstream")
            self.apply(self.core.media_gap())
            await asyncio.sleep(0.02)

    async def twilio_out(self) -> None:
        send = self.ws.send_text
        try:
            while True:
                item = await self.playback_q.get()
                if isinstance(item, str):
                    await send(item)
                    continue
                for text in self.core.render(item, _now()):
                    await send(text)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise _CallEnded(f"twilio_send_failed: {exc!r}", failed=False) from None

    # -- upstream side -------------------------------------------------------------

    async def upstream_in(self, conn: ClientConnection) -> None:
        try:
            async for text in conn:
                try:
                    event = rt.parse_realtime(text)
                except ProtocolError as exc:
                    self.core.stats.upstream_errors[f"bad_event:{exc.reason}"] += 1
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
        stall = self.settings.upstream_stall_timeout
        try:
            while True:
                text = await self.upstream_q.get()
                async with asyncio.timeout(stall):  # a peer that stopped reading
                    await conn.send(text)
        except TimeoutError:
            raise _UpstreamLost(f"stalled: a send blocked for {stall:g} s") from None
        except ConnectionClosed as exc:
            raise _UpstreamLost(str(exc)) from None

    # -- owning the upstream ---------------------------------------------------------

    async def _open(self, deadline: float) -> ClientConnection:
        try:
            conn = await open_upstream(self.settings, deadline)
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
        deadline = self.settings.upstream_connect_timeout
        while True:
            conn = await self._open(deadline)
            lost: _UpstreamLost | None = None
            renew = False
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self.upstream_in(conn), name="upstream-in")
                    tg.create_task(self.upstream_out(conn), name="upstream-out")
                    try:
                        async with asyncio.timeout(self.settings.upstream_connect_timeout):
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
            deadline = self.settings.reconnect_timeout

    async def _session_clock(self) -> None:
        # The upstream cuts sessions at 60 minutes, mid-sentence and without warning.
        await asyncio.sleep(self.settings.session_limit_s)
        if self.settings.session_limit_action == "renew":
            raise _Renew()
        self.request_close("session_limit")

    def request_close(self, reason: str) -> None:
        """End the call well: the model says a closing line, the caller hears it, the end."""
        if not self.close_requested.is_set():
            self.close_reason = reason
            self.close_requested.set()

    async def closer(self) -> None:
        await self.close_requested.wait()
        reason = self.close_reason
        self.log.info("closing the call (%s)", reason)
        self.apply(self.core.close(reason, self.settings.closing_instructions))
        deadline = time.monotonic() + self.settings.closing_timeout
        # Polled: "heard" is a projection of Twilio's playback clock, not an event.
        while not self.core.closing_finished(_now()) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if not self.core.closing_finished(_now()):
            self.log.warning("closing line not heard within %g s", self.settings.closing_timeout)
        raise _CallEnded(reason, failed=False, deliberate=True)

    # -- the call ------------------------------------------------------------------

    async def run(self) -> CallResult:
        started = time.monotonic()
        result = CallResult("unknown", failed=True)
        try:
            try:
                async with asyncio.timeout(self.settings.start_timeout):
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
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.twilio_in(), name="twilio-in")
                tg.create_task(self.twilio_out(), name="twilio-out")
                tg.create_task(self.media_watch(), name="media-watch")
                tg.create_task(self.closer(), name="closer")
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
        self.log.info(
            "call started call_sid=%s stream_sid=%s from=%s to=%s",
            start.call_sid,
            start.stream_sid,
            mask_number(params.get("From", "")),
            mask_number(params.get("To", "")),
        )

    def _call_ended(self, r: CallResult) -> None:
        s = r.stats
        level = logging.WARNING if r.failed else logging.INFO
        self.log.log(
            level,
            "call ended call_sid=%s stream_sid=%s outcome=%s reason=%s duration=%.1fs "
            "frames_in=%d chunks_out=%d caller_dropped=%d playback_dropped=%d barge_ins=%d "
            "truncations=%d late_deltas=%d silence_frames=%d idle_reprompts=%d "
            "failed_responses=%d incomplete_responses=%d reconnects=%d ignored=%s "
            "upstream_ignored=%s upstream_errors=%s tokens=%s",
            r.call_sid,
            r.stream_sid,
            "failed" if r.failed else "ok",
            r.reason,
            r.duration_s,
            s.frames_in,
            s.chunks_out,
            r.caller_frames_dropped,
            r.playback_dropped,
            s.barge_ins,
            s.truncations,
            s.late_deltas_dropped,
            s.silence_frames,
            s.idle_reprompts,
            s.failed_responses,
            s.incomplete_responses,
            s.reconnects,
            dict(s.ignored),
            dict(s.upstream_ignored),
            dict(s.upstream_errors),
            dict(s.tokens),
        )


async def run_call(ws: WebSocket, settings: Settings, admit: Admit) -> CallResult:
    """Bridge one accepted Media Streams WebSocket until the call ends.

    ``admit`` decides from Twilio's ``start`` whether the call may reach the upstream.
    """
    return await Call(ws, settings, admit).run()
