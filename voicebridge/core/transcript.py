"""What was said in a call, as text: for a fresh session's context and for transcripts."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Transcript", "Turn"]

Role = Literal["caller", "assistant"]


@dataclass(slots=True)
class Turn:
    role: Role
    text: str
    item_id: str
    at_ms: float = 0.0  # since the call started
    interrupted: bool = False  # the caller talked over it; the text is what was said, not heard

    def as_record(self) -> dict[str, Any]:
        return {
            "t_ms": round(self.at_ms),
            "role": self.role,
            "text": self.text,
            "item_id": self.item_id,
            "interrupted": self.interrupted,
        }


class Transcript:
    """The last ``max_turns`` turns, in the order they were spoken."""

    def __init__(self, max_turns: int = 1000) -> None:
        self.turns: deque[Turn] = deque(maxlen=max_turns)

    def add(self, role: Role, text: str, item_id: str, at_ms: float = 0.0) -> Turn | None:
        text = text.strip()
        if not text:
            return None
        turn = Turn(role, text, item_id, at_ms)
        self.turns.append(turn)
        return turn

    def mark_interrupted(self, item_id: str) -> None:
        for turn in self.turns:
            if turn.item_id == item_id:
                turn.interrupted = True

    def as_items(self, last: int = 40) -> list[dict[str, Any]]:
        """``conversation.item.create`` items re-seeding a new session with the call so far."""
        items: list[dict[str, Any]] = []
        for turn in list(self.turns)[-last:]:
            if turn.role == "caller":
                content = [{"type": "input_text", "text": turn.text}]
                items.append({"type": "message", "role": "user", "content": content})
            else:
                text = turn.text + (" [interrupted by the caller]" if turn.interrupted else "")
                content = [{"type": "output_text", "text": text}]
                items.append({"type": "message", "role": "assistant", "content": content})
        return items
