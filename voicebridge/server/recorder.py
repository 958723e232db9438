"""Recording calls (``RECORD_DIR``): Twilio's inbound messages in the replay format, and a
stereo WAV (left: the caller; right: the model's audio as sent, cut where the caller barged in).

Nothing here is on the audio path: the call only appends to lists; a per-call writer task
flushes them to disk every second through a thread, and the WAV is assembled in a thread
when the call ends. A full or unwritable disk is logged once per episode (not once per call:
under load that would be a warning per call) and counted; the call goes on unrecorded.

Files, per UTC day: ``DAY/CALLSID.jsonl`` (replayable with ``voicebridge replay``),
``DAY/CALLSID.wav`` and ``DAY/CALLSID.transcript.jsonl``; the model's raw audio is kept in
``DAY/CALLSID.assistant.ulaw`` while the call runs and removed once the WAV holds it. Phone
numbers in the recorded ``start`` are masked and its stream token dropped; file names carry
only the CallSid.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from voicebridge.core.admission import TOKEN_PARAMETER
from voicebridge.core.audio import audioop
from voicebridge.logs import mask_number

__all__ = ["CallRecorder", "RecordingHealth", "call_file", "write_transcript"]

log = logging.getLogger(__name__)

FLUSH_EVERY = 1.0  # s
QUIET_S = 60.0  # a disk episode ends with a write that succeeds this long after the last failure
_BLOCK_S = 10  # the WAV is assembled ten seconds at a time
_SILENCE = 0xFF  # μ-law zero


class RecordingHealth:
    """The app's recording failures: every one counted, the first of an episode logged.

    An episode ends when a write succeeds again ``quiet_s`` after the last failure, so a disk
    that fills, is cleaned and fills again is logged twice, while 150 calls failing on one
    full disk are logged once. Only the event loop calls it.
    """

    def __init__(self, quiet_s: float = QUIET_S) -> None:
        self.failures = 0
        self.quiet_s = quiet_s
        self._failing = False
        self._last_failure = 0.0

    def failed(self, what: str, path: Path, exc: Exception) -> None:
        self.failures += 1
        self._last_failure = time.monotonic()
        if not self._failing:
            self._failing = True
            log.warning("recording failed, calls go on unrecorded (%s %s): %s", what, path, exc)
        else:
            log.debug("recording failed again (%s %s): %s", what, path, exc)

    def succeeded(self) -> None:
        # A nearly full disk lets some writes through: only a success after a quiet spell
        # ends the episode, or "failed" and "works again" would alternate.
        if self._failing and time.monotonic() - self._last_failure >= self.quiet_s:
            self._failing = False
            log.warning("recording works again")


def call_file(record_dir: str, call_sid: str, suffix: str) -> Path:
    """``RECORD_DIR/DAY/CALLSID<suffix>``; only the SID's letters and digits reach the name."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    safe = "".join(ch for ch in call_sid if ch.isalnum()) or "unknown"
    return Path(record_dir) / day / (safe + suffix)


# What is written for a `start` too deeply nested to rewrite: never the raw text (its token).
_UNRECORDABLE_START = '{"event":"start","unrecorded":"nested too deeply to rewrite"}'


def _redact_start(text: str) -> str:
    """The `start` message with phone numbers masked and the stream token dropped.

    orjson, not json: it refuses nesting past 1024 (decoding) and 254 (encoding) levels with an
    error instead of a RecursionError, so a client's nested fields cannot break the recording.
    """
    try:
        msg = orjson.loads(text)
        params = msg["start"].get("customParameters")
    except (ValueError, KeyError, TypeError, AttributeError):
        return text
    if isinstance(params, dict):
        params.pop(TOKEN_PARAMETER, None)
        for key in ("From", "To"):
            if isinstance(params.get(key), str):
                params[key] = mask_number(params[key])
    try:
        return orjson.dumps(msg).decode()
    except TypeError:  # orjson.JSONEncodeError: too deep
        return _UNRECORDABLE_START


