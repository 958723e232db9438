"""The fake Realtime server's options, test records, ids and client-item checks (no I/O).

The session configuration itself (defaults, ``session.update`` validation) is in
``fake_config``.
"""

from __future__ import annotations

import copy
import itertools
import json
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
    "check_client_item",
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
    # The first N responses of each session end `failed` (server_error) before any audio.
    fail_responses: int = 0
    # The next N end `incomplete` (max_output_tokens) after about half their audio.
    incomplete_responses: int = 0
    # (function name, JSON arguments): the first response after caller speech calls this
    # function instead of speaking, when the session (or response.create) declares it.
    tool_call: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError("speed must be > 0")
        if self.delta_ms <= 0:
            raise ValueError("delta_ms must be > 0")
        if self.echo_output_format is not None and self.echo_output_format not in AUDIO_FORMATS:
            raise ValueError(f"echo_output_format must be one of {AUDIO_FORMATS}")
        if self.fail_responses < 0 or self.incomplete_responses < 0:
            raise ValueError("fail_responses and incomplete_responses must be >= 0")
        if self.tool_call is not None:
            name, arguments = self.tool_call
            if not name:
                raise ValueError("tool_call needs a function name")
            json.loads(arguments)  # raises ValueError unless it is a JSON string


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
    items: dict[str, FakeItem] = field(default_factory=dict)  # assistant audio items by id
    # Every client response.create event, as received (to see per-response instructions).
    response_creates: list[JSON] = field(default_factory=list)
    # Accepted conversation.item.create items, as the server added them (with their ids).
    items_created: list[JSON] = field(default_factory=list)
    # The function_call items the fake produced (final state, as in response.done).
    function_calls: list[JSON] = field(default_factory=list)
    # The accepted function_call_output items (also in items_created).
    function_outputs: list[JSON] = field(default_factory=list)
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
