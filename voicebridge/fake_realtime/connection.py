"""One connection of the fake Realtime server: the GA event protocol and the responses it speaks.

Protocol decisions are synchronous methods that append events to an outbox; only pacing
(``asyncio.sleep``) and socket writes await. A state change and the events it implies are
therefore never split by another task, and ``FakeSession.sent`` is in wire order.
Event shapes follow ``openai.types.realtime`` (PROTOCOLS.md B.3/B.4). Responses are run by
``responder.py``; the input audio buffer and its turns by ``input_buffer.py``.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .bench import KEY_CHARS, Arrivals
from .config import apply_session_update, default_session
from .conversation import Conversation
from .input_buffer import InputAudioBuffer
from .latency import LateEvents
from .responder import Responder
from .session import JSON, FakeRealtimeOptions, FakeSession, InvalidRequest, new_id

__all__ = ["BETA_MESSAGE", "FakeConnection"]

log = logging.getLogger(__name__)

BETA_MESSAGE = (
    "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
)
DEFAULT_MODEL = "gpt-realtime"


class FakeConnection:
    """Serves one accepted WebSocket until it closes."""

    def __init__(
        self,
        ws: ServerConnection,
        record: FakeSession,
        options: FakeRealtimeOptions,
        release: asyncio.Event | None = None,
        arrivals: Arrivals | None = None,
    ) -> None:
        self._ws = ws
        self._keep = options.keep_records
        self._arrivals = arrivals  # bench only: caller frames' arrival times
        self._arrived_at = 0.0  # time.monotonic() when the message being handled arrived
        self._record = record
        self._opts = options
        self._faulty = options.faulty(record.index)
        # Set when the server closes: a stalled connection then ends.
        self._release = release or asyncio.Event()
        self._config = default_session(record.model or DEFAULT_MODEL)
        record.config = self._config
        self._outbox: collections.deque[str] = collections.deque()
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        delay = options.event_delay_ms  # a distant server: every event late (latency.py)
        self._late = LateEvents(delay, ws.send, self._spawn) if delay else None
        self._conv = Conversation(self._emit)
        self._responder = Responder(
            emit=self._emit,
            flush=self._flush,
            spawn=self._spawn,
            conv=self._conv,
            record=record,
            options=options,
            config=lambda: self._config,
            input_ms=lambda: self._input.input_ms_total,
            on_done=lambda response: self._input.response_done(response),
        )
        self._input = InputAudioBuffer(
            self._emit, self._conv, self._responder, lambda: self._config, options
        )
        self._close_timer: asyncio.Task[None] | None = None
        self._stall_timer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stalled = False
        self._inject_armed = False
        self._last_done: tuple[str, str] | None = None  # (response id, item id) last finished

    # -- lifetime ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            beta = self._record.headers.get("openai-beta", "")
            if "realtime" in beta.lower():
                # Field reports (PROTOCOLS.md B.1): an error event, then close code 4000.
                self._error("beta_api_shape_disabled", BETA_MESSAGE, None, None)
                await self._flush()
                await self._ws.close(4000, "beta_api_shape_disabled")
                return
            self._emit({"type": "session.created", "session": copy.deepcopy(self._config)})
            await self._flush()
            self._reader = reader = asyncio.create_task(self._serve(), name="fake-read")
            try:
                await asyncio.wait({reader})
            finally:
                reader.cancel()  # when run() itself is cancelled
            if reader.cancelled() and self._stalled:
                await self._hold()
            else:
                reader.result()  # ConnectionClosed, or a bug, as before
        except ConnectionClosed:
            pass
        finally:
            for task in self._tasks:
                task.cancel()
            if self._tasks:  # cancelled tasks end at once; the bound guards against a bug
                await asyncio.wait(self._tasks, timeout=1.0)

    async def _serve(self) -> None:
        bench = self._arrivals is not None
        async for message in self._ws:
            if bench:
                self._arrived_at = time.monotonic()
            self._receive(message)
            await self._flush()

    async def _hold(self) -> None:
        """Stalled: read nothing, send nothing, until released or the socket is gone."""
        release = asyncio.create_task(self._release.wait(), name="fake-stall-release")
        gone = asyncio.create_task(self._ws.wait_closed(), name="fake-stall-closed")
        try:
            await asyncio.wait({release, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            release.cancel()
            gone.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("fake Realtime task %s failed", task.get_name(), exc_info=exc)

    async def _close_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        code, reason = self._opts.close_code, self._opts.close_reason
        log.debug("fault: closing session %d with %d", self._record.index, code)
        self._record.fault_closed_at = time.monotonic()
        await self._ws.close(code, reason)

    async def _stall_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        log.debug("fault: session %d stalls", self._record.index)
        self._record.stalled_at = time.monotonic()
        self._stalled = True
        self._outbox.clear()
        # Nothing more is read (the reader is cancelled; recv() is safe to cancel) and
        # nothing more is sent (responses, timers); `run` then holds the socket open.
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        if self._reader is not None:
            self._reader.cancel()

    async def _inject_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self._record.injected_at = time.monotonic()
        response_id, item_id = self._last_done or ("${done_response_id}", "${done_item_id}")
        for frame in self._opts.inject:
            raw = frame.replace("${done_response_id}", response_id)
            raw = raw.replace("${done_item_id}", item_id)
            self._record.sent_raw.append(raw)
            self._outbox.append(raw)  # through the outbox: wire order stays emit order
        await self._flush()

    # -- output -----------------------------------------------------------------------------

    def _emit(self, event: JSON) -> JSON:
        event["event_id"] = new_id("event")
        if self._stalled:
            return event  # a stalled server says nothing more
        if self._keep:
            self._record.sent.append(event)
        self._outbox.append(orjson.dumps(event).decode())
        kind = event["type"]
        if kind == "response.done":
            response = event["response"]
            output = response.get("output") or [{}]
            self._last_done = (response["id"], str(output[0].get("id", "")))
        if (
            self._opts.inject
            and self._faulty
            and not self._inject_armed
            and kind == self._opts.inject_after_event
        ):
            self._inject_armed = True
            self._spawn(self._inject_later(self._opts.inject_after_ms / 1000), "fake-inject")
        return event

    async def _flush(self) -> None:
        # Whoever holds the lock drains every pending event, so wire order = emit order, and
        # the outbox never holds more than one protocol step's events.
        if not self._outbox or self._stalled:
            return  # most appends answer nothing: skip the lock
        if self._late is not None:
            return self._late.take(self._outbox)
        async with self._send_lock:
            while self._outbox:
                await self._ws.send(self._outbox.popleft())

    def _error(
        self, code: str | None, message: str, param: str | None, client_event_id: Any
    ) -> None:
        error = {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id if isinstance(client_event_id, str) else None,
        }
        self._record.errors_sent.append(self._emit({"type": "error", "error": error}))

    # -- input ------------------------------------------------------------------------------

    def _receive(self, message: str | bytes) -> None:
        if self._close_timer is not None and self._opts.close_before_updated:
            return  # closing instead of answering: nothing more is handled
        try:
            event = orjson.loads(message)
        except ValueError:  # orjson.JSONDecodeError
            event = None
        if not isinstance(event, dict):
            self._error(
                "invalid_json",
                "We could not parse the JSON body of your request. Expected a JSON object.",
                None,
                None,
            )
            return
        if self._keep:
            self._record.received.append(event)
        kind = event.get("type")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        try:
            if handler is None:
                raise InvalidRequest(
                    "invalid_value",
                    f"Invalid value: {kind!r}. Supported values are: "
                    + ", ".join(f"'{name}'" for name in _HANDLERS)
                    + ".",
                    "type",
                )
            handler(self, event)
        except InvalidRequest as exc:
            self._error(exc.code, exc.message, exc.param, event.get("event_id"))

    def _on_session_update(self, event: JSON) -> None:
        if self._opts.close_before_updated and self._opts.closes(self._record.index):
            if self._close_timer is None:
                self._close_timer = self._spawn(self._close_later(0.0), "fake-close-now")
            return  # never confirmed
        config = apply_session_update(self._config, event.get("session"))
        if self._opts.echo_output_format is not None:
            fmt: JSON = {"type": self._opts.echo_output_format}
            if fmt["type"] == "audio/pcm":
                fmt["rate"] = 24000
            config["audio"]["output"]["format"] = fmt
        self._config = self._record.config = config
        self._input.configure()
        # The client event_id is not echoed in session.updated (B.2).
        self._emit({"type": "session.updated", "session": copy.deepcopy(config)})
        self._input.session_updated()
        if self._opts.close_after_ms is not None and self._close_timer is None:
            if self._opts.closes(self._record.index) and not self._opts.close_before_updated:
                self._close_timer = self._spawn(
                    self._close_later(self._opts.close_after_ms / 1000), "fake-close-after"
                )
        if self._opts.stall_after_ms is not None and self._stall_timer is None and self._faulty:
            self._stall_timer = self._spawn(
                self._stall_later(self._opts.stall_after_ms / 1000), "fake-stall-after"
            )

    def _on_append(self, event: JSON) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise InvalidRequest(
                "invalid_type", "Invalid type for 'audio': expected a string.", "audio"
            )
        if self._keep:
            self._record.appended.append(audio)
        if self._arrivals is not None and len(audio) >= KEY_CHARS:
            self._arrivals.add(audio[:KEY_CHARS], self._arrived_at, "b")
        self._input.append(audio)

    def _on_commit(self, event: JSON) -> None:
        self._input.commit()

    def _on_clear(self, event: JSON) -> None:
        self._input.clear()

    def _on_item_truncate(self, event: JSON) -> None:
        self._record.truncations.append(event)
        index, end_ms = event.get("content_index"), event.get("audio_end_ms")
        if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
            raise InvalidRequest(
                "invalid_value", "'audio_end_ms' must be a non-negative integer.", "audio_end_ms"
            )
        if index != 0:
            raise InvalidRequest("invalid_value", "'content_index' must be 0.", "content_index")
        item_id = self._conv.known(event)
        fake = self._record.items.get(item_id)
        if fake is None:
            raise InvalidRequest(
                "invalid_value", "Only model output audio messages can be truncated", "item_id"
            )
        have_ms = fake.audio_ms_sent if fake.truncated_ms is None else fake.truncated_ms
        if end_ms > have_ms:
            raise InvalidRequest(
                "invalid_value",
                f"Audio content of {int(have_ms)}ms is already shorter than {end_ms}ms",
                "audio_end_ms",
            )
        fake.truncated_ms = end_ms
        active = self._responder.active
        if active is not None and active.item is fake:
            active.audio_stopped = True  # the real server stops generating it too
        truncated = self._emit(
            {
                "type": "conversation.item.truncated",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": end_ms,
            }
        )
        self._record.truncated.append(truncated)

    def _on_response_create(self, event: JSON) -> None:
        self._record.response_creates.append(copy.deepcopy(event))
        active = self._responder.active
        if active is not None:
            raise InvalidRequest(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        params = event.get("response")
        if params is not None and not isinstance(params, dict):
            raise InvalidRequest(
                "invalid_type", "Invalid type for 'response': expected an object.", "response"
            )
        # Per-response instructions are recorded, not obeyed: the fake speaks its clips;
        # per-response tools / tool_choice do decide a tool_call (see Responder).
        self._responder.start(params)

    def _on_response_cancel(self, event: JSON) -> None:
        wanted, active = event.get("response_id"), self._responder.active
        if active is None or (wanted is not None and wanted != active.id):
            raise InvalidRequest(
                "response_cancel_not_active", "Cancellation failed: no active response found"
            )
        self._responder.cancel("client_cancelled")

    def _on_item_create(self, event: JSON) -> None:
        item = self._conv.on_create(event)
        self._record.items_created.append(copy.deepcopy(item))
        if item["type"] == "function_call_output":
            self._record.function_outputs.append(copy.deepcopy(item))

    def _on_webrtc_only(self, event: JSON) -> None:
        raise InvalidRequest(
            "invalid_value",
            f"{event['type']} is only supported for WebRTC and SIP connections.",
            "type",
        )


_Handler = Callable[[FakeConnection, JSON], None]

# Client event type -> handler (the GA RealtimeClientEvent union).
_HANDLERS: dict[str, _Handler] = {
    "session.update": FakeConnection._on_session_update,
    "input_audio_buffer.append": FakeConnection._on_append,
    "input_audio_buffer.commit": FakeConnection._on_commit,
    "input_audio_buffer.clear": FakeConnection._on_clear,
    "conversation.item.create": FakeConnection._on_item_create,
    "conversation.item.truncate": FakeConnection._on_item_truncate,
    "conversation.item.delete": lambda conn, event: conn._conv.on_delete(event),
    "conversation.item.retrieve": lambda conn, event: conn._conv.on_retrieve(event),
    "response.create": FakeConnection._on_response_create,
    "response.cancel": FakeConnection._on_response_cancel,
    "output_audio_buffer.clear": FakeConnection._on_webrtc_only,
}