class CallRecorder:
    def __init__(
        self, record_dir: str, call_sid: str, health: RecordingHealth | None = None
    ) -> None:
        self.messages_path = call_file(record_dir, call_sid, ".jsonl")
        self.assistant_path = call_file(record_dir, call_sid, ".assistant.ulaw")
        self.wav_path = call_file(record_dir, call_sid, ".wav")
        self.health = health or RecordingHealth()
        self._lines: list[str] = []
        self._assistant: list[bytes] = []
        # (sent at, plays from: call-clock ms, offset in the assistant file, bytes)
        self._index: list[tuple[float, float, int, int]] = []
        self._cuts: list[float] = []  # call-clock ms of each clear
        self._written = 0  # assistant bytes so far
        self._until = 0.0  # when the audio sent so far ends (as Twilio would play it)
        self._inflight: asyncio.Future[None] | None = None  # the flush being written
        self.failed = False

    # -- called by the call, cheaply ------------------------------------------------

    def inbound(self, text: str) -> None:
        # A payload is base64 and cannot hold '"start"'; so only a `start` (whatever the
        # order of its keys) pays for the parse.
        if not self.failed:
            self._lines.append(_redact_start(text) if '"start"' in text else text)

    def assistant(self, payload_b64: str, now_ms: float, ms: float) -> None:
        if self.failed:
            return
        data = base64.b64decode(payload_b64)
        start = max(now_ms, self._until)
        self._until = start + ms
        self._index.append((now_ms, start, self._written, len(data)))
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
        """Write what was recorded since the last flush, in a thread, one write at a time.

        The write is shielded: the call's end cancels the writer task, and a write cut off
        before its thread ran would lose what it had taken (and misplace the WAV's audio);
        it stays in flight, and ``finish`` waits for it.
        """
        await self._settle()
        lines, self._lines = self._lines, []
        chunks, self._assistant = self._assistant, []
        if not lines and not chunks or self.failed:
            return
        self._inflight = asyncio.get_running_loop().run_in_executor(
            None, self._append, lines, chunks
        )
        await self._settle()

    async def _settle(self) -> None:
        """Wait for the write in flight, if any, and account for how it went."""
        job = self._inflight
        if job is None:
            return
        try:
            await asyncio.shield(job)  # cancelled here, the write goes on and stays in flight
        except Exception as exc:
            self._inflight = None
            self.failed = True
            self.health.failed("messages", self.messages_path, exc)
            return
        self._inflight = None
        self.health.succeeded()

    def _append(self, lines: list[str], chunks: list[bytes]) -> None:
        self.messages_path.parent.mkdir(parents=True, exist_ok=True)
        if lines:
            with self.messages_path.open("a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        if chunks:
            with self.assistant_path.open("ab") as f:
                f.write(b"".join(chunks))

    async def finish(self, started_ms: float) -> None:
        """Last flush, then the stereo WAV (in a thread).

        ``started_ms``: when Twilio's ``start`` arrived, on the call clock; Twilio's media
        timestamps count from the same moment, so both channels line up.
        """
        await self.flush()
        if self.failed or not self.messages_path.exists():
            return
        try:
            await asyncio.to_thread(self._write_wav, started_ms)
        except Exception as exc:  # a recording must never fail the call it records
            self.health.failed("WAV", self.wav_path, exc)

    def heard_segments(self, started_ms: float) -> list[tuple[float, float, int, int]]:
        """(from ms, to ms after the start, offset, bytes) of the model audio as played.

        Audio is placed where Twilio would play it (each chunk after the one before, not
        before it was sent) and cut by the first ``clear`` sent after it: a chunk the clear
        caught mid-play keeps its head, one queued behind it is gone.
        """
        cuts = sorted(self._cuts)
        segments = []
        for sent, start, offset, size in self._index:
            end = start + size / 8
            cut = next((c for c in cuts if c >= sent), None)
            if cut is not None and cut < end:
                if cut <= start:
                    continue
                size, end = int((cut - start) * 8), cut
            segments.append((start - started_ms, end - started_ms, offset, size))
        return segments

    def _write_wav(self, started_ms: float) -> None:
        caller = self._caller_audio()
        segments = self.heard_segments(started_ms)
        frames = int(max([len(caller) / 8] + [s[1] for s in segments] + [0.0]) * 8)
        # No model audio at all (a caller who hung up at once) leaves no raw file.
        raw_path = self.assistant_path if self._written else os.devnull
        with open(raw_path, "rb") as raw, wave.open(str(self.wav_path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(8000)
            for first in range(0, frames, _BLOCK_S * 8000):
                size = min(_BLOCK_S * 8000, frames - first)
                left = caller[first : first + size].ljust(size, bytes([_SILENCE]))
                right = _place(raw, segments, first, size)
                w.writeframes(
                    audioop.add(
                        audioop.tostereo(audioop.ulaw2lin(left, 2), 2, 1, 0),
                        audioop.tostereo(audioop.ulaw2lin(right, 2), 2, 0, 1),
                        2,
                    )
                )
        self.assistant_path.unlink(missing_ok=True)  # the WAV holds it now

    def _caller_audio(self) -> bytes:
        """The caller's μ-law, placed by Twilio's media timestamps (gaps as silence)."""
        audio = bytearray()
        with self.messages_path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    msg: Any = orjson.loads(line)  # never a RecursionError (see _redact_start)
                    media = msg["media"] if msg.get("event") == "media" else None
                    if media is None:
                        continue
                    at = int(media["timestamp"]) * 8
                    data = base64.b64decode(media["payload"])
                except (ValueError, KeyError, TypeError):
                    continue
                if at > len(audio):
                    audio += bytes([_SILENCE]) * (at - len(audio))
                audio[at : at + len(data)] = data
        return bytes(audio)


def _place(
    raw: Any, segments: Sequence[tuple[float, float, int, int]], first: int, size: int
) -> bytes:
    """Samples [first, first + size) of the model's channel, μ-law, silence between chunks."""
    out = bytearray([_SILENCE]) * size
    for start, _end, offset, length in segments:
        a = int(start * 8)
        b = a + length
        if b <= first or a >= first + size or length <= 0:
            continue
        raw.seek(offset)
        data = raw.read(length).ljust(length, bytes([_SILENCE]))  # a short file: silence
        lo, hi = max(a, first), min(b, first + size)
        out[lo - first : hi - first] = data[lo - a : hi - a]
    return bytes(out)


async def write_transcript(
    record_dir: str, call_sid: str, records: Sequence[dict[str, Any]], health: RecordingHealth
) -> None:
    """``DAY/CALLSID.transcript.jsonl``: one JSON line per turn, written in a thread."""
    path = call_file(record_dir, call_sid, ".transcript.jsonl")
    text = "".join(json.dumps(record) + "\n" for record in records)

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    try:
        await asyncio.to_thread(write)
    except OSError as exc:
        health.failed("transcript", path, exc)
