"""Twilio's side of a call: webhook, Media Streams WebSocket, playback, network.

Plays a recorded call towards a voicebridge (or any Media Streams server) the way Twilio
does: ``connected``, ``start``, then ``media`` paced by the recording's timestamps against
a monotonic clock, ``dtmf`` and ``stop`` as recorded. Audio from the server goes through a
real-time playback buffer (:class:`TwilioPlayer`); marks are echoed at playback time and
``clear`` cuts playback. A :class:`Network` adds one-way delays, jitter and a playout delay.
Every received message is checked against the documented shapes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import heapq
import json
import random
import time
import wave
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voicebridge.core.audio import audioop
from voicebridge.core.signature import compute_signature
from voicebridge.peers.recording import Recording
from voicebridge.peers.twilio_player import TwilioPlayer
from voicebridge.peers.twiml_client import LocalProxy, TwiML, call_params, new_sid, post_webhook

__all__ = ["CallReport", "EmulatedCall", "Network", "place_call"]

FRAME_MS = 20
SILENCE_FRAME = base64.b64encode(b"\xff" * 160).decode()


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
    violations: list[str] = field(default_factory=list)
    echoes_sent: int = 0
    closed_by: str | None = None  # "caller" or "server"
    close_code: int | None = None
    t0: float = 0.0  # time.monotonic() when the stream opened: the call clock's zero
    stop_sent_at: float | None = None  # ms on the call clock
    ended_at: float = 0.0  # ms on the call clock
    failure_path: tuple[tuple[str, str], ...] = ()  # TwiML verbs run after the stream
    caller_audio: list[tuple[float, str]] = field(default_factory=list)  # (spoken at, payload)
    player: TwilioPlayer = field(default_factory=TwilioPlayer)

    def received_events(self, event: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.received if m.get("event") == event]

    def write_wav(self, path: str | Path) -> None:
        """Stereo 16-bit 8 kHz WAV: the caller left, what the caller heard right."""
        end_ms = max(
            [self.ended_at]
            + [c.start + c.played for c in self.player.chunks]
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


def check_outbound(msg: Any, stream_sid: str) -> str | None:
    """Why a message from the server breaks Twilio's documented shapes, or None."""
    if not isinstance(msg, dict):
        return "not a JSON object"
    event = msg.get("event")
    shapes = {
        "media": {"event", "streamSid", "media"},
        "mark": {"event", "streamSid", "mark"},
        "clear": {"event", "streamSid"},
    }
    if event not in shapes:
        return f"unsupported event {event!r}"
    if set(msg) != shapes[event]:
        return f"{event}: fields {sorted(msg)} (31951: missing or extra field)"
    if msg["streamSid"] != stream_sid:
        return f"{event}: wrong streamSid {msg['streamSid']!r}"
    if event == "media":
        media = msg["media"]
        if not isinstance(media, dict) or set(media) != {"payload"}:
            return "media: `media` must be exactly {payload}"
        try:
            if not base64.b64decode(media["payload"], validate=True):
                return "media: empty payload"
        except (binascii.Error, TypeError, ValueError):
            return "media: payload is not base64"
    if event == "mark":
        mark = msg["mark"]
        if not isinstance(mark, dict) or set(mark) != {"name"} or not isinstance(mark["name"], str):
            return "mark: `mark` must be exactly {name: str}"
    return None


