"""What was said in a call, as text: for a fresh session's context and for transcripts.

A turn takes its place when it begins, not when its text is final: the caller's when the
server commits it (its transcript comes later, asynchronously), the model's at its first
transcript delta. So a fresh session is seeded in the order things were said. The model's
text builds up from its deltas; an answer cut by a lost session keeps only the share the
caller heard (:meth:`Transcript.cut_short`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
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
    cut_short: bool = False  # the session ended mid-answer: the text is what the caller heard
    final: bool = False  # the server's finished transcript (not deltas) is in ``text``

    def as_record(self) -> dict[str, Any]:
        return {
            "t_ms": round(self.at_ms),
            "role": self.role,
            "text": self.text,
            "item_id": self.item_id,
            "interrupted": self.interrupted or self.cut_short,
        }


class Transcript:
    """The last ``max_turns`` turns, in the order they were spoken."""

    def __init__(self, max_turns: int = 1000) -> None:
        self.turns: deque[Turn] = deque(maxlen=max_turns)

    def _find(self, item_id: str) -> Turn | None:
        for turn in reversed(self.turns):  # the turn sought is nearly always the newest
            if turn.item_id == item_id:
                return turn
        return None

    def expect(self, role: Role, item_id: str, at_ms: float) -> None:
        """A turn began: keep its place for the text to come."""
        if self._find(item_id) is None:
            self.turns.append(Turn(role, "", item_id, at_ms))

    def add(self, role: Role, text: str, item_id: str, at_ms: float = 0.0) -> Turn | None:
        """A finished transcript, into the turn's place (or a new one)."""
        text = text.strip()
        turn = self._find(item_id)
        if not text:
            return None  # a truncated item's transcript is emptied: its deltas stay
        if turn is None:
            turn = Turn(role, text, item_id, at_ms)
            self.turns.append(turn)
        turn.text, turn.final = text, True
        return turn

    def partial(self, item_id: str, delta: str, at_ms: float) -> None:
        """A transcript delta of the model's answer."""
        turn = self._find(item_id)
        if turn is None:
            turn = Turn("assistant", "", item_id, at_ms)
            self.turns.append(turn)
        if not turn.final:
            turn.text += delta

    def mark_interrupted(self, item_id: str) -> None:
        for turn in self.turns:
            if turn.item_id == item_id:
                turn.interrupted = True

    def cut_short(self, item_id: str, heard: float) -> None:
        """The session ended during this answer: keep the share ``heard`` (0-1) of its text,
        to the last whole word."""
        turn = self._find(item_id)
        if turn is None or turn.final:
            return
        keep = turn.text[: int(len(turn.text) * max(0.0, min(1.0, heard)))]
        if keep != turn.text:
            keep = keep.rsplit(" ", 1)[0] if " " in keep else ""
        turn.text, turn.cut_short = keep.strip(), True

    def spoken(self) -> Iterator[Turn]:
        """The turns with text (a caller's turn without a transcript has none)."""
        return (turn for turn in self.turns if turn.text)

    def as_items(self, last: int = 40) -> list[dict[str, Any]]:
        """``conversation.item.create`` items re-seeding a new session with the call so far."""
        items: list[dict[str, Any]] = []
        for turn in list(self.spoken())[-last:]:
            if turn.role == "caller":
                content = [{"type": "input_text", "text": turn.text}]
                items.append({"type": "message", "role": "user", "content": content})
            else:
                text = turn.text
                if turn.cut_short:
                    text += " [cut off here: the caller heard only this much]"
                elif turn.interrupted:
                    text += " [interrupted by the caller]"
                content = [{"type": "output_text", "text": text}]
                items.append({"type": "message", "role": "assistant", "content": content})
        return items
