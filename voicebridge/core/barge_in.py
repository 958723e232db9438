"""Barge-in: where to cut the model's audio when the caller speaks over it (PROTOCOLS.md C.3).

On ``input_audio_buffer.speech_started`` while assistant audio is playing or queued, or while
a response is still in progress (even if all received so far has played: more may be on its
way), the response is interrupted whatever has played:

1. snapshot what the caller heard of the item being played (``PlaybackTracker``, C.6);
2. if anything may be buffered, drop queued audio and send Twilio ``clear``; ignore the
   echoes it causes;
3. ``conversation.item.truncate`` each item the server may hold more of than the caller
   heard (heard < received, or its response still in progress), at the heard position,
   capped at what was sent;
4. ``response.cancel`` only if a response is active and the server does not cancel it
   itself (``interrupt_response`` off);
5. drop late deltas of the interrupted responses.

:class:`ReceivedItems` decides and returns a :class:`Cut`; ``AssistantAudio`` sends.
With ``LOCAL_BARGE_IN=on``, steps 1 and 2 may come earlier, when the bridge hears the caller
itself (:meth:`ReceivedItems.pause`, ``local_barge_in``); ``speech_started`` then does the
rest from that snapshot, or the pause resumes and nothing is cut.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from voicebridge.core.playback import PlaybackTracker
from voicebridge.core.responses import RECENT, Responses

__all__ = ["Cut", "Paused", "ReceivedItems", "Truncation"]

_EPSILON_MS = 0.5  # received and written ms are float sums of the same chunks


@dataclass(slots=True)
class _Item:
    response_id: str
    received_ms: float = 0.0
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Truncation:
    item_id: str
    audio_end_ms: int  # what the caller heard of it
    sent_ms: float  # what had been written of it


@dataclass(frozen=True, slots=True)
class Cut:
    """What a barge-in asks for."""

    clear: bool = False  # Twilio ``clear``: audio may be buffered there or queued here
    truncations: tuple[Truncation, ...] = ()
    cancel: str | None = None  # response to cancel


@dataclass(frozen=True, slots=True)
class Paused:
    """What a local pause (``local_barge_in``) left the caller with: steps 1 and 2 only."""

    heard: dict[str, float]  # ms heard per item, from the first cut on
    clear: bool  # Twilio ``clear`` (as step 2)
    position: float  # the stream position the clear cuts at


class ReceivedItems:
    """Model audio received per item (the most recent ones), and the cut over it.

    Per item: ``RECEIVING`` (each delta adds ms) ``--barge-in, server may hold more than
    heard--> TRUNCATED``.
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

    def of_response(self, response_id: str) -> list[tuple[str, float]]:
        """(item id, ms received) of each item the response has sent audio for."""
        return [
            (i, it.received_ms) for i, it in self._items.items() if it.response_id == response_id
        ]

    def forget(self) -> None:
        """The session was replaced: its items mean nothing to the next one."""
        self._items.clear()

    def _queued(self) -> Iterator[str]:
        """Items with audio received but not yet written, of responses not interrupted."""
        written = self._playback.written_ms
        for item_id, item in self._items.items():
            if item.received_ms > written(item_id) + _EPSILON_MS and not (
                self._responses.is_interrupted(item.response_id)
            ):
                yield item_id

    def pending(self, now: float) -> bool:
        """Assistant audio is playing at Twilio or waiting to be written."""
        return self._playback.playing(now) or next(self._queued(), None) is not None

    def _generating(self) -> str | None:
        """The response in progress, unless it was already cut."""
        active = self._responses.active
        return None if active is None or self._responses.is_interrupted(active) else active

    def interrupts(self, now: float) -> bool:
        """Caller speech now is a barge-in: audio is pending, or a response is generating."""
        return self.pending(now) or self._generating() is not None

    def _first_cut(self, now: float) -> str | None:
        """The first item the caller will not hear to its end: the one a clear cuts now,
        else the first still queued, else the first of the response in progress."""
        playing = self._playback.item_at(now)
        if playing is not None:
            # Audio of a replaced session still playing: every item of this one comes after.
            return playing if playing in self._items else next(iter(self._items), None)
        queued = next(self._queued(), None)
        if queued is not None:
            return queued
        active = self._responses.active
        return next((i for i, it in self._items.items() if it.response_id == active), None)

    def _from(self, first: str | None) -> Iterator[str]:
        later = False
        for item_id in self._items:
            later = later or item_id == first
            if later:
                yield item_id

    def _snapshot(self, now: float) -> tuple[dict[str, float], bool]:
        """Steps 1 and 2: what the clear leaves heard, and whether to clear."""
        playback = self._playback
        # 1. Snapshot before anything changes: what the clear will leave the caller with.
        heard = {i: playback.heard_ms(i, now) for i in self._from(self._first_cut(now))}
        # 2. Clear only what may still be buffered; echoes of marks so far are meaningless.
        clear = self.pending(now) or not playback.all_echoed()
        if clear:
            playback.cleared()
        return heard, clear

    def pause(self, now: float) -> Paused:
        """Local speech: steps 1 and 2 now; the rest waits for the upstream's word."""
        position = self._playback.position(now)
        heard, clear = self._snapshot(now)
        return Paused(heard, clear, position)

    def barge_in(
        self, now: float, *, server_cancels: bool, paused: Mapping[str, float] | None = None
    ) -> Cut:
        """The caller spoke over the model; the playback tracker is told of any ``clear``.

        Args:
            server_cancels: the session's ``interrupt_response``: the server cancels by itself.
            paused: :attr:`Paused.heard` of a local pause before it: the cut is there, and
                items received since were never heard.
        """
        playback, responses = self._playback, self._responses
        if paused is None:
            heard, clear = self._snapshot(now)
        else:
            first = next(iter(paused), None) or self._first_cut(now)
            heard, clear = {i: paused.get(i, 0.0) for i in self._from(first)}, False
        # 3. Tell the model how much was heard, wherever it may hold more; 5. drop the rest.
        active = responses.active
        generating = self._generating()
        truncations: list[Truncation] = []
        for item_id, heard_ms in heard.items():
            item = self._items[item_id]
            in_progress = item.response_id == active
            if item.truncated or not (in_progress or heard_ms < item.received_ms - _EPSILON_MS):
                continue
            if not responses.is_interrupted(item.response_id):
                responses.interrupt(item.response_id)
            item.truncated = True
            sent = playback.written_ms(item_id)
            truncations.append(Truncation(item_id, int(min(heard_ms, sent)), sent))
        # 4. Cancel only what the server will not cancel itself, and only once.
        cancel = None
        if generating is not None:
            responses.interrupt(generating)
            cancel = None if server_cancels else generating
        return Cut(clear, tuple(truncations), cancel)
