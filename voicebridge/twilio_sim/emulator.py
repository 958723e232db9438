"""Twilio's side of a call: webhook, Media Streams WebSocket, playback, network.

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
import base64
import binascii
import contextlib
import math
import random
import time
import wave
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from voicebridge.core.audio import audioop
from voicebridge.core.signature import compute_signature
from voicebridge.twilio_sim.bench import FrameLog, dither_payload
from voicebridge.twilio_sim.player import TwilioPlayer
from voicebridge.twilio_sim.recordings import Recording
from voicebridge.twilio_sim.script import CallScript, Step, TwilioWriter, schedule
from voicebridge.twilio_sim.webhook_client import (
    LocalProxy,
    TwiML,
    call_params,
    new_sid,
    post_webhook,
)

__all__ = ["CallReport", "EmulatedCall", "Network", "place_call"]

FRAME_MS = 20
MAX_KEPT_VIOLATIONS = 200  # per call; ``violation_count`` counts them all

_ZERO_MASK = b"\x00\x00\x00\x00"  # bench only: see _write_now

# What travels the uplink (EmulatedCall._uplink).
_OTHER, _START, _MEDIA, _ECHO, _STOP = range(5)


@dataclass(frozen=True)
class Network:
    """The path between Twilio and the server, as the server sees it."""

    down_ms: float = 0.0  # server -> Twilio one-way delay
    up_ms: float = 0.0  # Twilio -> server one-way delay
    jitter_ms: float = 0.0  # each message is late by a further uniform 0..jitter_ms
    playout_ms: float = 0.0  # audio reaching an idle buffer waits this long before playing
    seed: int | None = None


@dataclass
class CallReport:
    call_sid: str
    stream_sid: str
    twiml: TwiML | None = None
    webhook_status: int | None = None
    frames_sent: int = 0
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)  # the first MAX_KEPT_VIOLATIONS
    violation_count: int = 0
    echoes_sent: int = 0
    frames_received: int = 0  # media messages from the server that passed the shape check
    webhook_ms: float | None = None  # POST to TwiML parsed (place_call)
    connect_ms: float | None = None  # WebSocket connect to open
    start_sent_at: float | None = None  # ms on the call clock
    send_lag_max_ms: float = 0.0  # how late a frame left against its schedule, at worst
    closed_by: str | None = None  # "caller" or "server"
    close_code: int | None = None
    close_reason: str = ""  # the close frame's reason, as the server gave it
    t0: float = 0.0  # time.monotonic() when the stream opened: the call clock's zero
    stop_sent_at: float | None = None  # ms on the call clock
    ended_at: float = 0.0  # ms on the call clock
    # The TwiML verbs Twilio ran once the stream ended: the <Connect action>'s answer, or the
    # verbs after </Connect>; empty when the caller hung up. ("Error", status) when the
    # action could not be fetched (Twilio then plays its own application-error message).
    after_stream: tuple[tuple[str, str], ...] = ()
    caller_audio: list[tuple[float, str]] = field(default_factory=list)  # (spoken at, payload)
    player: TwilioPlayer = field(default_factory=TwilioPlayer)

    def received_events(self, event: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.received if m.get("event") == event]

    def write_wav(self, path: str | Path) -> None:
        """Stereo 16-bit 8 kHz WAV: the caller left, what the caller heard right."""
        end_ms = max(
            [self.ended_at]
            # Audio a clear cut before it played would start late: it must not pad the end.
            + [c.start + c.played for c in self.player.chunks if c.played > 0]
            + [t + FRAME_MS for t, _ in self.caller_audio]
        )
        n = int(end_ms * 8) + 1
        left = bytearray(n * 2)
        right = bytearray(n * 2)
        for t, payload in self.caller_audio:
            _place(left, audioop.ulaw2lin(base64.b64decode(payload), 2), t)
        for c in self.player.chunks:
            if c.played > 0:
                pcm = audioop.ulaw2lin(base64.b64decode(c.payload), 2)
                _place(right, pcm[: int(c.played * 8) * 2], c.start)
        stereo = audioop.add(
            audioop.tostereo(bytes(left), 2, 1, 0), audioop.tostereo(bytes(right), 2, 0, 1), 2
        )
        with wave.open(str(path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(stereo)


def _place(track: bytearray, pcm: bytes, at_ms: float) -> None:
    offset = int(at_ms * 8) * 2
    end = min(len(track), offset + len(pcm))
    if offset < end:
        track[offset:end] = pcm[: end - offset]


# The only messages a server may send on a bidirectional stream, field for field (A.2).
_SHAPES = {
    "media": frozenset({"event", "streamSid", "media"}),
    "mark": frozenset({"event", "streamSid", "mark"}),
    "clear": frozenset({"event", "streamSid"}),
}
_PAYLOAD_ONLY = frozenset({"payload"})
_NAME_ONLY = frozenset({"name"})


def check_outbound(msg: Any, stream_sid: str) -> str | None:
    """Why a message from the server breaks Twilio's documented shapes, or None."""
    if not isinstance(msg, dict):
        return "not a JSON object"
    event = msg.get("event")
    shape = _SHAPES.get(event) if isinstance(event, str) else None
    if shape is None:
        return f"unsupported event {event!r}"
    if msg.keys() != shape:
        return f"{event}: fields {sorted(msg)} (31951: missing or extra field)"
    if msg["streamSid"] != stream_sid:
        return f"{event}: wrong streamSid {msg['streamSid']!r}"
    if event == "media":
        media = msg["media"]
        if not isinstance(media, dict) or media.keys() != _PAYLOAD_ONLY:
            return "media: `media` must be exactly {payload}"
        try:
            if not base64.b64decode(media["payload"], validate=True):
                return "media: empty payload"
        except (binascii.Error, TypeError, ValueError):
            return "media: payload is not base64"
    if event == "mark":
        mark = msg["mark"]
        if (
            not isinstance(mark, dict)
            or mark.keys() != _NAME_ONLY
            or not isinstance(mark["name"], str)
        ):
            return "mark: `mark` must be exactly {name: str}"
    return None


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
    ) -> None:
        """Args beyond the URL and recording:
        loop: play the recording back to back until hang-up (``hangup_at_ms`` or
            :meth:`request_hangup`); its ``stop`` is then sent only at the very end.
        script: the recording already prepared (shared by many calls of a load run).
        keep_messages: keep every received message in ``report.received``.
        keep_audio: keep payloads, for ``report.write_wav`` (``caller_audio`` and the
            player's chunks); without it only timings are kept.
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
        self.open_timeout = open_timeout
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
        self._t0 = 0.0
        self._uplink: deque[tuple[float, str, int]] = deque()  # (reaches server, text, kind)
        self._delayed = bool(network.up_ms or network.jitter_ms)
        self._last_up = 0.0
        self._last_down = 0.0
        self._started = False  # `start` is on its way: a hang-up may follow it
        self._hangup = False
        self._waiter: asyncio.Future[None] | None = None
        self._wake_at = math.inf
        # Bench only: (dithered payload, due on the call clock) of each media on the uplink.
        self._dither_base = dither_base
        self._frame_log = frame_log
        self._direct_url = direct_url
        self._direct: ClientConnection | None = None
        self._bench_q: deque[tuple[str, float]] = deque()
        self._bench = dither_base is not None or frame_log is not None or direct_url is not None
        self._frame_no = 0

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
            if self._direct_url is not None:
                self._direct = await stack.enter_async_context(
                    connect(
                        self._direct_url,
                        compression=None,
                        open_timeout=self.open_timeout,
                        close_timeout=1,
                        proxy=None,
                    )
                )
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
            if self._dither_base is not None:
                payload = dither_payload(payload, self._dither_base + self._frame_no)
                self._frame_no += 1
            if self.keep_audio:
                self.report.caller_audio.append((due, payload))
            self._enqueue(due, w.media(payload, timestamp), _MEDIA)
            if self._bench:
                self._bench_q.append((payload, self._last_up))
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
            if self._bench:
                await self._send_bench(ws, text)
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

    async def _send_bench(self, ws: ClientConnection, text: str) -> None:
        """A media message, and its copy on the direct path, noted in the frame log.

        Written straight to the socket, without waiting for the write buffer to drain:
        Twilio does not slow down for a slow server either, and a server that stops
        reading must show up as its own lag, not as the load generator's. It also halves
        the load generator's cost per frame (one core runs the load and the fake).
        """
        payload, due = self._bench_q.popleft()
        sent = time.monotonic()
        direct = self._direct
        if direct is None:
            await _write_now(ws, text)
        else:
            append = '{"type":"input_audio_buffer.append","audio":"' + payload + '"}'
            # Alternate which leaves first: neither path is always a send late.
            if self._frame_no & 1:
                await _write_now(direct, append)
                await _write_now(ws, text)
            else:
                await _write_now(ws, text)
                await _write_now(direct, append)
        if self._frame_log is not None:
            self._frame_log.add(payload, self._t0 + due / 1000.0, sent, direct is not None)

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


async def _write_now(ws: ClientConnection, text: str) -> None:
    """Bench only: ``text`` as one text frame, handed to the transport at once (no drain).

    The frame is built here with an all-zero masking key: legal framing (the server unmasks
    whatever the key), and it spares the load generator ``websockets``' fresh random key per
    frame, a ``getrandom`` system call that cost it an eighth of its CPU. The key exists to
    defeat cache-poisoning proxies; there are none on loopback.
    """
    if ws.protocol.state is not State.OPEN:
        await ws.send(text)  # raises ConnectionClosed as a normal send would
        return
    data = text.encode()
    n = len(data)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = b"\x81\xfe" + n.to_bytes(2, "big")
    else:
        head = b"\x81\xff" + n.to_bytes(8, "big")
    ws.transport.write(head + _ZERO_MASK + data)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def place_call(
    webhook_url: str,
    recording: Recording,
    *,
    network: Network = Network(),
    speed: float = 1.0,
    hangup_at_ms: float | None = None,
    tail_ms: float = 0.0,
    from_: str = "+15005550006",
    to: str = "+15005550001",
    auth_token: str | None = None,
    proxy: LocalProxy | None = None,
    timeout: float = 120.0,  # noqa: ASYNC109 (bounds the whole call)
) -> CallReport:
    """A whole inbound call: the webhook, the TwiML, the stream, then any failure path.

    With ``auth_token`` the webhook and the handshake are signed as Twilio signs them;
    with ``proxy`` public URLs are reached at a local address.
    """
    call_sid, account_sid = new_sid("CA"), new_sid("AC")
    posted = time.monotonic()
    answer = await post_webhook(
        webhook_url,
        call_params(call_sid, account_sid, from_=from_, to=to),
        auth_token=auth_token,
        proxy=proxy,
    )
    webhook_ms = (time.monotonic() - posted) * 1000.0
    if answer.twiml is None or answer.twiml.stream_url is None:
        report = CallReport(call_sid, "", answer.twiml, answer.status, webhook_ms=webhook_ms)
        return report
    call = EmulatedCall(
        answer.twiml.stream_url,
        recording,
        parameters=answer.twiml.parameters,
        network=network,
        speed=speed,
        hangup_at_ms=hangup_at_ms,
        tail_ms=tail_ms,
        call_sid=call_sid,
        account_sid=account_sid,
        auth_token=auth_token,
        proxy=proxy,
    )
    report = await call.run(timeout)
    report.twiml, report.webhook_status = answer.twiml, answer.status
    report.webhook_ms = webhook_ms
    if report.closed_by == "server":
        report.after_stream = await _after_stream(
            answer.twiml, call_sid, account_sid, from_, to, auth_token, proxy
        )
    return report


async def _after_stream(
    twiml: TwiML,
    call_sid: str,
    account_sid: str,
    from_: str,
    to: str,
    auth_token: str | None,
    proxy: LocalProxy | None,
) -> tuple[tuple[str, str], ...]:
    """What Twilio runs when the server ended the stream: the action's answer, else the rest."""
    if twiml.connect_action is None:
        return twiml.after_connect
    params = call_params(call_sid, account_sid, from_=from_, to=to)
    params["CallStatus"] = "in-progress"
    try:
        answer = await post_webhook(
            twiml.connect_action, params, auth_token=auth_token, proxy=proxy
        )
    except (OSError, EOFError, TimeoutError, ValueError) as exc:
        return (("Error", type(exc).__name__),)
    if answer.twiml is None:
        return (("Error", str(answer.status)),)
    return answer.twiml.verbs
