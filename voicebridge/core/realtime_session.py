"""The session voicebridge asks the Realtime API (GA) for: its values and ``session.update``.

The values the GA API accepts (PROTOCOLS.md B.2) live here so settings and the fake Realtime
server check against one list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DEFAULT_TRANSCRIPTION_MODEL",
    "DEPRECATED_TRANSCRIPTION_MODELS",
    "NOISE_REDUCTION_TYPES",
    "TRANSCRIPTION_MODELS",
    "TURN_DETECTION_TYPES",
    "VAD_EAGERNESS",
    "AudioFormat",
    "SessionConfig",
    "dumps",
    "session_update",
]

AudioFormat = Literal["audio/pcmu", "audio/pcma", "audio/pcm"]

# Session values the GA API accepts (PROTOCOLS.md B.2). Settings are checked against them
# and the fake Realtime server refuses anything else, so the two cannot drift apart.
TURN_DETECTION_TYPES = ("server_vad", "semantic_vad")
VAD_EAGERNESS = ("low", "medium", "high", "auto")  # semantic_vad ``eagerness``
NOISE_REDUCTION_TYPES = ("near_field", "far_field")
TRANSCRIPTION_MODELS = (  # audio.input.transcription.model (``AudioTranscription.model``)
    "whisper-1",
    "gpt-transcribe",
    "gpt-live-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-4o-mini-transcribe-2025-12-15",
    "gpt-4o-transcribe",
    "gpt-4o-transcribe-diarize",
    "gpt-realtime-whisper",
)
# Shut down on 2027-02-26 (the SDK's docstrings, PROTOCOLS.md B.2): warned about at start-up.
DEPRECATED_TRANSCRIPTION_MODELS = frozenset(
    m for m in TRANSCRIPTION_MODELS if m == "whisper-1" or m.startswith("gpt-4o-")
)
DEFAULT_TRANSCRIPTION_MODEL = "gpt-transcribe"  # current, not deprecated


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What voicebridge asks of a session; rendered by :func:`session_update`."""

    instructions: str
    voice: str
    input_format: AudioFormat = "audio/pcmu"
    output_format: AudioFormat = "audio/pcmu"
    turn_detection: dict[str, Any] | None = field(
        default_factory=lambda: {
            "type": "server_vad",
            "create_response": True,
            "interrupt_response": True,
        }
    )
    noise_reduction: str | None = None  # near_field | far_field | None (off)
    transcription_model: str | None = None  # None: no input transcription
    tools: tuple[dict[str, Any], ...] = ()  # function tools the model may call


def _format(fmt: AudioFormat) -> dict[str, Any]:
    # "Only a 24kHz sample rate is supported" for audio/pcm.
    return {"type": fmt, "rate": 24000} if fmt == "audio/pcm" else {"type": fmt}


def dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))


def session_update(config: SessionConfig, event_id: str) -> str:
    audio_in: dict[str, Any] = {
        "format": _format(config.input_format),
        "turn_detection": config.turn_detection,
        "noise_reduction": {"type": config.noise_reduction} if config.noise_reduction else None,
    }
    if config.transcription_model:
        audio_in["transcription"] = {"model": config.transcription_model}
    session: dict[str, Any] = {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": config.instructions,
        "audio": {
            "input": audio_in,
            "output": {"format": _format(config.output_format), "voice": config.voice},
        },
    }
    if config.tools:
        session["tools"] = list(config.tools)
        session["tool_choice"] = "auto"
    return dumps({"type": "session.update", "event_id": event_id, "session": session})
