"""Twilio's side of a Media Streams socket, in memory, on the loop's clock.

``MemoryTwilio`` is a ``TwilioSocket`` for ``Call``: the test puts Twilio's messages in
(``start``, ``media``, ``dtmf``, ``stop``, a hang-up) and reads what the bridge sent. Outbound
audio plays on the emulator's ``TwilioPlayer`` in real time (loop time), and each ``mark``
is echoed when playback reaches it, as Twilio does (PROTOCOLS.md A.3).
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from voicebridge.server.twilio_socket import TwilioClosed
from voicebridge.twilio_sim.player import TwilioPlayer
from voicebridge.twilio_sim.recordings import Recording

__all__ = ["SILENCE", "MemoryTwilio"]

SILENCE = base64.b64encode(b"\xff" * 160).decode()  # 20 ms of μ-law silence
FRAME_S = 0.02


def _now_ms() -> float:
    return asyncio.get_running_loop().time() * 1000.0


class MemoryTwilio:
    """An accepted Media Streams socket with Twilio's end in the test's hands."""

    def __init__(
        self, call_sid: str = "CA0001", stream_sid: str = "MZ0001", *, echo_marks: bool = True
    ) -> None:
        self.call_sid = call_sid
        self.echo_marks = echo_marks  # False: playback never confirmed (a muted line)
        self.stream_sid = stream_sid
        self.player = TwilioPlayer()
        self.sent: list[dict[str, Any]] = []  # what the bridge sent, parsed
        self.close_code: int | None = None  # our close, as the bridge asked
        self._inbox: asyncio.Queue[str | bytes | TwilioClosed] = asyncio.Queue()
        self._seq = 0
        self._chunk = 0
        self._echo: asyncio.TimerHandle | None = None

    # -- the TwilioSocket the bridge sees -----------------------------------------------

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    async def receive(self) -> str | bytes:
        item = await self._inbox.get()
        if isinstance(item, TwilioClosed):
            self._inbox.put_nowait(item)  # every later read sees the close too
            raise item
        return item

    async def send_text(self, text: str) -> None:
        if self.closed:
            raise TwilioClosed(None, "send after close")
        message = json.loads(text)
        self.sent.append(message)
        now, event = _now_ms(), message.get("event")
        if event == "media":
            self.player.media(message["media"]["payload"], now)
        elif event == "mark":
            self.player.mark(message["mark"]["name"], now)
        elif event == "clear":
            self.player.clear(now)
        self._arm_echo()

    async def close(self, code: int) -> None:
        if self.closed:
            raise TwilioClosed(None, "closed already")
        self.close_code = code
        if self._echo is not None:
            self._echo.cancel()

    def _arm_echo(self) -> None:
        if self._echo is not None:
            self._echo.cancel()
        due = self.player.next_echo_time()
        if due is None or self.closed or not self.echo_marks:
            return
        loop = asyncio.get_running_loop()
        self._echo = loop.call_at(due / 1000.0, self._echo_marks, due)

    def _echo_marks(self, due: float) -> None:
        # At least ``due``: the clock, in seconds, may round just short of it.
        for _, name in self.player.due_echoes(max(_now_ms(), due)):
            self.send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})
        self._arm_echo()

    # -- Twilio's end -------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Put a message on the wire as Twilio would, numbered in order."""
        if message.get("event") != "connected":
            self._seq += 1
            message = {**message, "sequenceNumber": str(self._seq)}
        self._inbox.put_nowait(json.dumps(message))

    def send_raw(self, frame: str | bytes) -> None:
        self._inbox.put_nowait(frame)

    def start(self, **parameters: str) -> None:
        self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self.send(
            {
                "event": "start",
                "streamSid": self.stream_sid,
                "start": {
                    "accountSid": "AC0001",
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )

    def media(self, payload: str = SILENCE) -> None:
        self._chunk += 1
        self.send(
            {
                "event": "media",
                "streamSid": self.stream_sid,
                "media": {
                    "track": "inbound",
                    "chunk": str(self._chunk),
                    "timestamp": str((self._chunk - 1) * 20),
                    "payload": payload,
                },
            }
        )

    def dtmf(self, digit: str) -> None:
        self.send(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def stop(self) -> None:
        self.send(
            {
                "event": "stop",
                "streamSid": self.stream_sid,
                "stop": {"accountSid": "AC0001", "callSid": self.call_sid},
            }
        )

    def hang_up(self, code: int = 1000) -> None:
        """The socket goes away without a `stop`."""
        self._inbox.put_nowait(TwilioClosed(code))

    async def speak(self, payloads: list[str], *, pause_after: float = 0.0) -> None:
        """Send one media frame per 20 ms of loop time, then silence for ``pause_after`` s."""
        for payload in payloads:
            self.media(payload)
            await asyncio.sleep(FRAME_S)
        for _ in range(round(pause_after / FRAME_S)):
            self.media(SILENCE)
            await asyncio.sleep(FRAME_S)

    async def play(self, recording: Recording, *, tail_s: float = 0.0) -> None:
        """A recording's caller audio and keypad digits in real time (loop time), then silence."""
        for message in recording.messages:
            if message.get("event") == "media":
                self.media(message["media"]["payload"])
                await asyncio.sleep(FRAME_S)
            elif message.get("event") == "dtmf":
                self.dtmf(message["dtmf"]["digit"])
        await self.speak([], pause_after=tail_s)

    def heard_ms(self) -> float:
        return self.player.heard_ms()

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("event") == kind]
