"""The upstream session as the call sees it: confirmed or not, and what to say when it is."""

from __future__ import annotations

import enum

__all__ = ["OnConfirm", "SessionPhase", "SessionState"]


class SessionPhase(enum.Enum):
    OPENING = "opening"  # a fresh session, not yet confirmed by session.updated
    READY = "ready"  # confirmed: caller input may go to the model
    RESUMING = "resuming"  # replaces a confirmed session that was lost


class OnConfirm(enum.Enum):
    NOTHING = "nothing"
    GREET = "greet"  # the model speaks first (once per call)
    RESUME = "resume"  # re-seed the call so far as text, then a word to the caller


class SessionState:
    """The session sub-machine::

        OPENING  --session.updated--> READY   (GREET the first time, if the call greets)
        RESUMING --session.updated--> READY   (RESUME)
        READY    --new session, announced--> RESUMING
        any      --new session, otherwise--> OPENING

    Only a confirmed session was heard from: a session lost before ``session.updated`` is
    simply started afresh (greeting included, if not yet given), with nothing to announce.
    """

    def __init__(self, *, greets: bool) -> None:
        self.phase = SessionPhase.OPENING
        self.interrupt_response = True  # replaced by each session.updated echo
        self._greeting_due = greets

    @property
    def ready(self) -> bool:
        return self.phase is SessionPhase.READY

    def confirmed(self, interrupt_response: bool) -> OnConfirm:
        """``session.updated`` with the formats asked for."""
        self.interrupt_response = interrupt_response
        was, self.phase = self.phase, SessionPhase.READY
        if was is SessionPhase.RESUMING:
            return OnConfirm.RESUME
        if was is SessionPhase.OPENING and self._greeting_due:
            self._greeting_due = False
            return OnConfirm.GREET
        return OnConfirm.NOTHING

    def replaced(self, *, announce: bool) -> None:
        """A fresh session is about to be opened in place of the current one."""
        resume = announce and self.phase is SessionPhase.READY
        self.phase = SessionPhase.RESUMING if resume else SessionPhase.OPENING
