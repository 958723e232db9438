"""Ending a call deliberately (drain, session cap, a tool's ending): a last line, then the end.

One response at a time holds here too: a line asked for while a response is active waits for
that response to be cancelled and done. The line's response is told from any other (one
the server's VAD creates, say) by the metadata its ``response.create`` carried.
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
    UNSAID = "unsaid"  # no line to wait for (already said, or no session to say it)


class Closing:
    """The closing sub-machine::

    OPEN --close(), nothing to say it--> UNSAID   (response.done changes nothing)
    OPEN --close(), a response active--> CANCELLING --response.done / ask--> ASKED
    OPEN --close()--> ASKED --the line's response.created--> SAYING --its response.done--> SPOKEN
    any --the caller speaks, the closing yields to them--> OPEN

    A closing that *yields* (the model's own goodbye) is called off when the caller speaks
    before it has ended: the conversation goes on. One imposed on the call (a drain, the
    session limit) does not yield: the caller's speech cuts the line, and the call still ends.
    """

    def __init__(self) -> None:
        self.state = ClosingState.OPEN
        self.reason: str | None = None  # why, once asked to close
        self.line = ""  # instructions for the last line
        self.yields = False
        self._line_request: str | None = None  # metadata tag of the line's response.create
        self._line_response: str | None = None
        # The line's request of a closing called off before its response was created.
        self._abandoned: str | None = None

    @property
    def spoken(self) -> bool:
        """Nothing more will be said: the end waits only for playback."""
        return self.state in (ClosingState.SPOKEN, ClosingState.UNSAID)

    def close(
        self,
        reason: str,
        instructions: str | None,
        *,
        can_speak: bool,
        busy: bool,
        yields: bool = False,
    ) -> ClosingState:
        """Start closing (once); the new state says what to send.

        ASKED: ask for the line now (then :meth:`asked`). CANCELLING: cancel the active
        response first.

        Args:
            instructions: the last line; None when it was already said.
            can_speak: a confirmed session exists to say it.
            busy: a response is in progress.
            yields: the caller's speech calls the closing off.
        """
        if self.state is not ClosingState.OPEN:
            raise RuntimeError(f"expected an open call, got closing state {self.state.name}")
        self.reason = reason
        self.line = instructions or ""
        self.yields = yields
        if instructions is None or not can_speak:
            self.state = ClosingState.UNSAID
        elif busy:
            self.state = ClosingState.CANCELLING
        else:
            self.state = ClosingState.ASKED
        return self.state

    def asked(self, request: str) -> None:
        """The line's ``response.create`` went out, tagged ``request`` in its metadata."""
        self._line_request = request

    def response_created(self, response_id: str, request: str | None) -> bool:
        """A response was created for ``request`` (None: not ours); True to cut it at once.

        Only the line's own request makes the line's response: a response the server
        created meanwhile is not taken for it.
        """
        if request is not None and request == self._abandoned:
            self._abandoned = None
            return True  # a line asked for a closing the caller has since called off
        if self.state is ClosingState.ASKED and request == self._line_request:
            self._line_response = response_id
            self.state = ClosingState.SAYING
        return False

    def response_done(self, response_id: str) -> bool:
        """A response ended while closing; True to ask for the line now."""
        if self.state is ClosingState.CANCELLING:
            self.state = ClosingState.ASKED
            return True
        if self.state is ClosingState.SAYING and response_id == self._line_response:
            self.state = ClosingState.SPOKEN
        return False  # UNSAID included: there is no line to ask for

    def caller_spoke(self) -> bool:
        """The caller started speaking; True if that called the closing off (back to OPEN)."""
        if self.state is ClosingState.OPEN or not self.yields:
            return False
        if self.state is ClosingState.ASKED:
            self._abandoned = self._line_request
        self.state = ClosingState.OPEN
        self.reason, self.line, self.yields = None, "", False
        self._line_request = self._line_response = None
        return True
