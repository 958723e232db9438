"""The fake Realtime server's session configuration: defaults and ``session.update`` checks.

Session objects follow the GA ``RealtimeSessionCreateRequest`` shape (PROTOCOLS.md B.2): the
server reports the "full, effective configuration" in ``session.created`` / ``session.updated``.
An invalid update raises ``InvalidRequest`` (an ``error`` event) and leaves the session as it
was. Field ranges come from the ``openai.types.realtime`` docstrings; where the real server's
exact error wording is unknown, the messages follow the API's usual style.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from voicebridge.core.realtime import NOISE_REDUCTION_TYPES, TRANSCRIPTION_MODELS, VAD_EAGERNESS

from .session import AUDIO_FORMATS, JSON, InvalidRequest, new_id

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "apply_session_update",
    "check_max_output_tokens",
    "check_metadata",
    "default_session",
]

_SERVER_VAD_DEFAULTS: JSON = {
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
_SEMANTIC_VAD_DEFAULTS: JSON = {
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}
# The fields each object accepts (the GA types); anything else is an unknown parameter.
_SERVER_VAD_FIELDS = frozenset({"type", *_SERVER_VAD_DEFAULTS})
_SEMANTIC_VAD_FIELDS = frozenset({"type", *_SEMANTIC_VAD_DEFAULTS})
_TRANSCRIPTION_FIELDS = frozenset({"model", "language", "languages", "prompt", "keywords", "delay"})

DEFAULT_INSTRUCTIONS = (
    "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. "
    "Keep your answers short."
)


def default_session(model: str) -> JSON:
    """The session the real server reports in ``session.created`` before any update."""
    pcm24 = {"type": "audio/pcm", "rate": 24000}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + 3600,
        "include": None,
        "audio": {
            "input": {
                "format": dict(pcm24),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {"type": "server_vad", **_SERVER_VAD_DEFAULTS},
            },
            "output": {"format": dict(pcm24), "voice": "marin", "speed": 1.0},
        },
    }


# Beta (retired) top-level session fields and where GA moved them (PROTOCOLS.md B.2 table).
_BETA_FIELDS = {
    "modalities": "output_modalities",
    "input_audio_format": "audio.input.format",
    "output_audio_format": "audio.output.format",
    "voice": "audio.output.voice",
    "turn_detection": "audio.input.turn_detection",
    "input_audio_transcription": "audio.input.transcription",
    "input_audio_noise_reduction": "audio.input.noise_reduction",
    "max_response_output_tokens": "max_output_tokens",
    "temperature": None,
}


def _merge(current: Any, update: Any) -> Any:
    """Deep-merge ``update`` into ``current``: only the fields present change (B.2).

    A dict whose ``type`` differs from the current one (a new audio format, server_vad →
    semantic_vad) replaces it rather than merging, so no stale sibling fields survive.
    """
    if not isinstance(current, dict) or not isinstance(update, dict):
        return copy.deepcopy(update)
    if "type" in update and update["type"] != current.get("type"):
        return copy.deepcopy(update)
    merged = dict(current)
    for key, value in update.items():
        merged[key] = _merge(current.get(key), value)
    return merged


def _one_of(value: Any, allowed: tuple[str, ...], param: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidRequest(
            "invalid_value",
            f"Invalid value for '{param}': {value!r}. Supported values are: "
            + ", ".join(f"'{v}'" for v in allowed)
            + ".",
            param,
        )
    return value


def _known_fields(obj: JSON, allowed: frozenset[str], param: str) -> None:
    for key in obj:
        if key not in allowed:
            raise InvalidRequest(
                "unknown_parameter", f"Unknown parameter: '{param}.{key}'.", f"{param}.{key}"
            )


def _number(value: Any, param: str, *, integer: bool, high: float | None = None) -> None:
    """A non-negative number (an integer when ``integer``), at most ``high`` when given."""
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if not ok or isinstance(value, bool):
        kind = "an integer" if integer else "a number"
        raise InvalidRequest(
            "invalid_type",
            f"Invalid type for '{param}': expected {kind}, but got {type(value).__name__}.",
            param,
        )
    kind = "integer" if integer else "decimal"
    if value < 0:
        raise InvalidRequest(
            f"{kind}_below_min_value",
            f"Invalid '{param}': {kind} below minimum value. "
            f"Expected a value >= 0, but got {value} instead.",
            param,
        )
    if high is not None and value > high:
        raise InvalidRequest(
            f"{kind}_above_max_value",
            f"Invalid '{param}': {kind} above maximum value. "
            f"Expected a value <= {high:g}, but got {value} instead.",
            param,
        )


def _check_format(fmt: Any, param: str) -> JSON:
    if not isinstance(fmt, dict) or fmt.get("type") not in AUDIO_FORMATS:
        raise InvalidRequest(
            "invalid_value",
            f"Invalid value for '{param}.type'. Supported values are: "
            + ", ".join(f"'{f}'" for f in AUDIO_FORMATS)
            + ".",
            f"{param}.type",
        )
    if fmt["type"] == "audio/pcm":
        if fmt.get("rate", 24000) != 24000:
            raise InvalidRequest(
                "invalid_value", "Only a 24kHz sample rate is supported.", f"{param}.rate"
            )
        return {"type": "audio/pcm", "rate": 24000}
    return {"type": fmt["type"]}


def _check_turn_detection(td: Any) -> JSON | None:
    param = "session.audio.input.turn_detection"
    if td is None:
        return None
    kind = td.get("type") if isinstance(td, dict) else None
    result: JSON
    if kind == "semantic_vad":
        if td.get("idle_timeout_ms") is not None:
            raise InvalidRequest(
                "invalid_value",
                "Idle timeout is only supported for 'server_vad' turn detection.",
                f"{param}.idle_timeout_ms",
            )
        # null is harmless; SemanticVad has no such field, so it is not echoed.
        result = {k: v for k, v in td.items() if k != "idle_timeout_ms"}
        _known_fields(result, _SEMANTIC_VAD_FIELDS, param)
        result = {**_SEMANTIC_VAD_DEFAULTS, **result}
        _one_of(result["eagerness"], VAD_EAGERNESS, f"{param}.eagerness")
    elif kind == "server_vad":
        _known_fields(td, _SERVER_VAD_FIELDS, param)
        result = {**_SERVER_VAD_DEFAULTS, **td}
        _number(result["threshold"], f"{param}.threshold", integer=False, high=1.0)
        for name in ("prefix_padding_ms", "silence_duration_ms"):
            _number(result[name], f"{param}.{name}", integer=True)
        if result["idle_timeout_ms"] is not None:
            _number(result["idle_timeout_ms"], f"{param}.idle_timeout_ms", integer=True)
    else:
        raise InvalidRequest(
            "invalid_value",
            f"Invalid value for '{param}.type'. Supported values are: "
            "'server_vad', 'semantic_vad'.",
            f"{param}.type",
        )
    for name in ("create_response", "interrupt_response"):
        if not isinstance(result[name], bool):
            raise InvalidRequest(
                "invalid_type",
                f"Invalid type for '{param}.{name}': expected a boolean.",
                f"{param}.{name}",
            )
    return {"type": kind, **result}


def _optional_object(value: Any, allowed: frozenset[str], param: str) -> JSON | None:
    """None for null (the feature is off); otherwise an object with only ``allowed`` fields."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(
            "invalid_type", f"Invalid type for '{param}': expected an object.", param
        )
    _known_fields(value, allowed, param)
    return value


