"""Twilio's side of a Media Streams WebSocket: pacing, playback, network.

Plays a recorded call towards a voicebridge (or any Media Streams server) the way Twilio
does: ``connected``, ``start``, then ``media`` paced by the recording's timestamps against
a monotonic clock (each frame due at an absolute time, so long calls do not drift), ``dtmf``
and ``stop`` as recorded, optionally looped with sequence numbers, chunks and timestamps
carried on (:mod:`voicebridge.twilio_sim.script`). Audio from the server goes through a
real-time playback buffer (:class:`TwilioPlayer`); marks are echoed at playback time and
``clear`` cuts playback. A :class:`Network` adds one-way delays, jitter and a playout delay.
Every received message is checked against the documented shapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voicebridge.core.signature import compute_signature
from voicebridge.twilio_sim.bench import BenchPath, FrameLog
from voicebridge.twilio_sim.call_report import (
    MAX_KEPT_VIOLATIONS,
    CallReport,
    Network,
    check_outbound,
)
from voicebridge.twilio_sim.line_sounds import CallerSounds
from voicebridge.twilio_sim.player import TwilioPlayer
from voicebridge.twilio_sim.recordings import Recording
from voicebridge.twilio_sim.script import CallScript, Step, TwilioWriter, schedule
from voicebridge.twilio_sim.webhook_client import LocalProxy, new_sid

__all__ = ["EmulatedCall"]


# What travels the uplink (EmulatedCall._uplink).
_OTHER, _START, _MEDIA, _ECHO, _STOP = range(5)


class EmulatedCall:
    """One Media Streams connection played from a recording.

    One task speaks (``_send``): each message of the :func:`schedule` is due at an absolute
    time on the call's clock, goes onto the uplink (``up_ms`` + jitter, never overtaking the
    message before it) and leaves when it reaches the server; echoes of marks join the same
    uplink at playback time. The other task listens (``_receive``) and feeds the playback
    model. The sender sleeps until the next thing it has to do and is woken early only
    when a mark or ``clear`` makes an echo due sooner.
    """

    def __init__(
        self,
        stream_url: str,
        recording: Recording,
        *,
        parameters: Mapping[str, str] | None = None,
        network: Network = Network(),
        speed: float = 1.0,
        hangup_at_ms: float | None = None,
        tail_ms: float = 0.0,
        headers: Mapping[str, str] | None = None,
        call_sid: str | None = None,
        account_sid: str | None = None,
        auth_token: str | None = None,
        proxy: LocalProxy | None = None,
        loop: bool = False,
        script: CallScript | None = None,
        keep_messages: bool = True,
        keep_audio: bool = True,
        open_timeout: float = 10.0,
        dither_base: int | None = None,
        frame_log: FrameLog | None = None,
        direct_url: str | None = None,
        line: CallerSounds | None = None,
        echo_marks: bool = True,
    ) -> None:
        """Args beyond the URL and recording:
        loop: play the recording back to back until hang-up (``hangup_at_ms`` or
            :meth:`request_hangup`); its ``stop`` is then sent only at the very end.
        script: the recording already prepared (shared by many calls of a load run).
        keep_messages: keep every received message in ``report.received``.
        keep_audio: keep payloads, for ``report.write_wav`` (``caller_audio`` and the
            player's chunks); without it only timings are kept.
        line: what the line adds to the caller's audio as it is spoken (a cough, the
            assistant's echo: :class:`~voicebridge.twilio_sim.line_sounds.CallerSounds`).
        echo_marks: False: marks are never echoed (a peer that never confirms playback).
        dither_base, frame_log, direct_url: bench only (``replay_bench``): make frame ``n``
            unique with id ``dither_base + n``; note each frame's key, due and send times;
            also send each frame as ``input_audio_buffer.append`` over a WebSocket of its
            own to ``direct_url`` (the direct baseline).
        """
        self.url = stream_url
        self.proxy = proxy
        if auth_token:
            # Twilio signs the wss:// URL it connects to, with no parameters.
            headers = {
                **(headers or {}),
                "X-Twilio-Signature": compute_signature(auth_token, stream_url),
            }
        self.recording = recording
        self.script = script or CallScript.from_recording(recording)
        self.parameters = dict(parameters) if parameters is not None else None
        self.net = network
        self.speed = speed
        self.hangup_at_ms = hangup_at_ms
        self.tail_ms = tail_ms  # keep the line open (silence) this long after the recording
        self.loop = loop
        self.keep_messages = keep_messages
        self.keep_audio = keep_audio
        self.line = line
        self.open_timeout = open_timeout
        self.echo_marks = echo_marks
        self.headers = dict(headers or {})
        self.report = CallReport(
            call_sid=call_sid or new_sid("CA"),
            stream_sid=new_sid("MZ"),
        )
        self.report.player = TwilioPlayer(network.playout_ms, keep_payloads=keep_audio)
        self.account_sid = account_sid or new_sid("AC")
        self.writer = TwilioWriter(
            self.script,
            stream_sid=self.report.stream_sid,
            call_sid=self.report.call_sid,
            account_sid=self.account_sid,
            parameters=self.parameters,
        )
        self._rng = random.Random(network.seed)
        bench = dither_base is not None or frame_log is not None or direct_url is not None
        self._bench = BenchPath(dither_base, frame_log, direct_url) if bench else None
        self._t0 = 0.0
        self._uplink: deque[tuple[float, str, int]] = deque()  # (reaches server, text, kind)
        self._delayed = bool(network.up_ms or network.jitter_ms)
        self._last_up = 0.0
        self._last_down = 0.0
        self._started = False  # `start` is on its way: a hang-up may follow it
        self._hangup = False
        self._waiter: asyncio.Future[None] | None = None
        self._wake_at = math.inf

    def now(self) -> float:
        return (time.monotonic() - self._t0) * 1000.0

    def _jitter(self) -> float:
        return self._rng.uniform(0.0, self.net.jitter_ms) if self.net.jitter_ms else 0.0

    def request_hangup(self) -> None:
        """Hang up as soon as possible (after ``start``): what is on its way, then ``stop``."""
        self._hangup = True
        self._wake()

    # -- the connection ------------------------------------------------------------

    def _target(self) -> tuple[str, dict[str, str], dict[str, Any]]:
        uri, headers = self.url, dict(self.headers)
        where: dict[str, Any] = {}
        if self.proxy:
            uri, extra = self.proxy.rewrite(self.url)
            headers = {**extra, **headers}
            uri = uri.replace(self.proxy.connect_to, extra["Host"], 1)
            where = {"host": self.proxy.host, "port": self.proxy.port}
        return uri, headers, where

    async def run(self, timeout: float = 120.0) -> CallReport:  # noqa: ASYNC109 (bounds a whole call)
        async with asyncio.timeout(timeout), contextlib.AsyncExitStack() as stack:
            if self._bench is not None:
                await self._bench.open(stack, self.open_timeout)
            uri, headers, where = self._target()
            opening = time.monotonic()
            async with connect(
                uri,
                additional_headers={k: v for k, v in headers.items() if k != "Host"},
                **where,
                compression=None,
                open_timeout=self.open_timeout,
                close_timeout=1,
                max_size=2**20,
                proxy=None,
            ) as ws:
                self._t0 = self.report.t0 = time.monotonic()
                self.report.connect_ms = (self._t0 - opening) * 1000.0
                try:
                    async with asyncio.TaskGroup() as tg:
                        sender = tg.create_task(self._send(ws), name="emulator-send")
                        tg.create_task(self._receive(ws, sender), name="emulator-receive")
                except* ConnectionClosed:
                    pass
            self.report.close_code = ws.close_code
            self.report.close_reason = ws.close_reason or ""
        end = self.report.ended_at = self.now()
        self.report.player.cut(end)  # nothing plays after the stream ends
        return self.report

    # -- what the caller sends -----------------------------------------------------

    def _enqueue(self, spoken: float, text: str, kind: int) -> None:
        # Same TCP stream: a message never overtakes the one before it.
        due = spoken + self.net.up_ms + self._jitter() if self._delayed else spoken
        if due < self._last_up:
            due = self._last_up
        self._last_up = due
        self._uplink.append((due, text, kind))

    def _speak(self, step: Step) -> None:
        """Twilio produces the step's message now; it travels the uplink."""
        due, kind, payload, timestamp, recorded = step
        w = self.writer
        if kind == "media":
            if self.line is not None:
                payload = self.line.frame(payload, due, self.report.player)
            if self._bench is not None:
                payload = self._bench.dither(payload)
            if self.keep_audio:
                self.report.caller_audio.append((due, payload))
            self._enqueue(due, w.media(payload, timestamp), _MEDIA)
            if self._bench is not None:
                self._bench.queued(payload, self._last_up)
        elif kind == "connected":
            self._enqueue(due, w.connected(), _OTHER)
        elif kind == "start":
            self._started = True
            self._enqueue(due, w.start(), _START)
        elif kind == "dtmf":
            assert recorded is not None
            self._enqueue(due, w.dtmf(recorded), _OTHER)
        else:
            self._enqueue(due, w.stop(), _STOP)

    async def _deliver(self, ws: ClientConnection, text: str, kind: int, lag: float) -> bool:
        """Send one message that reached the server; True when it was the ``stop``."""
        report = self.report
        if kind == _MEDIA:
            report.frames_sent += 1
            if lag > report.send_lag_max_ms:
                report.send_lag_max_ms = lag
            if self._bench is not None:
                await self._bench.send(ws, text, self._t0)
                return False
        elif kind == _ECHO:
            report.echoes_sent += 1
        elif kind == _START:
            report.start_sent_at = self.now()
        elif kind == _STOP:
            report.closed_by = "caller"
            report.stop_sent_at = self.now()
            await ws.send(text)
            await ws.close()
            return True
        await ws.send(text)
        return False

    async def _send(self, ws: ClientConnection) -> None:
        steps = schedule(self.script, speed=self.speed, loop=self.loop, tail_ms=self.tail_ms)
        step: Step | None = next(steps, None)
        player = self.report.player
        uplink = self._uplink
        hangup_at = math.inf if self.hangup_at_ms is None else self.hangup_at_ms
        while True:
            now = self.now()
            if self._started and (self._hangup or now >= hangup_at):
                await self._hang_up(ws)
                return
            # What Twilio says by now, echoes included, in the order it says it.
            first_echo = player.next_echo_time()
            echoes = player.due_echoes(now) if first_echo is not None and first_echo <= now else ()
            e = 0
            while True:
                st = step[0] if step is not None and step[0] <= now else math.inf
                et = echoes[e][0] if e < len(echoes) else math.inf
                if st == et == math.inf:
                    break
                if et < st:
                    self._enqueue(et, self.writer.mark(echoes[e][1]), _ECHO)
                    e += 1
                else:
                    assert step is not None
                    self._speak(step)
                    step = next(steps, None)
            # What reached the server by now.
            while uplink and uplink[0][0] <= now:
                due, text, kind = uplink.popleft()
                if await self._deliver(ws, text, kind, now - due):
                    return
            next_echo = player.next_echo_time()
            wake_at = min(
                step[0] if step is not None else math.inf,
                uplink[0][0] if uplink else math.inf,
                math.inf if next_echo is None else next_echo,
                hangup_at,
            )
            if wake_at == math.inf:
                # The recording ended without `stop`: hang up as Twilio would.
                await self._hang_up(ws)
                return
            await self._sleep_until(wake_at)

    async def _sleep_until(self, at_ms: float) -> None:
        """Sleep until ``at_ms`` on the call's clock, or until :meth:`_wake`."""
        delay = (at_ms - self.now()) / 1000.0
        if delay <= 0:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self._wake_at = at_ms
        timer = loop.call_later(delay, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
            self._wake_at = math.inf

    def _wake(self) -> None:
        if self._waiter is not None:
            _resolve(self._waiter)

    async def _hang_up(self, ws: ClientConnection) -> None:
        # What is already on its way arrives first: sequence numbers stay consecutive.
        now = self.now()
        while self._uplink:
            due, text, kind = self._uplink.popleft()
            if await self._deliver(ws, text, kind, now - due):
                return
        self.report.closed_by = "caller"
        self.report.stop_sent_at = self.now()
        await ws.send(self.writer.stop())
        await ws.close()

    # -- what the caller hears -----------------------------------------------------

    def _violation(self, problem: str) -> None:
        self.report.violation_count += 1
        if len(self.report.violations) < MAX_KEPT_VIOLATIONS:
            self.report.violations.append(problem)

    async def _receive(self, ws: ClientConnection, sender: asyncio.Task[None]) -> None:
        report = self.report
        player = report.player
        sid = report.stream_sid
        keep = self.keep_messages
        down, jitter = self.net.down_ms, bool(self.net.jitter_ms)
        try:
            async for raw in ws:
                now = self.now()
                if isinstance(raw, bytes):
                    self._violation("binary frame (31950)")
                    continue
                try:
                    msg = orjson.loads(raw)
                except ValueError:  # orjson.JSONDecodeError
                    self._violation("not JSON (31951)")
                    continue
                if keep:
                    report.received.append((now, msg))
                problem = check_outbound(msg, sid)
                if problem:
                    self._violation(problem)
                    continue
                # The message reaches Twilio down_ms (+ jitter) from now, in order.
                at = now + down + self._jitter() if jitter else now + down
                if at < self._last_down:
                    at = self._last_down
                self._last_down = at
                event = msg["event"]
                if event == "media":
                    report.frames_received += 1
                    player.media(msg["media"]["payload"], at)
                    continue
                if event == "mark":
                    if self.echo_marks:
                        player.mark(msg["mark"]["name"], at)
                else:
                    player.clear(at)
                echo = player.next_echo_time()
                if echo is not None and echo < self._wake_at:
                    self._wake()
        finally:
            if report.closed_by is None:
                report.closed_by = "server"
                sender.cancel()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
