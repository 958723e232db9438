"""Recorded calls: Twilio Media Streams messages as JSON lines (or a JSON array)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from voicebridge.core.audio import rms_ulaw

__all__ = ["Recording", "load_recording", "packaged_call", "speech_segments"]

FRAME_MS = 20


@dataclass(frozen=True)
class Recording:
    """One call as Twilio sends it: ``connected``, ``start``, ``media``..., ``stop``."""

    name: str
    messages: tuple[dict[str, Any], ...]

    @property
    def media(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("event") == "media"]

    @property
    def payloads(self) -> list[str]:
        return [m["media"]["payload"] for m in self.media]

    @property
    def duration_ms(self) -> float:
        media = self.media
        if not media:
            return 0.0
        first = int(media[0]["media"]["timestamp"])
        return float(int(media[-1]["media"]["timestamp"]) - first + FRAME_MS)


def load_recording(path: str | Path) -> Recording:
    """Read a recording; JSON lines, or one JSON array of messages."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        messages = json.loads(stripped)
    else:
        messages = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ValueError(f"{p}: not a list of Twilio messages")
    return Recording(p.stem, tuple(messages))


def packaged_call(name: str) -> Recording:
    """A recording shipped with voicebridge (``voicebridge/twilio_sim/calls/NAME.jsonl``)."""
    ref = resources.files("voicebridge.twilio_sim") / "calls" / f"{name}.jsonl"
    with resources.as_file(ref) as path:
        if not path.is_file():
            raise FileNotFoundError(f"no packaged call named {name!r}")
        return load_recording(path)


def speech_segments(
    payloads: Iterable[str],
    *,
    threshold: int = 500,
    min_gap_ms: int = 400,
    min_voiced_ms: int = 60,
) -> list[tuple[float, float]]:
    """(start_ms, end_ms) of voiced stretches in consecutive 20 ms μ-law frames.

    A frame is voiced when its RMS exceeds ``threshold``; stretches closer than
    ``min_gap_ms`` are one utterance; an utterance with less than ``min_voiced_ms`` of
    voiced frames is a click, not speech.
    """
    segments: list[list[int]] = []  # [start, end, voiced ms]
    for i, payload in enumerate(payloads):
        if rms_ulaw(base64.b64decode(payload)) <= threshold:
            continue
        start, end = i * FRAME_MS, (i + 1) * FRAME_MS
        if segments and start - segments[-1][1] < min_gap_ms:
            segments[-1][1] = end
            segments[-1][2] += FRAME_MS
        else:
            segments.append([start, end, FRAME_MS])
    return [(float(a), float(b)) for a, b, voiced in segments if voiced >= min_voiced_ms]
