"""Continuing a call in a fresh session: when the conversation is at a pause, and what the
fresh session is told so it carries on rather than starts over.

A planned renewal (``SESSION_LIMIT_ACTION=renew``) waits for a pause, so no answer is cut
and no caller turn is lost between the sessions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from voicebridge.core.transcript import Transcript

__all__ = ["PauseWatch", "cut_answer", "seed_items"]

# A caller transcript awaited longer than this is taken as never coming (it failed).
TRANSCRIPT_WAIT_MS = 5000.0


class PauseWatch:
    """The caller's side of a pause::

        SILENT --speech_started--> SPEAKING --speech_stopped--> AWAITING
        AWAITING --response.created--> SILENT

    In AWAITING the caller's turn is committed but not yet answered: a session replaced then
    would drop the turn. With input transcription on, a pause also waits (a few seconds at
    most) for the caller's transcript, so the fresh session is seeded with the caller's words.
    """

    def __init__(self, transcribes: bool) -> None:
        self.transcribes = transcribes
        self.speaking = False
        self.awaiting = False
        self._transcripts: dict[str, float] = {}  # caller item -> when its turn ended

    def speech_started(self) -> None:
        self.speaking = True

    def speech_stopped(self, item_id: str, now: float) -> None:
        self.speaking = False
        self.awaiting = True
        if self.transcribes:
            self._transcripts[item_id] = now

    def answered(self) -> None:
        self.awaiting = False

    def transcribed(self, item_id: str) -> None:
        self._transcripts.pop(item_id, None)

    def quiet(self, now: float) -> bool:
        """The caller is silent and owed nothing: no turn unanswered, no transcript due."""
        for item_id, since in list(self._transcripts.items()):
            if now - since > TRANSCRIPT_WAIT_MS:
                del self._transcripts[item_id]
        return not (self.speaking or self.awaiting or self._transcripts)


class _Written(Protocol):
    def written_ms(self, item_id: str) -> float: ...


def cut_answer(
    transcript: Transcript, items: Iterable[tuple[str, float]], playback: _Written
) -> bool:
    """An answer cut by its session's end keeps, as text, the share of its audio written to
    Twilio (all of it plays; the rest never will). ``items``: (item id, ms received)."""
    for item_id, received in items:
        transcript.cut_short(item_id, playback.written_ms(item_id) / received if received else 0)
    return True


def seed_items(transcript: Transcript, note: str) -> list[dict[str, Any]]:
    """The call so far (both sides) as items for a fresh session, closed by ``note``: the
    call goes on, no new greeting."""
    items = transcript.as_items()
    if items:
        content = [{"type": "input_text", "text": note}]
        items.append({"type": "message", "role": "system", "content": content})
    return items
