"""Barge-in: where to cut the model's audio when the caller speaks over it (PROTOCOLS.md C.3).

On ``input_audio_buffer.speech_started`` while assistant audio is playing or queued:

1. snapshot what the caller heard of the item being played (``PlaybackTracker``, C.6);
2. drop queued audio and send Twilio ``clear``; ignore the echoes it causes;
3. ``conversation.item.truncate`` at the heard position, capped at what was sent,
   unless everything received was heard;
4. ``response.cancel`` only if a response is active and the server does not cancel
   it itself (``interrupt_response`` off);
5. drop late deltas of the interrupted response.

:class:`ReceivedItems` decides 1, 3, 4 and 5 and returns a :class:`Cut`; ``CallCore`` sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from voicebridge.core.playback import PlaybackTracker
from voicebridge.core.responses import RECENT, Responses

__all__ = ["Cut", "ReceivedItems"]

_EPSILON_MS = 0.5  # received and written ms are float sums of the same chunks


@dataclass(slots=True)
class _Item:
    response_id: str
    received_ms: float = 0.0
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Cut:
    """What a barge-in asks of the model (the Twilio ``clear`` always goes)."""

    truncate: str | None = None  # item to truncate
    audio_end_ms: int = 0  # where: what the caller heard of it
    sent_ms: float = 0.0  # what had been written of it
    cancel: str | None = None  # response to cancel


class ReceivedItems:
    """Model audio received per item (the most recent ones), and the cut over it.

    Per item: ``RECEIVING`` (each delta adds ms) ``--barge-in, heard < received--> TRUNCATED``.
    """

    def __init__(self, playback: PlaybackTracker, responses: Responses) -> None:
        self._playback = playback
        self._responses = responses
        self._items: dict[str, _Item] = {}

    def received(self, item_id: str, response_id: str, ms: float) -> None:
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = _Item(response_id)
            while len(self._items) > RECENT:
                del self._items[next(iter(self._items))]
        item.received_ms += ms

    def truncated(self, item_id: str) -> bool:
        item = self._items.get(item_id)
        return item is not None and item.truncated

    def forget(self) -> None:
        """The session was replaced: its items mean nothing to the next one."""
        self._items.clear()

    def _unwritten(self) -> Iterator[tuple[str, _Item]]:
        written = self._playback.written_ms
        return (
            (item_id, item)
            for item_id, item in self._items.items()
            if item.received_ms > written(item_id) + _EPSILON_MS
        )

    def pending(self, now: float) -> bool:
        """Assistant audio is playing at Twilio or waiting to be written."""
        if self._playback.playing(now):
            return True
        return any(
            not self._responses.is_interrupted(item.response_id) for _, item in self._unwritten()
        )

    def barge_in(self, now: float, *, server_cancels: bool) -> Cut:
        """The caller spoke over pending audio; the playback tracker is told of the ``clear``.

        Args:
            server_cancels: the session's ``interrupt_response``: the server cancels by itself.
        """
        playback = self._playback
        # 1. Snapshot before anything changes: what the clear will leave the caller with.
        target = playback.item_at(now)
        if target is None:
            # Nothing written is still playing: the cut falls on audio still queued here.
            unwritten = [item_id for item_id, _ in self._unwritten()]
            target = unwritten[-1] if unwritten else None
        heard = playback.heard_ms(target, now) if target else 0.0
        # 2. Echoes of marks written so far are now meaningless.
        playback.cleared()
        # 3. Tell the model how much was heard.
        cut = Cut()
        item = self._items.get(target) if target is not None else None
        if target is not None and item is not None:  # else audio of a replaced session
            self._responses.interrupt(item.response_id)
            sent = playback.written_ms(target)
            if heard < item.received_ms:
                item.truncated = True
                cut = Cut(target, int(min(heard, sent)), sent)
        # 4. Cancel only what the server will not cancel itself; 5. drop its late audio.
        active = self._responses.active
        if active is not None:
            if not self._responses.is_interrupted(active):
                self._responses.interrupt(active)
            if not server_cancels:
                cut = replace(cut, cancel=active)
        return cut
