"""Recording calls (``RECORD_DIR``): Twilio's inbound messages in the replay format, and a
stereo WAV (left: the caller; right: the model's audio as sent, cut where the caller barged in).

Nothing here is on the audio path: the call only appends to lists; a per-call writer task
flushes them to disk every second through a thread, and the WAV is assembled in a thread
when the call ends. A full or unwritable disk is logged once; the call goes on unrecorded.

Files, per UTC day: ``DAY/CALLSID.jsonl`` (replayable with ``voicebridge replay``),
``DAY/CALLSID.assistant.ulaw`` (raw model audio, kept to build the WAV) and
``DAY/CALLSID.wav``. Phone numbers in the recorded ``start`` are masked and its stream token
dropped; file names carry only the CallSid.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import wave
from pathlib import Path
from typing import Any

from voicebridge.core.admission import TOKEN_PARAMETER
from voicebridge.core.audio import audioop
from voicebridge.logs import mask_number

__all__ = ["CallRecorder"]

log = logging.getLogger(__name__)

FLUSH_EVERY = 1.0  # s
_BLOCK_S = 10  # the WAV is written ten seconds at a time


def _redact_start(text: str) -> str:
    """The `start` message with phone numbers masked and the stream token dropped."""
    try:
        msg = json.loads(text)
        params = msg["start"].get("customParameters")
    except (ValueError, KeyError, TypeError, AttributeError):
        return text
    if isinstance(params, dict):
        params.pop(TOKEN_PARAMETER, None)
        for key in ("From", "To"):
            if isinstance(params.get(key), str):
                params[key] = mask_number(params[key])
    return json.dumps(msg, separators=(",", ":"))


class CallRecorder:
    def __init__(self, record_dir: str, call_sid: str) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        safe = "".join(ch for ch in call_sid if ch.isalnum()) or "unknown"
        base = Path(record_dir) / day / safe
        self.messages_path = base.with_suffix(".jsonl")
        self.assistant_path = base.with_name(safe + ".assistant.ulaw")
        self.wav_path = base.with_suffix(".wav")
        self._lines: list[str] = []
        self._assistant: list[bytes] = []
        # (start ms on the call clock, offset in the assistant file, bytes)
        self._index: list[tuple[float, int, int]] = []
        self._cuts: list[float] = []  # call-clock ms of each clear
        self._written = 0  # assistant bytes so far
        self._until = 0.0  # when the audio sent so far ends (as Twilio would play it)
        self.failed = False

    # -- called by the call, cheaply ------------------------------------------------

    def inbound(self, text: str) -> None:
        if not self.failed:
            self._lines.append(_redact_start(text) if '"start"' in text[:40] else text)

    def assistant(self, payload_b64: str, now_ms: float, ms: float) -> None:
        if self.failed:
            return
        data = base64.b64decode(payload_b64)
        start = max(now_ms, self._until)
        self._until = start + ms
        self._index.append((start, self._written, len(data)))
        self._assistant.append(data)
        self._written += len(data)

    def cleared(self, now_ms: float) -> None:
        self._cuts.append(now_ms)
        self._until = now_ms

    # -- the writer ------------------------------------------------------------------

    async def run(self) -> None:
        """Flush every second until cancelled (the call then calls ``finish``)."""
        while not self.failed:
            await asyncio.sleep(FLUSH_EVERY)
            await self.flush()

    async def flush(self) -> None:
        lines, self._lines = self._lines, []
        chunks, self._assistant = self._assistant, []
        if not lines and not chunks or self.failed:
            return
        try:
            await asyncio.to_thread(self._append, lines, chunks)
        except OSError as exc:
            self.failed = True
            log.warning("recording stopped for this call (%s): %s", self.messages_path.name, exc)

    def _append(self, lines: list[str], chunks: list[bytes]) -> None:
        self.messages_path.parent.mkdir(parents=True, exist_ok=True)
        if lines:
            with self.messages_path.open("a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        if chunks:
            with self.assistant_path.open("ab") as f:
                f.write(b"".join(chunks))

    async def finish(self, started_ms: float) -> None:
        """Last flush, then the stereo WAV (in a thread)."""
        await self.flush()
        if self.failed or not self.messages_path.exists():
            return
        try:
            await asyncio.to_thread(self._write_wav, started_ms)
        except OSError as exc:
            log.warning("recording's WAV not written (%s): %s", self.wav_path.name, exc)

    def _write_wav(self, started_ms: float) -> None:
        caller = self._caller_audio()
        cuts = sorted(self._cuts)
        segments: list[tuple[float, float, int, int]] = []  # (start, end, offset, bytes)
        for start, offset, size in self._index:
            end = start + size / 8
            cut = next((c for c in cuts if start < c < end), None)
            if cut is not None:
                size = int((cut - start) * 8)
                end = cut
            segments.append((start - started_ms, end - started_ms, offset, size))
        total_ms = max([len(caller) / 8] + [s[1] for s in segments] + [0.0])
        with self.assistant_path.open("rb") as raw, wave.open(str(self.wav_path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(8000)
            block = _BLOCK_S * 8000
            for first in range(0, int(total_ms * 8) + 1, block):
                left = caller[first : first + block].ljust(block, b"\xff")
                right = bytearray(b"\xff" * block)
                for start, _end, offset, size in segments:
                    a, b = int(start * 8), int(start * 8) + size
                    if b <= first or a >= first + block or size <= 0:
                        continue
                    raw.seek(offset)
                    data = raw.read(size)
                    lo, hi = max(a, first), min(b, first + block)
                    right[lo - first : hi - first] = data[lo - a : hi - a]
                pcm_l = audioop.ulaw2lin(left, 2)
                pcm_r = audioop.ulaw2lin(bytes(right), 2)
                w.writeframes(
                    audioop.add(
                        audioop.tostereo(pcm_l, 2, 1, 0), audioop.tostereo(pcm_r, 2, 0, 1), 2
                    )
                )

    def _caller_audio(self) -> bytes:
        """The caller's μ-law, placed by Twilio's media timestamps (gaps as silence)."""
        audio = bytearray()
        first: int | None = None
        with self.messages_path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    msg: Any = json.loads(line)
                    media = msg["media"] if msg.get("event") == "media" else None
                    if media is None:
                        continue
                    ts = int(media["timestamp"])
                    data = base64.b64decode(media["payload"])
                except (ValueError, KeyError, TypeError):
                    continue
                first = ts if first is None else first
                at = (ts - first) * 8
                if at > len(audio):
                    audio += b"\xff" * (at - len(audio))
                audio[at : at + len(data)] = data
        return bytes(audio)
