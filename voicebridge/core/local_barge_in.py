"""Local barge-in: pause the assistant on the caller's speech heard here, then confirm or resume.

The upstream's VAD hears the caller a round trip and its own onset later than the bridge
can. With ``LOCAL_BARGE_IN=on`` the bridge listens to the caller itself
(:mod:`voicebridge.core.speech_detector`) while the assistant's audio plays or is about to:

==========  ====================================================  ==========================
state       on                                                    then
==========  ====================================================  ==========================
LISTENING   speech onset while a barge-in would cut something     PAUSED: Twilio ``clear``
            (audio playing or queued, or an answer generating)    now; what the caller heard
                                                                  is noted; later audio held
PAUSED      ``speech_started`` before ``window_ms`` passed        LISTENING: a barge-in, cut
                                                                  at what the pause left
                                                                  heard (no second clear)
PAUSED      ``window_ms`` passed without it                       LISTENING: the held audio
                                                                  again, from the cut less
                                                                  ``rewind_ms``; no truncate;
                                                                  a false interruption
PAUSED      the session replaced                                  LISTENING: nothing resumed
==========  ====================================================  ==========================

A ``clear`` discards Twilio's buffer, so the audio is kept here: every chunk of the recent
items as it was made (:class:`HeldAudio`), dropped once the caller has long heard it. A new
onset needs the previous sound to have ended, so a long noise pauses at most once.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from dataclasses import dataclass, field

from voicebridge.core.speech_detector import STARTED, EchoReference, SpeechDetector

__all__ = ["HeldAudio", "LocalBargeIn", "LocalSettings", "Pause", "Resend"]

_ULAW_BYTES_PER_MS = 8
_KEEP_HEARD_MS = 1000  # audio kept behind the heard position, beyond the rewind
_MAX_ITEMS = 8  # items kept; older ones have long been heard


@dataclass(frozen=True, slots=True)
class LocalSettings:
    """``LOCAL_BARGE_IN_*`` (config.py validates them)."""

    min_speech_ms: int = 60  # voiced audio before a pause: shorter sounds are ignored
    window_ms: int = 600  # the upstream's speech_started must come this soon after a pause
    rewind_ms: int = 200  # a resume repeats this much of what was heard before the cut


@dataclass(frozen=True, slots=True)
class Resend:
    """A chunk of held audio to play again (base64 μ-law, as Twilio takes it)."""

    item_id: str
    response_id: str
    payload: str
    ms: float
    offset_ms: float  # where in its item the chunk begins


@dataclass(frozen=True, slots=True)
class Pause:
    """What a pause left the caller with: heard ms per item from the first cut on."""

    at: float
    heard: dict[str, float]
    held_before: frozenset[str]  # items already here at the pause


@dataclass(slots=True)
class _Item:
    response_id: str
    start_ms: float = 0.0  # item offset of chunks[0]
    chunks: deque[tuple[str, float]] = field(default_factory=deque)  # (base64, ms)

    @property
    def end_ms(self) -> float:
        return self.start_ms + sum(ms for _, ms in self.chunks)


class HeldAudio:
    """The recent items' audio, chunk by chunk, to resend what a ``clear`` discarded."""

    def __init__(self) -> None:
        self._items: dict[str, _Item] = {}

    def add(self, item_id: str, response_id: str, payload: str, ms: float) -> None:
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = _Item(response_id)
            while len(self._items) > _MAX_ITEMS:
                del self._items[next(iter(self._items))]
        item.chunks.append((payload, ms))

    def items(self) -> list[str]:
        """The items held, oldest first."""
        return list(self._items)

    def heard(self, item_id: str, heard_ms: float, keep_ms: float) -> None:
        """The caller has heard ``heard_ms`` of the item: drop what lies ``keep_ms`` before,
        and every item before it (played out)."""
        item = self._items.get(item_id)
        if item is None:
            return
        for earlier in list(self._items):
            if earlier == item_id:
                break
            del self._items[earlier]
        chunks = item.chunks
        while len(chunks) > 1 and item.start_ms + chunks[0][1] < heard_ms - keep_ms:
            item.start_ms += chunks.popleft()[1]

    def forget(self) -> None:
        self._items.clear()

    def from_(self, starts: dict[str, float]) -> list[Resend]:
        """The audio of each item in ``starts`` from its start offset on, in item order."""
        out: list[Resend] = []
        for item_id, item in self._items.items():
            begin = starts.get(item_id)
            if begin is None:
                continue
            offset = item.start_ms
            for payload, ms in item.chunks:
                end = offset + ms
                if end > begin + 0.5:
                    if begin > offset:
                        payload, ms = _tail(payload, end - begin), end - begin
                        offset = begin
                    out.append(Resend(item_id, item.response_id, payload, ms, offset))
                offset = end
        return out


