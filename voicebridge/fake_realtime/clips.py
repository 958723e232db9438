"""Speech clips the fake Realtime server speaks: packaged μ-law audio and its transcripts.

The clips are raw G.711 μ-law, 8 kHz, mono (regenerate them with ``tools/make_clips.sh``).
They are cut into ``response.output_audio.delta`` payloads here, once per output format and
delta size, so serving a response costs no audio work per delta.
"""

from __future__ import annotations

import base64
import functools
import json
import sys
from dataclasses import dataclass
from importlib.resources import files

from voicebridge.core.audio import ULAW_BYTES_PER_MS, audioop

__all__ = [
    "BYTES_PER_MS",
    "REPROMPT_FILE",
    "Chunk",
    "Clip",
    "clip_chunks",
    "load_clips",
    "reprompt_clip",
]

# Bytes per millisecond of each Realtime audio format ("audio/pcm" is PCM16 at 24 kHz, the
# only rate the API supports).
BYTES_PER_MS: dict[str, int] = {"audio/pcmu": 8, "audio/pcma": 8, "audio/pcm": 48}
# The clip an idle-timeout response speaks ("I'm sorry, I didn't catch that…").
REPROMPT_FILE = "05.ulaw"


@dataclass(frozen=True, slots=True)
class Clip:
    """One assistant utterance."""

    file: str
    transcript: str
    ulaw: bytes

    @property
    def duration_ms(self) -> float:
        return len(self.ulaw) / ULAW_BYTES_PER_MS


@dataclass(frozen=True, slots=True)
class Chunk:
    """One delta of a clip: base64 audio, its duration, and the transcript text it carries."""

    audio_b64: str
    ms: float
    text: str


@functools.cache
def load_clips() -> tuple[Clip, ...]:
    """The packaged clips, in playing order (read once per process)."""
    root = files("voicebridge.fake_realtime") / "clips"
    index = json.loads((root / "clips.json").read_text(encoding="utf-8"))
    return tuple(
        Clip(entry["file"], entry["transcript"], (root / entry["file"]).read_bytes())
        for entry in index
    )


def reprompt_clip() -> int:
    """Index of the re-prompt clip (the last clip if the package lacks it)."""
    clips = load_clips()
    return next((i for i, c in enumerate(clips) if c.file == REPROMPT_FILE), len(clips) - 1)


def _encode(ulaw: bytes, fmt: str) -> bytes:
    """Convert μ-law 8 kHz audio to a Realtime output format."""
    if fmt == "audio/pcmu":
        return ulaw
    lin = audioop.ulaw2lin(ulaw, 2)
    if fmt == "audio/pcma":
        return audioop.lin2alaw(lin, 2)
    if fmt == "audio/pcm":
        pcm, _ = audioop.ratecv(lin, 2, 1, 8000, 24000, None)
        # audioop works in native byte order; the API's PCM16 is little-endian.
        return pcm if sys.byteorder == "little" else audioop.byteswap(pcm, 2)
    raise ValueError(f"unsupported output format: {fmt!r}")


def _spread_words(transcript: str, parts: int) -> list[str]:
    """Split a transcript into ``parts`` deltas (some empty) that concatenate back to it."""
    words = transcript.split()
    out = [""] * parts
    for i, word in enumerate(words):
        out[i * parts // len(words)] += word if i == 0 else " " + word
    return out


@functools.lru_cache(maxsize=128)
def clip_chunks(index: int, fmt: str, delta_ms: int) -> tuple[Chunk, ...]:
    """Clip ``index`` cut into deltas of ``delta_ms`` of audio in output format ``fmt``."""
    clip = load_clips()[index]
    audio = _encode(clip.ulaw, fmt)
    bpm = BYTES_PER_MS[fmt]
    step = bpm * delta_ms
    pieces = [audio[i : i + step] for i in range(0, len(audio), step)]
    texts = _spread_words(clip.transcript, len(pieces))
    return tuple(
        Chunk(base64.b64encode(piece).decode("ascii"), len(piece) / bpm, text)
        for piece, text in zip(pieces, texts, strict=True)
    )
