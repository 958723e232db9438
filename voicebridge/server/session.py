"""What a call asks of the upstream session and of its own core, from the settings."""

from __future__ import annotations

import math

from voicebridge.config import Settings
from voicebridge.core import realtime as rt
from voicebridge.core.call import CallPolicy
from voicebridge.core.local_barge_in import LocalSettings

__all__ = ["call_policy", "session_config"]


def session_config(
    settings: Settings, tools: tuple[dict[str, object], ...] = ()
) -> rt.SessionConfig:
    """The session voicebridge asks for, from the settings (README "Turn-taking")."""
    fmt: rt.AudioFormat = "audio/pcm" if settings.upstream_audio == "pcm24k" else "audio/pcmu"
    turn: dict[str, object] = {
        "type": settings.turn_detection,
        "create_response": settings.create_response,
        "interrupt_response": settings.interrupt_response,
    }
    if settings.turn_detection == "server_vad":
        turn.update(
            threshold=settings.vad_threshold,
            prefix_padding_ms=settings.vad_prefix_padding_ms,
            silence_duration_ms=settings.vad_silence_ms,
        )
        if settings.idle_timeout_ms:
            turn["idle_timeout_ms"] = settings.idle_timeout_ms
    else:
        turn["eagerness"] = settings.vad_eagerness
    return rt.SessionConfig(
        instructions=settings.instructions,
        voice=settings.voice,
        input_format=fmt,
        output_format=fmt,
        turn_detection=turn,
        noise_reduction=None if settings.noise_reduction == "off" else settings.noise_reduction,
        transcription_model=settings.transcription_model or None,
        tools=tools,
    )


def call_policy(settings: Settings) -> CallPolicy:
    """The core's choices for a call: greeting, idle re-prompts and goodbye, the apology,
    pacing."""
    return CallPolicy(
        greeting_instructions=settings.greeting_instructions,
        idle_reprompts=settings.idle_reprompts,
        apology_instructions=settings.apology_instructions,
        idle_goodbye_instructions=settings.idle_goodbye_instructions,
        caller_burst_ms=settings.caller_burst_ms or math.inf,  # 0: no pacing
        local_barge_in=local_barge_in(settings),
    )


def local_barge_in(settings: Settings) -> LocalSettings | None:
    """``LOCAL_BARGE_IN``'s settings for the core, or None when it is off."""
    if not settings.local_barge_in:
        return None
    return LocalSettings(
        min_speech_ms=settings.local_barge_in_min_speech_ms,
        window_ms=settings.local_barge_in_window_ms,
        rewind_ms=settings.local_barge_in_rewind_ms,
    )
