"""Sounds a phone line adds to the caller's audio: coughs, noise bursts, the assistant's echo.

All audio is G.711 μ-law, 8 kHz, mono (``bytes``; 8 bytes a ms). The sounds are made here,
deterministically from a seed, so a test or a benchmark builds the same call every run.
:class:`CallerSounds` puts them into an emulated call's caller audio as it is spoken: a
cough some time into the assistant's answer, the answer's own echo at a delay and level.
"""

from __future__ import annotations

import base64
import math
import random
from array import array
from dataclasses import dataclass, field

from voicebridge.core.audio import audioop
from voicebridge.twilio_sim.player import TwilioPlayer

__all__ = [
    "CallerSounds",
    "cough",
    "frames",
    "mix",
    "noise_burst",
    "scaled",
]

BYTES_PER_MS = 8
FRAME_BYTES = 160
ANSWER_GAP_MS = 300  # a longer gap between the assistant's chunks begins another answer


def _to_ulaw(samples: list[float]) -> bytes:
    pcm = array("h", (max(-32767, min(32767, int(s))) for s in samples))  # native order
    return audioop.lin2ulaw(pcm.tobytes(), 2)


def _band(samples: list[float], low_hz: float, high_hz: float) -> list[float]:
    """One-pole high-pass then low-pass: a crude band, enough to colour noise."""
    a_hi = math.exp(-2 * math.pi * low_hz / 8000)
    a_lo = math.exp(-2 * math.pi * high_hz / 8000)
    out: list[float] = []
    prev_x = prev_hp = lp = 0.0
    for x in samples:
        hp = a_hi * (prev_hp + x - prev_x)
        prev_x, prev_hp = x, hp
        lp = (1 - a_lo) * hp + a_lo * lp
        out.append(lp)
    return out


def _at_rms(samples: list[float], rms: float) -> list[float]:
    now = math.sqrt(sum(s * s for s in samples) / len(samples)) or 1.0
    return [s * rms / now for s in samples]


def cough(ms: float = 150.0, rms: float = 3000.0, seed: int = 0) -> bytes:
    """A cough: a burst of band-limited noise, a sharp attack and a fast decay.

    ``rms`` is the level over its first 40 ms (16-bit scale; speech measures 1000-4000).
    """
    rng = random.Random(seed)
    n = int(ms * BYTES_PER_MS)
    noise = _band([rng.gauss(0.0, 1.0) for _ in range(n)], 250.0, 2500.0)
    attack, hold = 8 * BYTES_PER_MS, 30 * BYTES_PER_MS
    tau = max(1.0, (n - attack - hold) / 3.5)  # about -30 dB by the end
    env = [
        i / attack
        if i < attack
        else 1.0
        if i < attack + hold
        else math.exp(-(i - attack - hold) / tau)
        for i in range(n)
    ]
    shaped = [s * e for s, e in zip(noise, env, strict=True)]
    head = shaped[: 40 * BYTES_PER_MS] or shaped
    scale = rms / (math.sqrt(sum(s * s for s in head) / len(head)) or 1.0)
    return _to_ulaw([s * scale for s in shaped])


def noise_burst(ms: float = 40.0, rms: float = 1500.0, seed: int = 0) -> bytes:
    """A crackle on the line: flat broadband noise, on and off at once."""
    rng = random.Random(seed)
    n = int(ms * BYTES_PER_MS)
    return _to_ulaw(_at_rms([rng.gauss(0.0, 1.0) for _ in range(n)], rms))


def scaled(ulaw: bytes, gain_db: float) -> bytes:
    """The same audio ``gain_db`` louder (negative: quieter)."""
    pcm = audioop.mul(audioop.ulaw2lin(ulaw, 2), 2, 10 ** (gain_db / 20))
    return audioop.lin2ulaw(pcm, 2)


def mix(base: bytes, extra: bytes, at_ms: float = 0.0, gain_db: float = 0.0) -> bytes:
    """``base`` with ``extra`` added from ``at_ms`` on, ``gain_db`` louder (as long as ``base``)."""
    offset = int(at_ms * BYTES_PER_MS)
    if offset >= len(base) or offset + len(extra) <= 0:
        return base
    if offset < 0:
        extra, offset = extra[-offset:], 0
    span = min(len(extra), len(base) - offset)
    lin_base = audioop.ulaw2lin(base[offset : offset + span], 2)
    lin_extra = audioop.mul(audioop.ulaw2lin(extra[:span], 2), 2, 10 ** (gain_db / 20))
    mixed = audioop.lin2ulaw(audioop.add(lin_base, lin_extra, 2), 2)
    return base[:offset] + mixed + base[offset + span :]