def _check_noise_reduction(value: Any) -> JSON | None:
    """``{"type": "near_field"|"far_field"}``, or null for off."""
    param = "session.audio.input.noise_reduction"
    nr = _optional_object(value, frozenset({"type"}), param)
    if nr is None:
        return None
    return {"type": _one_of(nr.get("type"), NOISE_REDUCTION_TYPES, f"{param}.type")}


def _check_transcription(value: Any) -> JSON | None:
    """``{"model": …, "language"?: …, "prompt"?: …}``, or null for off (the default)."""
    param = "session.audio.input.transcription"
    tr = _optional_object(value, _TRANSCRIPTION_FIELDS, param)
    if tr is None:
        return None
    _one_of(tr.get("model"), TRANSCRIPTION_MODELS, f"{param}.model")
    return dict(tr)


def check_max_output_tokens(value: Any, param: str) -> int | str:
    """``max_output_tokens`` is 1-4096 or "inf" (B.2)."""
    if value == "inf" or (type(value) is int and 1 <= value <= 4096):
        return value  # type: ignore[no-any-return]
    raise InvalidRequest(
        "invalid_value", f"Invalid '{param}': expected an integer 1-4096 or 'inf'.", param
    )


def check_metadata(value: Any, param: str) -> dict[str, str] | None:
    """``metadata``: at most 16 pairs, string keys up to 64 and values up to 512 characters."""
    if value is None:
        return None
    if not (
        isinstance(value, dict)
        and len(value) <= 16
        and all(isinstance(k, str) and len(k) <= 64 for k in value)
        and all(isinstance(v, str) and len(v) <= 512 for v in value.values())
    ):
        raise InvalidRequest(
            "invalid_value",
            f"Invalid '{param}': expected up to 16 string pairs (keys up to 64 characters, "
            "values up to 512).",
            param,
        )
    return dict(value)


