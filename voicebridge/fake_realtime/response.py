"""One assistant response of the fake Realtime server: its state and the GA events it emits.

Every method is synchronous and emits through a callback, so a response's state and its
events change together; the responder owns the pacing. Shapes follow
``openai.types.realtime`` (``RealtimeResponse``, the assistant message and function_call
items, PROTOCOLS.md B.3). A response is one of three kinds: ``audio`` (one assistant audio
item speaking a clip), ``function_call`` (one function_call item, no audio) or ``failed``
(``response.created`` then ``response.done`` with no output at all).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .clips import Chunk
from .session import JSON, FakeItem

__all__ = ["Emit", "FakeResponse", "Kind", "Status"]

Emit = Callable[[JSON], JSON]
Status = str  # "completed" | "cancelled" | "incomplete" | "failed"
Kind = Literal["audio", "function_call", "failed"]

_RATE_LIMITS: list[JSON] = [
    {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 0.06},
    {"name": "tokens", "limit": 40000, "remaining": 36000, "reset_seconds": 6.0},
]


@dataclass(eq=False)
class FakeResponse:
    """A response: one clip into one assistant audio item, one function call, or a failure."""

    emit: Emit
    id: str
    item: FakeItem
    chunks: tuple[Chunk, ...]
    conversation_id: str
    audio_format: JSON
    voice: str
    max_output_tokens: int | str
    metadata: Any = None
    kind: Kind = "audio"
    call: tuple[str, str] = ("", "")  # function_call: (name, JSON arguments)
    call_id: str = ""
    text_sent: list[str] = field(default_factory=list)
    arguments_sent: list[str] = field(default_factory=list)
    audio_stopped: bool = False  # its item was truncated: no more deltas
    done: bool = False

    def open(self, previous_item_id: str | None) -> JSON | None:
        """Emit everything up to the first delta; return the in-progress item, if any."""
        self.emit({"type": "response.created", "response": self._response_json([])})
        if self.kind == "failed":
            return None  # it fails before producing anything
        # "Emitted at the beginning of a Response" (B.3).
        self.emit({"type": "rate_limits.updated", "rate_limits": copy.deepcopy(_RATE_LIMITS)})
        item = self._item_json("in_progress", [])
        self.emit(
            {
                "type": "response.output_item.added",
                "response_id": self.id,
                "output_index": 0,
                "item": item,
            }
        )
        self.emit(
            {
                "type": "conversation.item.added",
                "previous_item_id": previous_item_id,
                "item": copy.deepcopy(item),
            }
        )
        if self.kind == "function_call":
            return item
        self.emit(
            {
                "type": "response.content_part.added",
                **self._part_ids(),
                "part": {"type": "audio", "transcript": ""},
            }
        )
        return item

    def send_delta(self, chunk: Chunk) -> None:
        ids = self._part_ids()
        self.emit({"type": "response.output_audio.delta", **ids, "delta": chunk.audio_b64})
        self.item.deltas.append(chunk.audio_b64)
        self.item.audio_ms_sent += chunk.ms
        if chunk.text:
            self.emit(
                {"type": "response.output_audio_transcript.delta", **ids, "delta": chunk.text}
            )
            self.text_sent.append(chunk.text)

    def argument_pieces(self) -> list[str]:
        """The function call's arguments cut into (up to) three deltas."""
        arguments = self.call[1]
        step = max(1, -(-len(arguments) // 3))
        return [arguments[i : i + step] for i in range(0, len(arguments), step)]

    def send_arguments(self, piece: str) -> None:
        self.emit(
            {
                "type": "response.function_call_arguments.delta",
                **self._call_ids(),
                "delta": piece,
            }
        )
        self.arguments_sent.append(piece)

    def close(self, status: Status, details: JSON | None, usage: JSON) -> JSON | None:
        """Close the item (if any), then ``response.done``; return the final item."""
        self.done = True
        item: JSON | None = None
        if self.kind == "audio":
            item = self._close_audio(status)
        elif self.kind == "function_call":
            item = self._close_call(status)
        output = [] if item is None else [copy.deepcopy(item)]
        response = self._response_json(output, status, details, usage)
        self.emit({"type": "response.done", "response": response})
        return item

    def _close_call(self, status: Status) -> JSON:
        arguments = "".join(self.arguments_sent)
        # arguments.done is "also emitted when a Response is interrupted… or cancelled".
        self.emit(
            {
                "type": "response.function_call_arguments.done",
                **self._call_ids(),
                "name": self.call[0],
                "arguments": arguments,
            }
        )
        item = self._item_json("completed" if status == "completed" else "incomplete", [])
        self._item_done(item)
        return item

    def _close_audio(self, status: Status) -> JSON:
        # "Truncating audio will delete the server-side text transcript" (B.4).
        transcript = "" if self.item.truncated_ms is not None else "".join(self.text_sent)
        ids = self._part_ids()
        # output_audio.done is "also emitted when a Response is interrupted… or cancelled".
        self.emit({"type": "response.output_audio.done", **ids})
        self.emit(
            {"type": "response.output_audio_transcript.done", **ids, "transcript": transcript}
        )
        self.emit(
            {
                "type": "response.content_part.done",
                **ids,
                "part": {"type": "audio", "transcript": transcript},
            }
        )
        content = [{"type": "output_audio", "transcript": transcript}]
        item = self._item_json("completed" if status == "completed" else "incomplete", content)
        self._item_done(item)
        return item

    def _item_done(self, item: JSON) -> None:
        self.emit(
            {
                "type": "response.output_item.done",
                "response_id": self.id,
                "output_index": 0,
                "item": item,
            }
        )
        self.emit({"type": "conversation.item.done", "item": copy.deepcopy(item)})

    def usage(self, input_ms: float, instructions: str) -> JSON:
        """A plausible ``usage``: ~10 input audio tokens/s, ~20 output audio tokens/s."""
        in_audio = int(input_ms / 100)
        in_text = len(instructions) // 4
        out_audio = int(self.item.audio_ms_sent / 50)
        out_text = len("".join(self.text_sent).split()) + len("".join(self.arguments_sent)) // 4
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

    def _part_ids(self) -> JSON:
        return {
            "response_id": self.id,
            "item_id": self.item.item_id,
            "output_index": 0,
            "content_index": 0,
        }

    def _call_ids(self) -> JSON:
        return {
            "response_id": self.id,
            "item_id": self.item.item_id,
            "output_index": 0,
            "call_id": self.call_id,
        }

    def _item_json(self, status: str, content: list[JSON]) -> JSON:
        if self.kind == "function_call":
            return {
                "id": self.item.item_id,
                "object": "realtime.item",
                "type": "function_call",
                "status": status,
                "name": self.call[0],
                "call_id": self.call_id,
                "arguments": "".join(self.arguments_sent),
            }
        return {
            "id": self.item.item_id,
            "object": "realtime.item",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def _response_json(
        self,
        output: list[JSON],
        status: str = "in_progress",
        details: JSON | None = None,
        usage: JSON | None = None,
    ) -> JSON:
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": details,
            "output": output,
            "conversation_id": self.conversation_id,
            "output_modalities": ["audio"],
            "max_output_tokens": self.max_output_tokens,
            "audio": {"output": {"format": dict(self.audio_format), "voice": self.voice}},
            "usage": usage,
            "metadata": self.metadata,
        }
