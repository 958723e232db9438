"""The upstream session as the call sees it: confirmed or not, and what to say when it is.

The ``session_*`` readers take the ``session`` of a ``session.updated`` (the "full,
effective configuration", PROTOCOLS.md B.2); ``realtime`` re-exports them.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "OnConfirm",
    "SessionPhase",
    "SessionState",
    "session_audio_formats",
    "session_creates_response",
    "session_interrupts_response",
]


class SessionPhase(enum.Enum):
    OPENING = "opening"  # a fresh session, not yet confirmed by session.updated
    READY = "ready"  # confirmed: caller input may go to the model
    RESUMING = "resuming"  # replaces a confirmed session that was lost


class OnConfirm(enum.Enum):
    NOTHING = "nothing"
    GREET = "greet"  # the model speaks first (once per call)
    RESUME = "resume"  # re-seed the call so far as text, then a word to the caller
    SEED = "seed"  # re-seed the call so far as text, and say nothing (a renewal at a pause)


class SessionState:
    """The session sub-machine::

        OPENING  --session.updated--> READY   (GREET the first time, if the call greets;
                                               else SEED if it replaced another)
        RESUMING --session.updated--> READY   (RESUME)
        READY    --new session, announced--> RESUMING
        RESUMING --new session, announced--> RESUMING
        any      --new session, otherwise--> OPENING

    Only a confirmed session was heard from: a session lost before ``session.updated`` is
    simply started afresh (greeting included, if not yet given), with nothing to announce.
    A replacement lost before its confirmation still owes the caller the resume.
    """

    def __init__(self, *, greets: bool) -> None:
        self.phase = SessionPhase.OPENING
        self.interrupt_response = True  # replaced by each session.updated echo
        self.create_response = True  # likewise: False, and the bridge answers each turn
        self._greeting_due = greets
        self._replacement = False  # the next session takes over from another

    @property
    def ready(self) -> bool:
        return self.phase is SessionPhase.READY

    def confirmed(self, interrupt_response: bool, create_response: bool = True) -> OnConfirm:
        """``session.updated`` with the formats asked for."""
        self.interrupt_response = interrupt_response
        self.create_response = create_response
        was, self.phase = self.phase, SessionPhase.READY
        replacement, self._replacement = self._replacement, False
        if was is SessionPhase.RESUMING:
            return OnConfirm.RESUME
        if was is SessionPhase.OPENING and self._greeting_due:
            self._greeting_due = False
            return OnConfirm.GREET
        return OnConfirm.SEED if replacement else OnConfirm.NOTHING

    def replaced(self, *, announce: bool) -> None:
        """A fresh session is about to be opened in place of the current one."""
        resume = announce and self.phase in (SessionPhase.READY, SessionPhase.RESUMING)
        self.phase = SessionPhase.RESUMING if resume else SessionPhase.OPENING
        self._replacement = True


def session_audio_formats(session: dict[str, Any]) -> tuple[str | None, str | None]:
    """The (input, output) audio format types a session reports."""

    def fmt(direction: str) -> str | None:
        audio = session.get("audio")
        if not isinstance(audio, dict):
            return None
        side = audio.get(direction)
        if not isinstance(side, dict) or not isinstance(side.get("format"), dict):
            return None
        value = side["format"].get("type")
        return value if isinstance(value, str) else None

    return fmt("input"), fmt("output")


def _turn_detection(session: dict[str, Any]) -> dict[str, Any] | None:
    audio = session.get("audio")
    side = audio.get("input") if isinstance(audio, dict) else None
    td = side.get("turn_detection") if isinstance(side, dict) else None
    return td if isinstance(td, dict) else None


def session_interrupts_response(session: dict[str, Any]) -> bool:
    """Whether the server cancels a response itself when the caller starts speaking."""
    td = _turn_detection(session)
    # The API's default for both server_vad and semantic_vad is true.
    return td is not None and bool(td.get("interrupt_response", True))


def session_creates_response(session: dict[str, Any]) -> bool:
    """Whether the server answers each caller turn itself (VAD on, ``create_response``).

    With VAD off nobody commits a turn, so the bridge has none to answer either.
    """
    td = _turn_detection(session)
    return td is None or bool(td.get("create_response", True))
