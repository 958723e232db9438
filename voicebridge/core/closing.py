"""Ending a call deliberately (drain, session cap, a tool's ending): a last line, then the end.

One response at a time holds here too: a line asked for while a response is active waits for
that response to be cancelled and done.
"""

from __future__ import annotations

import enum

__all__ = ["Closing", "ClosingState"]


class ClosingState(enum.Enum):
    OPEN = "open"  # not closing
    CANCELLING = "cancelling"  # the active response is being cancelled; the line follows
    ASKED = "asked"  # response.create for the line sent; its response not yet created
    SAYING = "saying"  # the line's response is known
    SPOKEN = "spoken"  # the line's response is done: only its playback is awaited
    # No line to wait for (none given, or no session to say it). Even so, the first
    # response.done sends the line's response.create (a bare one when no line was given);
    # audio it brings before playback ends delays the end.
    UNSAID = "unsaid"


class Closing:
    """The closing sub-machine::

    OPEN --close(), nothing to say it--> UNSAID --response.done / ask--> SPOKEN
    OPEN --close(), a response active--> CANCELLING --response.done / ask--> ASKED
    OPEN --close()--> ASKED --response.created--> SAYING --its response.done--> SPOKEN
    """

    def __init__(self) -> None:
        self.state = ClosingState.OPEN
        self.reason: str | None = None  # why, once asked to close
        self.line = ""  # instructions for the last line
        self._line_response: str | None = None

    @property
    def spoken(self) -> bool:
        """Nothing more will be said: the end waits only for playback."""
        return self.state in (ClosingState.SPOKEN, ClosingState.UNSAID)

    def close(
        self, reason: str, instructions: str | None, *, can_speak: bool, busy: bool
    ) -> ClosingState:
        """Start closing (once); the new state says what to send.

        ASKED: ask for the line now. CANCELLING: cancel the active response first.

        Args:
            instructions: the last line; None when it was already said.
            can_speak: a confirmed session exists to say it.
            busy: a response is in progress.
        """
        if self.state is not ClosingState.OPEN:
            raise RuntimeError(f"expected an open call, got closing state {self.state.name}")
        self.reason = reason
        self.line = instructions or ""
        if instructions is None or not can_speak:
            self.state = ClosingState.UNSAID
        elif busy:
            self.state = ClosingState.CANCELLING
        else:
            self.state = ClosingState.ASKED
        return self.state

    def response_created(self, response_id: str) -> None:
        if self.state is ClosingState.ASKED:
            self._line_response = response_id
            self.state = ClosingState.SAYING

    def response_done(self, response_id: str) -> bool:
        """A response ended while closing; True to ask for the line now."""
        if self.state is ClosingState.CANCELLING:
            self.state = ClosingState.ASKED
            return True
        if self.state is ClosingState.UNSAID:
            self.state = ClosingState.SPOKEN
            return True
        if self.state is ClosingState.SAYING and response_id == self._line_response:
            self.state = ClosingState.SPOKEN
        return False
