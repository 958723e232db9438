"""The fake Realtime server's options, test records and session configuration (no I/O).

Session objects follow the GA ``RealtimeSessionCreateRequest`` shape (PROTOCOLS.md B.2): the
server reports the "full, effective configuration" in ``session.created`` / ``session.updated``.
"""

from __future__ import annotations

import copy
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AUDIO_FORMATS",
    "FakeItem",
    "FakeRealtimeOptions",
    "FakeSession",
    "InvalidRequest",
    "apply_session_update",
    "check_client_item",
    "check_max_output_tokens",
    "default_session",
    "new_id",
]

JSON = dict[str, Any]

AUDIO_FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")


@dataclass(frozen=True)
class FakeRealtimeOptions:
    """How the fake behaves; the fault fields exist for tests."""

    speed: float = 5.0  # audio deltas go out this many times faster than real time
    delta_ms: int = 100  # audio per response.output_audio.delta
    response_delay_ms: int = 150  # "think time" before the first delta
    api_key: str | None = None  # when set, `Authorization: Bearer <api_key>` is required (else 401)
    vad_threshold: int = 600  # RMS (16-bit scale) above which a 20 ms frame counts as voiced
    vad_start_ms: int = 60  # consecutive voiced audio needed for speech_started
    close_after_ms: int | None = None  # close with 1011 this long after the first session.update
    echo_output_format: str | None = None  # session.updated (and the audio) use this output format
    accept_delay_ms: int = 0  # delay before completing the handshake

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError("speed must be > 0")
        if self.delta_ms <= 0:
            raise ValueError("delta_ms must be > 0")
        if self.echo_output_format is not None and self.echo_output_format not in AUDIO_FORMATS:
            raise ValueError(f"echo_output_format must be one of {AUDIO_FORMATS}")


@dataclass(eq=False)
class FakeItem:
    """An assistant item the fake produced, with the exact audio it sent."""

    item_id: str
    response_id: str
    deltas: list[str] = field(default_factory=list)  # base64 payloads, as sent
    audio_ms_sent: float = 0.0
    truncated_ms: int | None = None  # audio_end_ms of the last successful truncate


@dataclass(eq=False)
class FakeSession:
    """What happened on one accepted connection; plain attributes so tests can read them after."""

    path: str
    headers: dict[str, str]  # header names lower-cased
    model: str | None = None
    config: JSON = field(default_factory=dict)  # the effective session object
    received: list[JSON] = field(default_factory=list)
    sent: list[JSON] = field(default_factory=list)
    appended: list[str] = field(default_factory=list)
    truncations: list[JSON] = field(default_factory=list)
    truncated: list[JSON] = field(default_factory=list)
    errors_sent: list[JSON] = field(default_factory=list)
    items: dict[str, FakeItem] = field(default_factory=dict)
    opened_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None
    close_code: int | None = None


class InvalidRequest(Exception):
    """A client event the real server would answer with an ``error`` event."""

    def __init__(self, code: str | None, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


# Unique per process run: a random tag keeps ids distinct across servers and restarts.
_RUN_TAG = secrets.token_hex(4)
_SEQ = itertools.count(1)


def new_id(prefix: str) -> str:
    """A unique id shaped like the real ones ("event_…", "item_…", "resp_…")."""
    return f"{prefix}_{_RUN_TAG}{next(_SEQ):010x}"


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
    if kind == "server_vad":
        return {"type": kind, **_SERVER_VAD_DEFAULTS, **td}
    if kind == "semantic_vad":
        return {"type": kind, **_SEMANTIC_VAD_DEFAULTS, **td}
    raise InvalidRequest(
        "invalid_value",
        f"Invalid value for '{param}.type'. Supported values are: 'server_vad', 'semantic_vad'.",
        f"{param}.type",
    )


def check_max_output_tokens(value: Any, param: str) -> int | str:
    """``max_output_tokens`` is 1-4096 or "inf" (B.2)."""
    if value == "inf" or (type(value) is int and 1 <= value <= 4096):
        return value  # type: ignore[no-any-return]
    raise InvalidRequest(
        "invalid_value", f"Invalid '{param}': expected an integer 1-4096 or 'inf'.", param
    )


# String fields each client-creatable item type requires (the GA ConversationItem union).
_ITEM_REQUIRED: dict[str, tuple[str, ...]] = {
    "message": ("role",),
    "function_call": ("name", "arguments"),
    "function_call_output": ("call_id", "output"),
}


def check_client_item(item: Any) -> JSON:
    """The conversation item a ``conversation.item.create`` adds, as the server reports it."""
    if not isinstance(item, dict):
        raise InvalidRequest("invalid_type", "Invalid type for 'item': expected an object.", "item")
    kind = item.get("type")
    required = _ITEM_REQUIRED.get(kind) if isinstance(kind, str) else None
    if required is None:
        raise InvalidRequest("invalid_value", f"Invalid item type: {kind!r}.", "item.type")
    for name in required:
        if not isinstance(item.get(name), str):
            raise InvalidRequest(
                "missing_required_parameter",
                f"Missing required parameter: 'item.{name}'.",
                f"item.{name}",
            )
    if kind == "message":
        if item["role"] not in ("user", "system", "assistant"):
            raise InvalidRequest("invalid_value", "Invalid 'item.role'.", "item.role")
        if not isinstance(item.get("content"), list):
            raise InvalidRequest(
                "missing_required_parameter",
                "Missing required parameter: 'item.content'.",
                "item.content",
            )
    return {**copy.deepcopy(item), "object": "realtime.item", "status": "completed"}


def apply_session_update(current: JSON, update: Any) -> JSON:
    """The effective session after a ``session.update``; raises InvalidRequest for bad shapes."""
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
    merged: JSON = _merge(current, update)
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
    return merged