def _tail(payload: str, ms: float) -> str:
    """The last ``ms`` of a base64 μ-law chunk (whole samples)."""
    audio = binascii.a2b_base64(payload)
    keep = max(1, round(ms * _ULAW_BYTES_PER_MS))
    return base64.b64encode(audio[-keep:]).decode("ascii")


class LocalBargeIn:
    """One call's local barge-in (see the module docstring). Times are ms; no clock."""

    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self.detector = SpeechDetector(settings.min_speech_ms)
        self.echo = EchoReference()
        self.held = HeldAudio()
        self.pause: Pause | None = None
        self._armed = False

    @property
    def paused(self) -> bool:
        return self.pause is not None

    @property
    def deadline(self) -> float | None:
        """When a pause with no confirmation resumes."""
        return None if self.pause is None else self.pause.at + self.settings.window_ms

    # -- the caller --------------------------------------------------------------------

    def caller_frame(self, ulaw: bytes, echo_position: float, armed: bool) -> bool:
        """One caller frame; True when it is a speech onset worth a pause.

        Args:
            echo_position: the stream position whose echo the frame may carry
                (``PlaybackTracker.echo_position``).
            armed: assistant audio plays or is about to: the detector runs only then (and
                during a pause, to know when the sound has ended).
        """
        if not (armed or self.pause is not None):
            self._armed = False
            return False
        if not self._armed:
            self._armed = True
            self.detector.reset()  # a sound from before the answer is not a new onset
        started = self.detector.feed(ulaw, self.echo.level(echo_position)) == STARTED
        return started and self.pause is None

    def paused_at(self, now: float, heard: dict[str, float], cut_at: float) -> None:
        """A pause began: ``heard`` per item (from the first cut on), playback cut at stream
        position ``cut_at`` (nothing after it was heard)."""
        self.pause = Pause(now, dict(heard), frozenset(self.held.items()))
        self.echo.cut(cut_at)

    def confirmed(self) -> Pause:
        """``speech_started`` during the pause: the caller did barge in."""
        pause = self.pause
        assert pause is not None
        self.pause = None
        return pause

    def expired(self, now: float) -> bool:
        deadline = self.deadline
        return deadline is not None and now >= deadline

    def resume(self) -> list[Resend]:
        """No confirmation in time: the audio to play again, from the cut less the rewind."""
        pause = self.pause
        assert pause is not None
        self.pause = None
        starts: dict[str, float] = {}
        for item_id in self.held.items():
            heard = pause.heard.get(item_id)
            if heard is not None:  # cut (the one cut mid-way rewinds) or not yet begun
                starts[item_id] = max(0.0, heard - self.settings.rewind_ms)
            elif item_id not in pause.held_before:
                starts[item_id] = 0.0  # arrived during the pause
        return self.held.from_(starts)

    def abandon(self) -> None:
        """The session was replaced: its audio is not resumed."""
        self.pause = None
        self.held.forget()

    # -- the assistant's audio -----------------------------------------------------------

    def received(self, item_id: str, response_id: str, payload: str, ms: float) -> None:
        self.held.add(item_id, response_id, payload, ms)

    def written(self, position: float, payload: str) -> None:
        """Audio written to Twilio at stream ``position``: its echo may come back."""
        self.echo.add(position, binascii.a2b_base64(payload))

    def heard(self, item_id: str, heard_ms: float) -> None:
        """Playback confirmed: what lies well before it will not be resent."""
        if self.pause is None:
            self.held.heard(item_id, heard_ms, self.settings.rewind_ms + _KEEP_HEARD_MS)
