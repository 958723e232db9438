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
from http import HTTPStatus
from typing import Any

__all__ = [
    "AUDIO_FORMATS",
    "INJECT_ANCHORS",
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
    # Each spoken response stops this long halfway through its audio, still in progress.
    pause_midway_ms: int = 0
    api_key: str | None = None  # when set, `Authorization: Bearer <api_key>` is required (else 401)
    vad_threshold: int = 600  # RMS (16-bit scale) above which a 20 ms frame counts as voiced
    vad_start_ms: int = 60  # consecutive voiced audio needed for speech_started
    # A distant server: every server event leaves this long after it is made, in order.
    event_delay_ms: int = 0
    first_clip: int = 0  # the clip the first spoken response says; the rotation goes on
    # Close the connection this long after the first session.update (with close_code).
    close_after_ms: int | None = None
    echo_output_format: str | None = None  # session.updated (and the audio) use this output format
    accept_delay_ms: int = 0  # delay before completing the handshake
    # The first N responses of each session end `failed` (server_error) before any audio.
    fail_responses: int = 0
    # The next N end `incomplete` (max_output_tokens) after about half their audio.
    incomplete_responses: int = 0
    # (function name, JSON arguments): the first response after caller speech calls this
    # function instead of speaking, when the session (or response.create) declares it.
    tool_call: tuple[str, str] | None = None
    # 0: every caller turn's first response calls tool_call; N: only the Nth turn's (the
    # model answers the turns before it by speaking).
    tool_call_turn: int = 0
    # -- upstream faults (all off by default) --------------------------------------------
    # "Sessions" are numbered in the order the server accepted them (FakeSession.index),
    # server-wide: the first session of the first call is 0.
    # Handshakes number refuse_handshakes_from .. +len-1 (server-wide, counting every
    # attempt) are refused with these HTTP statuses in order, e.g. (429, 503); then accepted.
    refuse_handshakes: tuple[int, ...] = ()
    refuse_handshakes_from: int = 0
    # The close faults close only sessions with index < close_sessions (None: all).
    close_sessions: int | None = None
    # Instead of answering the first session.update, close at once (close_sessions,
    # close_code and close_reason apply): the connection drops before the session is confirmed.
    close_before_updated: bool = False
    close_code: int = 1011  # 4000-4999 as the real API closes on errors, with close_reason
    close_reason: str = "fake upstream fault"
    # This long after the first session.update the connection stops reading (websockets'
    # max_queue back-pressure then stops reading the socket, so pings go unanswered) and
    # stops sending, until the server closes.
    stall_after_ms: int | None = None
    # Raw text frames sent verbatim (FakeSession.sent_raw, never .sent) inject_after_ms after
    # the session first sends an inject_after_event. "${done_response_id}" and
    # "${done_item_id}" in a frame become the ids of the session's last finished response.
    inject: tuple[str, ...] = ()
    inject_after_ms: int = 0
    inject_after_event: str = "session.updated"
    # Stall, inject and close apply only to sessions with index < fault_sessions (None: all).
    fault_sessions: int | None = None
    # -- bench only (bench/, the capacity benchmark; see fake_bench) ---------------------
    # False: FakeSession keeps no per-event lists (received, appended, sent), so a long
    # load run does not grow without bound. Tests keep the default.
    keep_records: bool = True
    # Note every caller frame's arrival (FakeRealtimeServer.arrivals) and accept the
    # ?bench=direct|relay sink connections.
    bench_arrivals: bool = False

    def faulty(self, index: int) -> bool:
        """Whether session ``index`` gets the stall / inject / close faults."""
        return self.fault_sessions is None or index < self.fault_sessions

    def closes(self, index: int) -> bool:
        """Whether session ``index`` is closed by the close faults."""
        return (
            (self.close_after_ms is not None or self.close_before_updated)
            and self.faulty(index)
            and (self.close_sessions is None or index < self.close_sessions)
        )

    def refusal(self, attempt: int) -> int | None:
        """The HTTP status refusing handshake number ``attempt`` (0-based), or None."""
        n = attempt - self.refuse_handshakes_from
        return self.refuse_handshakes[n] if 0 <= n < len(self.refuse_handshakes) else None

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError("speed must be > 0")
        if self.delta_ms <= 0:
            raise ValueError("delta_ms must be > 0")
        self._check_faults()
        if self.echo_output_format is not None and self.echo_output_format not in AUDIO_FORMATS:
            raise ValueError(f"echo_output_format must be one of {AUDIO_FORMATS}")
        if self.fail_responses < 0 or self.incomplete_responses < 0:
            raise ValueError("fail_responses and incomplete_responses must be >= 0")
        if self.tool_call is not None:
            name, arguments = self.tool_call
            if not name:
                raise ValueError("tool_call needs a function name")
            json.loads(arguments)  # raises ValueError unless it is a JSON string

    def _check_faults(self) -> None:
        for name in (
            "accept_delay_ms",
            "refuse_handshakes_from",
            "inject_after_ms",
            "close_after_ms",
            "close_sessions",
            "stall_after_ms",
            "fault_sessions",
            "event_delay_ms",
            "first_clip",
        ):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a whole number >= 0")
        for status in self.refuse_handshakes:
            if not isinstance(status, int) or not 400 <= status <= 599:
                raise ValueError(f"refuse_handshakes: {status!r} is not an HTTP error status")
            HTTPStatus(status)  # ValueError for a status HTTP does not define
        if not _valid_close_code(self.close_code):
            raise ValueError(
                f"close_code {self.close_code!r} cannot be sent (1000-1014 or 3000-4999, "
                "not 1004-1006)"
            )
        if len(self.close_reason.encode()) > 123:
            raise ValueError("close_reason must fit a close frame (123 bytes)")
        if not all(isinstance(frame, str) for frame in self.inject):
            raise ValueError("inject must be a tuple of text frames")
        if self.inject_after_event not in INJECT_ANCHORS:
            raise ValueError(f"inject_after_event must be one of {INJECT_ANCHORS}")


# Server events that can start the inject_after_ms clock.
INJECT_ANCHORS = (
    "session.created",
    "session.updated",
    "response.created",
    "response.output_audio.delta",
    "response.done",
)


def _valid_close_code(code: object) -> bool:
    if not isinstance(code, int) or isinstance(code, bool):
        return False
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


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
    index: int = 0  # accepted sessions before this one, server-wide (the fault options count)
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
    # Fault injection: the raw frames sent verbatim (never in `sent`: they are not valid
    # events), and when each fault struck (time.monotonic()).
    sent_raw: list[str] = field(default_factory=list)
    injected_at: float | None = None
    stalled_at: float | None = None
    fault_closed_at: float | None = None  # the close_after_ms fault began closing
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
