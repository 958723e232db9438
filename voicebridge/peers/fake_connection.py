"""One connection of the fake Realtime server: the GA event protocol and the responses it speaks.

Protocol decisions are synchronous methods that append events to an outbox; only pacing
(``asyncio.sleep``) and socket writes await. A state change and the events it implies are
therefore never split by another task, and ``FakeSession.sent`` is in wire order.
Event shapes follow ``openai.types.realtime`` (PROTOCOLS.md B.3/B.4).
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import copy
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voicebridge.core.audio import b64_decoded_len

from .clips import BYTES_PER_MS, Chunk, clip_chunks, load_clips
from .fake_session import (
    JSON,
    FakeItem,
    FakeRealtimeOptions,
    FakeSession,
    InvalidRequest,
    apply_session_update,
    check_max_output_tokens,
    default_session,
    new_id,
)
from .fake_vad import EnergyVad, VadEvent

__all__ = ["BETA_MESSAGE", "FakeConnection"]

log = logging.getLogger(__name__)

BETA_MESSAGE = (
    "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
)
DEFAULT_MODEL = "gpt-realtime"
SEMANTIC_VAD_SILENCE_MS = 500
MIN_COMMIT_MS = 100


@dataclass(eq=False)
class _Response:
    id: str
    item: FakeItem
    chunks: tuple[Chunk, ...]
    audio_format: JSON
    voice: str
    max_output_tokens: int | str
    metadata: Any
    text_sent: list[str] = field(default_factory=list)
    audio_stopped: bool = False  # its item was truncated: no more deltas
    done: bool = False


class FakeConnection:
    """Serves one accepted WebSocket until it closes."""

    def __init__(
        self, ws: ServerConnection, record: FakeSession, options: FakeRealtimeOptions
    ) -> None:
        self._ws = ws
        self._record = record
        self._opts = options
        self._config = default_session(record.model or DEFAULT_MODEL)
        record.config = self._config
        self._outbox: collections.deque[str] = collections.deque()
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._vad = EnergyVad(options.vad_threshold, options.vad_start_ms)
        self._configure_vad()
        self._conversation: dict[str, JSON] = {}  # item id -> latest item JSON
        self._conversation_id = new_id("conv")
        self._last_item_id: str | None = None
        self._user_item_id: str | None = None  # between speech_started and speech_stopped
        self._buffer_ms = 0.0  # uncommitted input audio
        self._input_ms_total = 0.0
        self._active: _Response | None = None
        self._next_clip = 0
        self._close_timer: asyncio.Task[None] | None = None

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
            async for message in self._ws:
                self._receive(message)
                await self._flush()
        except ConnectionClosed:
            pass
        finally:
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _close_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        log.debug("fault: closing %s with 1011", self._record.config.get("id"))
        await self._ws.close(1011, "fake upstream fault")

    # -- output -----------------------------------------------------------------------------

    def _emit(self, event: JSON) -> JSON:
        event["event_id"] = new_id("event")
        self._record.sent.append(event)
        self._outbox.append(json.dumps(event))
        return event

    async def _flush(self) -> None:
        # Whoever holds the lock drains every pending event, so wire order = emit order, and
        # the outbox never holds more than one protocol step's events.
        if not self._outbox:
            return  # most appends answer nothing: skip the lock
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
        try:
            event = json.loads(message)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            self._error(
                "invalid_json",
                "We could not parse the JSON body of your request. Expected a JSON object.",
                None,
                None,
            )
            return
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

    def _turn_detection(self) -> JSON | None:
        td: JSON | None = self._config["audio"]["input"]["turn_detection"]
        return td

    def _configure_vad(self) -> None:
        td = self._turn_detection()
        fmt = self._config["audio"]["input"]["format"]["type"]
        if td is None or td["type"] == "server_vad":
            prefix = td["prefix_padding_ms"] if td else 300
            silence = td["silence_duration_ms"] if td else 500
        else:  # semantic_vad: no timings to configure; behave like a fixed 500 ms silence
            prefix, silence = 300, SEMANTIC_VAD_SILENCE_MS
        self._vad.configure(fmt, prefix, silence)

    def _on_session_update(self, event: JSON) -> None:
        config = apply_session_update(self._config, event.get("session"))
        if self._opts.echo_output_format is not None:
            fmt: JSON = {"type": self._opts.echo_output_format}
            if fmt["type"] == "audio/pcm":
                fmt["rate"] = 24000
            config["audio"]["output"]["format"] = fmt
        self._config = self._record.config = config
        self._configure_vad()
        # The client event_id is not echoed in session.updated (B.2).
        self._emit({"type": "session.updated", "session": copy.deepcopy(config)})
        if self._opts.close_after_ms is not None and self._close_timer is None:
            self._close_timer = self._spawn(
                self._close_later(self._opts.close_after_ms / 1000), "fake-close-after"
            )

    def _on_append(self, event: JSON) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise InvalidRequest(
                "invalid_type", "Invalid type for 'audio': expected a string.", "audio"
            )
        self._record.appended.append(audio)
        fmt = self._config["audio"]["input"]["format"]["type"]
        if self._turn_detection() is None:
            nbytes = b64_decoded_len(audio)
            self._vad.skip(nbytes)
            vad_events: list[VadEvent] = []
        else:
            try:
                raw = binascii.a2b_base64(audio)
            except binascii.Error:
                raise InvalidRequest(
                    "invalid_value", "Invalid 'audio'. Expected base64-encoded audio.", "audio"
                ) from None
            nbytes = len(raw)
            vad_events = self._vad.feed(raw)
        ms = nbytes / BYTES_PER_MS[fmt]
        self._buffer_ms += ms
        self._input_ms_total += ms
        for vad_event in vad_events:
            if vad_event.kind == "started":
                self._speech_started(vad_event.ms)
            else:
                self._speech_stopped(vad_event.ms)

    def _speech_started(self, audio_start_ms: int) -> None:
        self._user_item_id = new_id("item")
        self._emit(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": audio_start_ms,
                "item_id": self._user_item_id,
            }
        )
        td = self._turn_detection()
        if self._active is not None and td is not None and td.get("interrupt_response", True):
            self._finish(self._active, "cancelled", "turn_detected")

    def _speech_stopped(self, audio_end_ms: int) -> None:
        item_id = self._user_item_id or new_id("item")
        self._user_item_id = None
        self._emit(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": audio_end_ms,
                "item_id": item_id,
            }
        )
        self._commit(item_id)
        td = self._turn_detection()
        # A response already in progress is left alone (interrupt_response false).
        if td is not None and td.get("create_response", True) and self._active is None:
            self._start_response(None)

    def _commit(self, item_id: str) -> None:
        previous = self._last_item_id
        self._emit(
            {
                "type": "input_audio_buffer.committed",
                "item_id": item_id,
                "previous_item_id": previous,
            }
        )
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._add_item(item, previous)
        self._buffer_ms = 0.0

    def _add_item(self, item: JSON, previous_item_id: str | None, *, done: bool = True) -> None:
        """Put an item in the conversation: ``conversation.item.added`` (and ``.done``)."""
        if previous_item_id == self._last_item_id:
            self._last_item_id = item["id"]
        self._conversation[item["id"]] = item
        kinds = (
            ("conversation.item.added", "conversation.item.done")
            if done
            else ("conversation.item.added",)
        )
        for kind in kinds:
            self._emit(
                {"type": kind, "previous_item_id": previous_item_id, "item": copy.deepcopy(item)}
            )

    def _on_commit(self, event: JSON) -> None:
        if self._buffer_ms < MIN_COMMIT_MS:
            raise InvalidRequest(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {self._buffer_ms:.2f}ms "
                "of audio.",
            )
        item_id = self._user_item_id or new_id("item")
        self._user_item_id = None
        self._commit(item_id)

    def _on_clear(self, event: JSON) -> None:
        self._buffer_ms = 0.0
        self._emit({"type": "input_audio_buffer.cleared"})

    def _on_item_create(self, event: JSON) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            raise InvalidRequest(
                "invalid_type", "Invalid type for 'item': expected an object.", "item"
            )
        kind, role = item.get("type"), item.get("role")
        if kind == "message" and role in ("user", "system", "assistant"):
            if not isinstance(item.get("content"), list):
                raise InvalidRequest(
                    "missing_required_parameter", "Missing 'item.content'.", "item.content"
                )
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("output"), str):
                raise InvalidRequest(
                    "missing_required_parameter",
                    "function_call_output needs 'call_id' and 'output' strings.",
                    "item",
                )
        elif kind == "function_call":
            if not isinstance(item.get("name"), str) or not isinstance(item.get("arguments"), str):
                raise InvalidRequest(
                    "missing_required_parameter",
                    "function_call needs 'name' and 'arguments' strings.",
                    "item",
                )
        else:
            raise InvalidRequest("invalid_value", f"Invalid item type: {kind!r}.", "item.type")
        item_id = item.get("id") or new_id("item")
        if item_id in self._conversation:
            raise InvalidRequest(
                "invalid_value", f"Item with id {item_id} already exists.", "item.id"
            )
        stored = {
            **copy.deepcopy(item),
            "id": item_id,
            "object": "realtime.item",
            "status": "completed",
        }
        previous = event.get("previous_item_id", self._last_item_id)
        self._add_item(stored, previous)

    def _known_item_id(self, event: JSON) -> str:
        item_id = event.get("item_id")
        if not isinstance(item_id, str) or item_id not in self._conversation:
            raise InvalidRequest(
                "invalid_value", f"Item with item_id not found: {item_id}", "item_id"
            )
        return item_id

    def _on_item_delete(self, event: JSON) -> None:
        item_id = self._known_item_id(event)
        del self._conversation[item_id]
        if self._last_item_id == item_id:
            self._last_item_id = next(reversed(self._conversation), None)
        self._emit({"type": "conversation.item.deleted", "item_id": item_id})

    def _on_item_retrieve(self, event: JSON) -> None:
        item = self._conversation[self._known_item_id(event)]
        self._emit({"type": "conversation.item.retrieved", "item": copy.deepcopy(item)})

    def _on_item_truncate(self, event: JSON) -> None:
        self._record.truncations.append(event)
        index, end_ms = event.get("content_index"), event.get("audio_end_ms")
        if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
            raise InvalidRequest(
                "invalid_value", "'audio_end_ms' must be a non-negative integer.", "audio_end_ms"
            )
        if index != 0:
            raise InvalidRequest("invalid_value", "'content_index' must be 0.", "content_index")
        item_id = self._known_item_id(event)
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
        if self._active is not None and self._active.item is fake:
            self._active.audio_stopped = True  # the real server stops generating it too
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
        if self._active is not None:
            raise InvalidRequest(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self._active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        params = event.get("response")
        if params is not None and not isinstance(params, dict):
            raise InvalidRequest(
                "invalid_type", "Invalid type for 'response': expected an object.", "response"
            )
        # Per-response instructions/tools are accepted; the fake speaks its clips regardless.
        self._start_response(params)

    def _on_response_cancel(self, event: JSON) -> None:
        wanted = event.get("response_id")
        if self._active is None or (wanted is not None and wanted != self._active.id):
            raise InvalidRequest(
                "response_cancel_not_active", "Cancellation failed: no active response found"
            )
        self._finish(self._active, "cancelled", "client_cancelled")

    def _on_webrtc_only(self, event: JSON) -> None:
        raise InvalidRequest(
            "invalid_value",
            f"{event['type']} is only supported for WebRTC and SIP connections.",
            "type",
        )

    # -- responses --------------------------------------------------------------------------

    def _start_response(self, params: JSON | None) -> None:
        params = params or {}
        out = self._config["audio"]["output"]
        voice = out.get("voice", "marin")
        index = self._next_clip
        self._next_clip = (index + 1) % len(load_clips())
        response_id = new_id("resp")
        item = FakeItem(new_id("item"), response_id)
        response = _Response(
            id=response_id,
            item=item,
            chunks=clip_chunks(index, out["format"]["type"], self._opts.delta_ms),
            audio_format=dict(out["format"]),
            # RealtimeResponse.audio.output.voice takes a name only, not {"id": ...}.
            voice=voice["id"] if isinstance(voice, dict) else voice,
            max_output_tokens=check_max_output_tokens(
                params.get("max_output_tokens", self._config["max_output_tokens"]),
                "response.max_output_tokens",
            ),
            metadata=params.get("metadata"),
        )
        self._record.items[item.item_id] = item
        self._active = response
        rid = response_id
        self._emit({"type": "response.created", "response": self._response_json(response, [])})
        self._emit(
            {
                "type": "rate_limits.updated",
                "rate_limits": [
                    {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 0.06},
                    {"name": "tokens", "limit": 40000, "remaining": 36000, "reset_seconds": 6.0},
                ],
            }
        )
        in_progress = self._item_json(response, "in_progress", [])
        self._emit(
            {
                "type": "response.output_item.added",
                "response_id": rid,
                "output_index": 0,
                "item": in_progress,
            }
        )
        self._add_item(in_progress, self._last_item_id, done=False)
        self._emit(
            {
                "type": "response.content_part.added",
                **self._part_ids(response),
                "part": {"type": "audio", "transcript": ""},
            }
        )
        self._spawn(self._stream(response), f"fake-response-{rid}")

    async def _stream(self, response: _Response) -> None:
        """Pace the response's audio faster than real time, then complete it."""
        interval = self._opts.delta_ms / self._opts.speed / 1000
        try:
            await asyncio.sleep(self._opts.response_delay_ms / 1000)
            for chunk in response.chunks:
                if response.done or response.audio_stopped:
                    break
                self._send_delta(response, chunk)
                await self._flush()
                await asyncio.sleep(interval)
            if not response.done:
                self._finish(response, "completed", None)
                await self._flush()
        except ConnectionClosed:
            pass

    def _send_delta(self, response: _Response, chunk: Chunk) -> None:
        ids = self._part_ids(response)
        self._emit({"type": "response.output_audio.delta", **ids, "delta": chunk.audio_b64})
        response.item.deltas.append(chunk.audio_b64)
        response.item.audio_ms_sent += chunk.ms
        if chunk.text:
            self._emit(
                {"type": "response.output_audio_transcript.delta", **ids, "delta": chunk.text}
            )
            response.text_sent.append(chunk.text)

    def _finish(self, response: _Response, status: str, reason: str | None) -> None:
        """End a response: close its part and item, then ``response.done`` (always sent, B.3)."""
        if response.done:
            return
        response.done = True
        if self._active is response:
            self._active = None
        # "Truncating audio will delete the server-side text transcript" (B.4).
        transcript = "" if response.item.truncated_ms is not None else "".join(response.text_sent)
        ids = self._part_ids(response)
        self._emit({"type": "response.output_audio.done", **ids})
        self._emit(
            {"type": "response.output_audio_transcript.done", **ids, "transcript": transcript}
        )
        part = {"type": "audio", "transcript": transcript}
        self._emit({"type": "response.content_part.done", **ids, "part": part})
        item_status = "completed" if status == "completed" else "incomplete"
        content = [{"type": "output_audio", "transcript": transcript}]
        item = self._item_json(response, item_status, content)
        self._emit(
            {
                "type": "response.output_item.done",
                "response_id": response.id,
                "output_index": 0,
                "item": item,
            }
        )
        self._conversation[item["id"]] = item
        self._emit({"type": "conversation.item.done", "item": copy.deepcopy(item)})
        details = None if reason is None else {"type": status, "reason": reason}
        done = self._response_json(response, [copy.deepcopy(item)], status, details)
        self._emit({"type": "response.done", "response": done})

    @staticmethod
    def _part_ids(response: _Response) -> JSON:
        return {
            "response_id": response.id,
            "item_id": response.item.item_id,
            "output_index": 0,
            "content_index": 0,
        }

    @staticmethod
    def _item_json(response: _Response, status: str, content: list[JSON]) -> JSON:
        return {
            "id": response.item.item_id,
            "object": "realtime.item",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def _response_json(
        self,
        response: _Response,
        output: list[JSON],
        status: str = "in_progress",
        details: JSON | None = None,
    ) -> JSON:
        usage = None if status == "in_progress" else self._usage(response)
        return {
            "object": "realtime.response",
            "id": response.id,
            "status": status,
            "status_details": details,
            "output": output,
            "conversation_id": self._conversation_id,
            "output_modalities": ["audio"],
            "max_output_tokens": response.max_output_tokens,
            "audio": {"output": {"format": dict(response.audio_format), "voice": response.voice}},
            "usage": usage,
            "metadata": response.metadata,
        }

    def _usage(self, response: _Response) -> JSON:
        # Rough token arithmetic: ~10 input audio tokens/s, ~20 output audio tokens/s.
        in_audio = int(self._input_ms_total / 100)
        in_text = len(str(self._config.get("instructions") or "")) // 4
        out_audio = int(response.item.audio_ms_sent / 50)
        out_text = len("".join(response.text_sent).split())
        return {
            "total_tokens": in_audio + in_text + out_audio + out_text,
            "input_tokens": in_audio + in_text,
            "output_tokens": out_audio + out_text,
            "input_token_details": {
                "text_tokens": in_text,
                "audio_tokens": in_audio,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
        }


_Handler = Callable[[FakeConnection, JSON], None]

# Client event type -> handler (the GA RealtimeClientEvent union).
_HANDLERS: dict[str, _Handler] = {
    "session.update": FakeConnection._on_session_update,
    "input_audio_buffer.append": FakeConnection._on_append,
    "input_audio_buffer.commit": FakeConnection._on_commit,
    "input_audio_buffer.clear": FakeConnection._on_clear,
    "conversation.item.create": FakeConnection._on_item_create,
    "conversation.item.truncate": FakeConnection._on_item_truncate,
    "conversation.item.delete": FakeConnection._on_item_delete,
    "conversation.item.retrieve": FakeConnection._on_item_retrieve,
    "response.create": FakeConnection._on_response_create,
    "response.cancel": FakeConnection._on_response_cancel,
    "output_audio_buffer.clear": FakeConnection._on_webrtc_only,
}
