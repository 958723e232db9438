"""A call's Twilio side: reading and parsing Media Streams, writing playback, watching the media.

Its tasks: ``twilio-in`` (read, parse, hand to the core; a caller frame that cannot wait is
written straight upstream, ``_send_now``), ``twilio-out`` (the playback queue to Twilio) and
``media-watch`` (silence upstream while Twilio's media has stopped). A keypad digit arms the
1 s pause timer after which the model answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from voicebridge.config import Settings
from voicebridge.core import twilio as tw
from voicebridge.core.actions import Action, Playback, Probe, SendUpstream
from voicebridge.core.call import CallCore, Phase
from voicebridge.errors import ProtocolError
from voicebridge.server.call_log import CallLog
from voicebridge.server.clock import now_ms, now_s
from voicebridge.server.lifetime import CallEnded
from voicebridge.server.queues import FrameQueue
from voicebridge.server.recorder import CallRecorder, RecordingHealth
from voicebridge.server.twilio_socket import TwilioClosed, TwilioSocket
from voicebridge.server.upstream import UpstreamClosed, UpstreamConnection

__all__ = ["DTMF_PAUSE_S", "TwilioSide"]

# After this pause with no further keypad digit the model answers (README "Keypad").
DTMF_PAUSE_S = 1.0
CLOSE_TIMEOUT_S = 1.0  # our close of Twilio's socket must not hold the call's end
EARLY_MESSAGES = 16  # inbound messages kept for the recording until `start` names the call
# Twilio sends `connected`, then `start`: a socket that sends this many messages without a
# `start` is not Twilio, and is refused rather than read on until START_TIMEOUT_S.
MESSAGES_BEFORE_START = 16


class TwilioSide:
    """The Twilio socket's tasks and the playback queue's consumer."""

    def __init__(
        self,
        socket: TwilioSocket,
        settings: Settings,
        core: CallCore,
        log: CallLog,
        apply: Callable[[list[Action]], None],
        upstream_q: FrameQueue[str],
        playback_q: FrameQueue[Playback | Probe | str],
        direct: Callable[[], UpstreamConnection | None],
        observe: Callable[[str, float], None],
    ) -> None:
        self.socket = socket
        self.settings = settings
        self.core = core
        self.log = log
        self.apply = apply
        self.upstream_q = upstream_q
        self.playback_q = playback_q
        # The upstream connection twilio-in may write to itself, while upstream-out runs.
        self.direct = direct
        self.observe = observe
        self.recorder: CallRecorder | None = None
        self._early: list[str] = []  # inbound messages before `start` names the call
        self._timers: list[asyncio.TimerHandle] = []
        self._wake: asyncio.TimerHandle | None = None  # the core's WakeAt (one at a time)
        self.last_media = now_s()

    # -- receiving ----------------------------------------------------------------------

    async def receive(self) -> tw.TwilioEvent | None:
        """The next Twilio event, or None for a frame that was ignored (and counted)."""
        try:
            frame = await self.socket.receive()
        except TwilioClosed as exc:
            if exc.code == 1009:
                self.core.stats.ignored["message_too_big"] += 1
                raise CallEnded("twilio_message_too_big", failed=True) from None
            raise CallEnded("caller_disconnected", failed=False) from None
        if isinstance(frame, bytes):
            self.core.stats.ignored["binary_frame"] += 1
            self.log.once("binary_frame", "Twilio sent a binary frame; ignored")
            return None
        if self.settings.record_dir:
            if self.recorder is not None:
                self.recorder.inbound(frame)
            elif len(self._early) < EARLY_MESSAGES:
                self._early.append(frame)
        try:
            return tw.parse_twilio(frame)
        except ProtocolError as exc:
            if self.core.phase is Phase.WAITING_START:  # Twilio's `connected`/`start` parse
                raise CallEnded("refused: bad_message_before_start", True, 1008) from None
            self.core.stats.ignored[exc.reason] += 1
            self.log.once(f"twilio:{exc.reason}", f"bad message from Twilio ignored: {exc}")
            return None

    async def wait_start(self) -> None:
        for _ in range(MESSAGES_BEFORE_START):
            event = await self.receive()
            if event is not None:
                self.apply(self.core.receive_twilio(event, now_ms()))
            if self.core.phase is not Phase.WAITING_START:
                return
        raise CallEnded("refused: messages_before_start", failed=True, close_code=1008)

    def start_recording(self, record_dir: str, call_sid: str, health: RecordingHealth) -> None:
        """Record from here on, with the messages that came before `start` named the call."""
        self.recorder = CallRecorder(record_dir, call_sid, health)
        for text in self._early:
            self.recorder.inbound(text)
        self._early.clear()

    async def twilio_in(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            event = await self.receive()
            if event is None:
                continue
            if isinstance(event, tw.Media):
                self.last_media = now_s()
                actions = self.core.receive_twilio(event, now_ms())
                if len(actions) == 1 and await self._send_now(actions[0]):
                    continue
            else:
                if isinstance(event, tw.Dtmf):
                    self._timers = [t for t in self._timers if not t.cancelled()][-8:]
                    self._timers.append(loop.call_later(DTMF_PAUSE_S, self._dtmf_pause))
                actions = self.core.receive_twilio(event, now_ms())
            self.apply(actions)

    async def _send_now(self, action: Action) -> bool:
        """Write a caller frame straight upstream when that cannot wait; else leave it queued.

        A frame skips the queue, and upstream-out's wake-up (about 3 % of the CPU per frame,
        bench/RESULTS.md), only when nothing is queued ahead of it (so order holds) and the
        connection can take it without waiting (``UpstreamConnection.can_send_now``: open,
        not paused, an empty send buffer, a small frame). Otherwise it takes the queue and
        its drop-oldest policy as before: the Twilio reader never waits on the upstream.
        """
        conn = self.direct()
        if (
            conn is None
            or not isinstance(action, SendUpstream)
            or not action.audio
            or self.upstream_q.waiting()
            or not conn.can_send_now(len(action.text))
        ):
            return False
        try:
            await conn.send(action.text)
        except UpstreamClosed:
            return False  # queued for the next session; upstream-in reports the loss
        return True

    def _dtmf_pause(self) -> None:
        if self.core.phase is Phase.STREAMING:
            self.apply(self.core.dtmf_pause(now_ms()))

    def wake_at(self, at_ms: float) -> None:
        """Call the core back at ``at_ms`` (a local barge-in's window ends then)."""
        if self._wake is not None:
            self._wake.cancel()
        self._wake = asyncio.get_running_loop().call_at(at_ms / 1000.0, self._woken, at_ms)

    def _woken(self, at_ms: float) -> None:
        self._wake = None
        if self.core.phase is Phase.STREAMING:
            # At least at_ms: the loop may run a timer a clock tick early.
            self.apply(self.core.wake(max(now_ms(), at_ms)))

    def cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._wake is not None:
            self._wake.cancel()

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
            # An absolute deadline, compared as computed: a timer fires at its time, so the
            # check passes then (a difference of clock readings could fall an ulp short).
            due = self.last_media + gap
            if loop.time() < due:
                timer = loop.call_at(due, check)
            else:
                media_stopped.set()

        try:
            while True:
                media_stopped.clear()
                check()
                await media_stopped.wait()
                self.log.once("media_gap", "Twilio media stopped: feeding silence upstream")
                while loop.time() >= self.last_media + gap:
                    self.apply(self.core.media_gap())
                    await asyncio.sleep(0.02)
        finally:
            if timer is not None:
                timer.cancel()

    # -- sending ------------------------------------------------------------------------

    async def twilio_out(self) -> None:
        send = self.socket.send_text
        try:
            while True:
                item = await self.playback_q.get()
                if isinstance(item, str):
                    await send(item)
                    continue
                now = now_ms()
                rendered = self.core.render(item, now)
                for text in rendered.messages:
                    await send(text)
                if self.recorder is not None and rendered.messages and isinstance(item, Playback):
                    self.recorder.assistant(item.payload, now, item.ms)
                for timing in rendered.timings:
                    self.observe(timing.name, timing.ms)
        except TwilioClosed as exc:
            raise CallEnded(f"twilio_send_failed: {exc}", failed=False) from None

    def flush_playback(self) -> None:
        """Barge-in: forget queued model audio (the recording is cut here too)."""
        self.playback_q.drain_audio()
        if self.recorder is not None:
            self.recorder.cleared(now_ms())

    async def close(self, code: int) -> None:
        """Close our side: for a failed call, Twilio then plays the TwiML after </Connect>."""
        if self.socket.closed:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.socket.close(code)
        except (TimeoutError, TwilioClosed):
            pass