class EmulatedCall:
    """One Media Streams connection played from a recording."""

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
    ) -> None:
        self.url = stream_url
        self.proxy = proxy
        if auth_token:
            # Twilio signs the wss:// URL it connects to, with no parameters.
            headers = {
                **(headers or {}),
                "X-Twilio-Signature": compute_signature(auth_token, stream_url),
            }
        self.recording = recording
        self.parameters = dict(parameters) if parameters is not None else None
        self.net = network
        self.speed = speed
        self.hangup_at_ms = hangup_at_ms
        self.tail_ms = tail_ms  # keep the line open (silence) this long after the recording
        self.headers = dict(headers or {})
        self.report = CallReport(
            call_sid=call_sid or new_sid("CA"),
            stream_sid=new_sid("MZ"),
        )
        self.report.player = TwilioPlayer(network.playout_ms)
        self.account_sid = account_sid or new_sid("AC")
        self._rng = random.Random(network.seed)
        self._t0 = 0.0
        self._wake = asyncio.Event()
        self._echo_due: list[tuple[float, int, str]] = []  # heap: (due at server, seq, name)
        self._echo_seq = 0
        self._last_down = 0.0
        self._last_echo_due = 0.0

    def now(self) -> float:
        return (time.monotonic() - self._t0) * 1000.0

    def _jitter(self) -> float:
        return self._rng.uniform(0.0, self.net.jitter_ms) if self.net.jitter_ms else 0.0

    # -- what the caller sends -----------------------------------------------------

    def _script(self) -> list[tuple[float, dict[str, Any]]]:
        """(spoken at ms, message) for the whole call, SIDs rewritten to this call's."""
        sid = self.report.stream_sid
        out: list[tuple[float, dict[str, Any]]] = []
        first_ts: int | None = None
        t = 0.0
        chunk = 0
        for original in self.recording.messages:
            msg = json.loads(json.dumps(original))
            event = msg.get("event")
            if "streamSid" in msg:
                msg["streamSid"] = sid
            if event == "start":
                start = msg["start"]
                start.update(
                    streamSid=sid, callSid=self.report.call_sid, accountSid=self.account_sid
                )
                if self.parameters is not None:
                    start["customParameters"] = dict(self.parameters)
            elif event == "media":
                ts = int(msg["media"]["timestamp"])
                first_ts = ts if first_ts is None else first_ts
                t = (ts - first_ts) / self.speed
                chunk = int(msg["media"].get("chunk", chunk + 1))
            elif event == "stop":
                msg.get("stop", {}).update(
                    callSid=self.report.call_sid, accountSid=self.account_sid
                )
                if self.tail_ms > 0:
                    out.extend(self._silence(sid, t, chunk, first_ts or 0))
                    t = out[-1][0]
            out.append((t, msg))
        return out

    def _silence(
        self, sid: str, t: float, chunk: int, first_ts: int
    ) -> list[tuple[float, dict[str, Any]]]:
        frames = []
        for i in range(1, int(self.tail_ms / FRAME_MS) + 1):
            ts = first_ts + int(t * self.speed) + i * FRAME_MS
            frames.append(
                (
                    t + i * FRAME_MS / self.speed,
                    {
                        "event": "media",
                        "streamSid": sid,
                        "media": {
                            "track": "inbound",
                            "chunk": str(chunk + i),
                            "timestamp": str(ts),
                            "payload": SILENCE_FRAME,
                        },
                    },
                )
            )
        return frames

    # -- the connection ------------------------------------------------------------

    async def run(self, timeout: float = 120.0) -> CallReport:  # noqa: ASYNC109 (bounds a whole call)
        async with asyncio.timeout(timeout):
            uri, headers = self.url, dict(self.headers)
            where: dict[str, Any] = {}
            if self.proxy:
                uri, extra = self.proxy.rewrite(self.url)
                headers = {**extra, **headers}
                uri = uri.replace(self.proxy.connect_to, extra["Host"], 1)
                where = {"host": self.proxy.host, "port": self.proxy.port}
            async with connect(
                uri,
                additional_headers={k: v for k, v in headers.items() if k != "Host"},
                **where,
                compression=None,
                open_timeout=10,
                close_timeout=1,
                max_size=2**20,
                proxy=None,
            ) as ws:
                self._t0 = self.report.t0 = time.monotonic()
                try:
                    async with asyncio.TaskGroup() as tg:
                        sender = tg.create_task(self._send(ws), name="emulator-send")
                        tg.create_task(self._receive(ws, sender), name="emulator-receive")
                except* ConnectionClosed:
                    pass
            self.report.close_code = ws.close_code
        end = self.report.ended_at = self.now()
        self.report.player.cut(end)  # nothing plays after the stream ends
        return self.report

    async def _send(self, ws: ClientConnection) -> None:
        script = self._script()
        player = self.report.player
        i = 0
        due: float | None = None  # when script[i] reaches the server
        last_due = 0.0
        while True:
            now = self.now()
            if self.hangup_at_ms is not None and now >= self.hangup_at_ms:
                await self._hang_up(ws)
                return
            for at, name in player.due_echoes(now):
                self._queue_echo(at, name)
            while self._echo_due and self._echo_due[0][0] <= now:
                _, _, name = heapq.heappop(self._echo_due)
                await ws.send(
                    json.dumps(
                        {
                            "event": "mark",
                            "sequenceNumber": "0",
                            "streamSid": self.report.stream_sid,
                            "mark": {"name": name},
                        }
                    )
                )
                self.report.echoes_sent += 1
            if due is None and i < len(script):
                # Same TCP stream: a message never overtakes the one before it.
                due = last_due = max(script[i][0] + self.net.up_ms + self._jitter(), last_due)
            if due is not None and due <= now:
                spoken, msg = script[i]
                i += 1
                due = None
                if msg.get("event") == "media":
                    self.report.frames_sent += 1
                    self.report.caller_audio.append((spoken, msg["media"]["payload"]))
                if msg.get("event") == "stop":
                    self.report.closed_by = "caller"
                    self.report.stop_sent_at = self.now()
                await ws.send(json.dumps(msg))
                if msg.get("event") == "stop":
                    await ws.close()
                    return
                continue
            waits = [
                t
                for t in (
                    due,
                    player.next_echo_time(),
                    self.hangup_at_ms,
                    self._echo_due[0][0] if self._echo_due else None,
                )
                if t is not None
            ]
            if not waits:
                # The recording ended without `stop`: hang up as Twilio would.
                await self._hang_up(ws)
                return
            self._wake.clear()
            try:
                async with asyncio.timeout(max(min(waits) - now, 0.0) / 1000.0):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _queue_echo(self, echo_at: float, name: str) -> None:
        # The echo leaves Twilio at playback time and reaches the server up_ms later.
        due = max(echo_at + self.net.up_ms + self._jitter(), self._last_echo_due)
        self._last_echo_due = due
        self._echo_seq += 1
        heapq.heappush(self._echo_due, (due, self._echo_seq, name))

    async def _hang_up(self, ws: ClientConnection) -> None:
        self.report.closed_by = "caller"
        self.report.stop_sent_at = self.now()
        await ws.send(
            json.dumps(
                {
                    "event": "stop",
                    "sequenceNumber": "0",
                    "streamSid": self.report.stream_sid,
                    "stop": {"accountSid": self.account_sid, "callSid": self.report.call_sid},
                }
            )
        )
        await ws.close()

    async def _receive(self, ws: ClientConnection, sender: asyncio.Task[None]) -> None:
        player = self.report.player
        sid = self.report.stream_sid
        try:
            async for raw in ws:
                now = self.now()
                if isinstance(raw, bytes):
                    self.report.violations.append("binary frame (31950)")
                    continue
                try:
                    msg = json.loads(raw)
                except ValueError:
                    self.report.violations.append("not JSON (31951)")
                    continue
                self.report.received.append((now, msg))
                problem = check_outbound(msg, sid)
                if problem:
                    self.report.violations.append(problem)
                    continue
                # The message reaches Twilio down_ms (+ jitter) from now, in order.
                at = max(now + self.net.down_ms + self._jitter(), self._last_down)
                self._last_down = at
                event = msg["event"]
                if event == "media":
                    player.media(msg["media"]["payload"], at)
                elif event == "mark":
                    player.mark(msg["mark"]["name"], at)
                else:
                    player.clear(at)
                self._wake.set()
        finally:
            if self.report.closed_by is None:
                self.report.closed_by = "server"
                sender.cancel()


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
    answer = await post_webhook(
        webhook_url,
        call_params(call_sid, account_sid, from_=from_, to=to),
        auth_token=auth_token,
        proxy=proxy,
    )
    if answer.twiml is None or answer.twiml.stream_url is None:
        report = CallReport(call_sid, "", answer.twiml, answer.status)
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
    if report.closed_by == "server":
        # Twilio runs the rest of the document when the server closed the stream.
        report.failure_path = answer.twiml.after_connect
    return report
