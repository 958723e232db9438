"""The fake Realtime server's conversation: its items, in order, and the item events (no I/O)."""

from __future__ import annotations

import copy

from .response import Emit
from .session import JSON, InvalidRequest, check_client_item, new_id

__all__ = ["Conversation"]


class Conversation:
    """Items by id in conversation order; emits ``conversation.item.*`` through ``emit``."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self.id = new_id("conv")
        self._items: dict[str, JSON] = {}  # item id -> latest item JSON
        self.last_item_id: str | None = None

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def set(self, item: JSON) -> None:
        """Record an item's latest state without emitting (the response emits its own)."""
        if item["id"] not in self._items:
            self.last_item_id = item["id"]
        self._items[item["id"]] = item

    def add(self, item: JSON, previous_item_id: str | None) -> None:
        """``conversation.item.added`` then ``.done`` for a complete item."""
        if previous_item_id == self.last_item_id:
            self.last_item_id = item["id"]
        self._items[item["id"]] = item
        for kind in ("conversation.item.added", "conversation.item.done"):
            self._emit(
                {"type": kind, "previous_item_id": previous_item_id, "item": copy.deepcopy(item)}
            )

    def commit_audio(self, item_id: str) -> None:
        """The input buffer became a user audio item (server VAD or a manual commit)."""
        previous = self.last_item_id
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
            # The transcript, if input transcription is on, arrives later in its own events.
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self.add(item, previous)

    def set_transcript(self, item_id: str, transcript: str) -> None:
        """Input transcription finished: later retrieves show it (no event of its own)."""
        item = self._items.get(item_id)
        if item is not None:
            item["content"] = [{"type": "input_audio", "transcript": transcript}]

    def known(self, event: JSON) -> str:
        """The event's ``item_id``, which must name an item of this conversation."""
        item_id = event.get("item_id")
        if not isinstance(item_id, str) or item_id not in self._items:
            raise InvalidRequest(
                "invalid_value", f"Item with item_id not found: {item_id}", "item_id"
            )
        return item_id

    def on_create(self, event: JSON) -> JSON:
        """Add a client's item (``conversation.item.create``); return it as added."""
        item = check_client_item(event.get("item"))
        item.setdefault("id", new_id("item"))
        if item["id"] in self._items:
            raise InvalidRequest(
                "invalid_value", f"Item with id {item['id']} already exists.", "item.id"
            )
        self.add(item, event.get("previous_item_id", self.last_item_id))
        return item

    def on_delete(self, event: JSON) -> None:
        item_id = self.known(event)
        del self._items[item_id]
        if self.last_item_id == item_id:
            self.last_item_id = next(reversed(self._items), None)
        self._emit({"type": "conversation.item.deleted", "item_id": item_id})

    def on_retrieve(self, event: JSON) -> None:
        item = self._items[self.known(event)]
        self._emit({"type": "conversation.item.retrieved", "item": copy.deepcopy(item)})
