"""The model's responses: one at a time, which were cut, failures retried, tools awaited.

Each class holds one sub-machine's state and says what to do;
:class:`~voicebridge.core.conversation.Conversation` builds the events.
"""

from __future__ import annotations

import enum
from collections import deque

__all__ = ["AfterFailure", "FailureLadder", "Requests", "Responses", "ToolCalls"]

RECENT = 32  # response ids remembered per kind: enough to outlive any late delta


class Responses:
    """At most one response in progress (PROTOCOLS.md C.4), and what became of recent ones.

    ``IDLE --response.created--> ACTIVE --response.done--> IDLE``. A ``response.create``
    asked for while ACTIVE is queued (never sent over an active response) and sent once the
    active one is done.
    """

    def __init__(self) -> None:
        self.active: str | None = None  # the response in progress
        self._queued = False  # a response.create waits for the active one to end
        self._done: deque[str] = deque(maxlen=RECENT)
        self._spoke: deque[str] = deque(maxlen=RECENT)  # responses that produced audio
        self._interrupted: deque[str] = deque(maxlen=RECENT)  # their late audio is dropped

    def request(self) -> bool:
        """Ask for a response: True to send ``response.create`` now, False if it was queued."""
        if self.active is not None:
            self._queued = True
            return False
        self._queued = False
        return True

    def created(self, response_id: str) -> None:
        self.active = response_id

    def done(self, response_id: str) -> bool:
        """``response.done``; True if a queued ``response.create`` may be sent now."""
        if self.active == response_id:
            self.active = None
        self._done.append(response_id)
        return self._queued and self.active is None

    def is_done(self, response_id: str) -> bool:
        return response_id in self._done

    def spoke(self, response_id: str) -> None:
        """The response produced audio (so a tool it called follows something said)."""
        if not self._spoke or self._spoke[-1] != response_id:
            self._spoke.append(response_id)

    def has_spoken(self, response_id: str) -> bool:
        return response_id in self._spoke

    def interrupt(self, response_id: str) -> None:
        """The response was cut (barge-in, closing, lost session): drop its late audio."""
        self._interrupted.append(response_id)

    def is_interrupted(self, response_id: str) -> bool:
        return response_id in self._interrupted

    def forget_active(self) -> None:
        """The session that ran the active response is gone: cut it, nothing is active."""
        if self.active is not None:
            self._interrupted.append(self.active)
        self.active = None


class Requests:
    """The bridge's own ``response.create`` requests, each tagged in its ``metadata``.

    The response carries the metadata back (``response.created``), so a response is known
    to answer a given request, and with which instructions: a failed one is asked for
    again with the same. A response without our tag was created by the server (VAD).
    """

    KEY = "voicebridge"  # the metadata key; its value is the request's event id

    def __init__(self) -> None:
        self._asked: dict[str, str | None] = {}  # tag -> instructions, awaiting a response
        self._made: dict[str, str | None] = {}  # response id -> instructions

    def asked(self, tag: str, instructions: str | None) -> dict[str, str]:
        """Remember a request; returns the metadata to send with it."""
        _bounded_put(self._asked, tag, instructions)
        return {self.KEY: tag}

    def created(self, response_id: str, metadata: dict[str, str] | None) -> str | None:
        """The tag of the request this response answers, or None if it is not ours."""
        tag = (metadata or {}).get(self.KEY)
        if tag is None or tag not in self._asked:
            return None
        _bounded_put(self._made, response_id, self._asked.pop(tag))
        return tag

    def instructions(self, response_id: str) -> str | None:
        """The instructions the response was asked with (None: none, or not ours); forgets it."""
        return self._made.pop(response_id, None)


def _bounded_put(d: dict[str, str | None], key: str, value: str | None) -> None:
    # Requests whose response never came (a lost session) must not pile up.
    d[key] = value
    while len(d) > RECENT:
        del d[next(iter(d))]


class AfterFailure(enum.Enum):
    RETRY = "retry"  # ask again, as before
    APOLOGISE = "apologise"  # ask for a short apology instead
    GIVE_UP = "give_up"  # end the call through the failure path


class FailureLadder:
    """Failed responses in a row: ``0 → RETRY → APOLOGISE → GIVE_UP``; a completed one resets."""

    def __init__(self) -> None:
        self._in_a_row = 0

    def failed(self) -> AfterFailure:
        self._in_a_row += 1
        if self._in_a_row == 1:
            return AfterFailure.RETRY
        if self._in_a_row == 2:
            return AfterFailure.APOLOGISE
        return AfterFailure.GIVE_UP

    def completed(self) -> None:
        self._in_a_row = 0


class ToolCalls:
    """Function calls running in the shell; the model answers once the last one reports."""

    def __init__(self) -> None:
        self.running = 0

    def started(self, count: int) -> None:
        self.running += count

    def finished(self) -> bool:
        """One tool reported; True if none is left running."""
        self.running = max(0, self.running - 1)
        return self.running == 0