def apply_session_update(current: JSON, update: Any) -> JSON:
    """The effective session after a ``session.update``; raises InvalidRequest for bad shapes.

    ``current`` is never modified, so a refused update leaves the session unchanged.
    """
    if not isinstance(update, dict):
        raise InvalidRequest(
            "invalid_type", "Invalid type for 'session': expected an object.", "session"
        )
    for name, ga_name in _BETA_FIELDS.items():
        if name in update:
            hint = f" Use 'session.{ga_name}' instead." if ga_name else ""
            raise InvalidRequest(
                "unknown_parameter",
                f"Unknown parameter: 'session.{name}'.{hint}",
                f"session.{name}",
            )
    if "type" not in update:
        raise InvalidRequest(
            "missing_required_parameter",
            "Missing required parameter: 'session.type'.",
            "session.type",
        )
    if update["type"] != "realtime":
        raise InvalidRequest(
            "invalid_value",
            "Cannot change the session type of a realtime session.",
            "session.type",
        )
    if update.get("model", current["model"]) != current["model"]:
        raise InvalidRequest(
            "invalid_value", "The model of a session cannot be changed.", "session.model"
        )
    # _merge shares the untouched parts with `current`: copy before normalising in place.
    merged: JSON = copy.deepcopy(_merge(current, update))
    merged["max_output_tokens"] = check_max_output_tokens(
        merged.get("max_output_tokens"), "session.max_output_tokens"
    )
    audio = merged.get("audio")
    if not isinstance(audio, dict) or not all(
        isinstance(audio.get(side), dict) for side in ("input", "output")
    ):
        raise InvalidRequest(
            "invalid_type", "Invalid type for 'session.audio': expected an object.", "session.audio"
        )
    audio_in, audio_out = audio["input"], audio["output"]
    audio_in["format"] = _check_format(audio_in.get("format"), "session.audio.input.format")
    audio_out["format"] = _check_format(audio_out.get("format"), "session.audio.output.format")
    audio_in["turn_detection"] = _check_turn_detection(audio_in.get("turn_detection"))
    audio_in["noise_reduction"] = _check_noise_reduction(audio_in.get("noise_reduction"))
    audio_in["transcription"] = _check_transcription(audio_in.get("transcription"))
    return merged