def frames(ulaw: bytes) -> list[str]:
    """Twilio's 20 ms media payloads (base64) of ``ulaw``, the last one padded with silence."""
    pad = -len(ulaw) % FRAME_BYTES
    audio = ulaw + b"\xff" * pad
    return [
        base64.b64encode(audio[i : i + FRAME_BYTES]).decode("ascii")
        for i in range(0, len(audio), FRAME_BYTES)
    ]


@dataclass
class CallerSounds:
    """What the line adds to the caller's audio while a call is emulated.

    ``cough_at_ms``: a cough this long after the assistant's audio first starts playing
    (after ``skip_answers`` answers have been heard in full). ``echo_db``/``echo_delay_ms``:
    the assistant's audio comes back on the caller's leg (a speakerphone, a line echo),
    this much quieter and later. ``speech``/``speech_at_ms``: caller speech (μ-law) that
    starts that long into the answer, over whatever the recording had.
    """

    cough: bytes = b""
    cough_at_ms: float | None = None
    speech: bytes = b""
    speech_at_ms: float | None = None
    skip_answers: int = 0
    echo_db: float | None = None
    echo_delay_ms: float = 100.0
    # When the assistant's audio began playing at the caller, and when each inserted sound
    # began (ms on the call clock): what a benchmark measures from.
    answer_started_at: float | None = None
    inserted_at: dict[str, float] = field(default_factory=dict)

    def frame(self, payload: str, due: float, player: TwilioPlayer) -> str:
        """The caller frame spoken at ``due`` (ms, call clock), with the line's sounds added."""
        self._follow(player, due)
        audio = base64.b64decode(payload)
        changed = False
        if self.echo_db is not None:
            echo = _played(player, due - self.echo_delay_ms, len(audio))
            if echo is not None:
                audio, changed = mix(audio, echo, 0.0, self.echo_db), True
        start = self.answer_started_at
        if start is not None:
            for name, sound, at in (
                ("cough", self.cough, self.cough_at_ms),
                ("speech", self.speech, self.speech_at_ms),
            ):
                if at is None or not sound:
                    continue
                offset = due - (start + at)
                if -FRAME_BYTES / BYTES_PER_MS < offset < len(sound) / BYTES_PER_MS:
                    self.inserted_at.setdefault(name, start + at)
                    audio, changed = mix(audio, sound, -offset), True
        return base64.b64encode(audio).decode("ascii") if changed else payload

    def _follow(self, player: TwilioPlayer, now: float) -> None:
        """Note when the answer the sounds are timed against began playing."""
        if self.answer_started_at is not None:
            return
        answers, end = 0, -math.inf
        for chunk in player.chunks:
            if chunk.start > now:
                return
            if chunk.start - end > ANSWER_GAP_MS:
                answers += 1
                if answers > self.skip_answers:
                    self.answer_started_at = chunk.start
                    return
            end = max(end, chunk.start + chunk.duration)


def _played(player: TwilioPlayer, at_ms: float, nbytes: int) -> bytes | None:
    """The audio the caller heard from ``at_ms`` on (``nbytes`` of μ-law), or None if silent."""
    end_ms = at_ms + nbytes / BYTES_PER_MS
    out = bytearray(b"\xff" * nbytes)
    heard = False
    for chunk in reversed(player.chunks):
        if chunk.start + chunk.played <= at_ms:
            if chunk.start + chunk.duration <= at_ms - 1000:
                break  # long before: nothing earlier can overlap
            continue
        if chunk.start >= end_ms or chunk.played <= 0:
            continue
        audio = base64.b64decode(chunk.payload)[: int(chunk.played * BYTES_PER_MS)]
        src = int(max(0.0, at_ms - chunk.start) * BYTES_PER_MS)
        dst = int(max(0.0, chunk.start - at_ms) * BYTES_PER_MS)
        piece = audio[src : src + nbytes - dst]
        out[dst : dst + len(piece)] = piece
        heard = heard or bool(piece)
    return bytes(out) if heard else None
