"""The caller's speech onset, heard by the bridge itself, frame by frame. No I/O, no clock.

Each 20 ms μ-law frame from the caller has one level, its RMS (``audioop``, in C). A frame
is *voiced* when its level reaches the highest of three thresholds:

* ``MIN_LEVEL``: quieter than this is not a caller talking over the assistant;
* the line's noise floor times ``NOISE_RATIO``: the floor falls fast to the quietest frames
  and rises slowly (about 3 dB a second), so steady line noise or hum never counts;
* the assistant's echo: the loudest assistant audio the caller may have been hearing
  while the frame was spoken (:class:`EchoReference`), times the line's echo return (the
  caller's level over that reference while the assistant talks, tracked between
  ``ERL_MIN`` and ``ERL_MAX``), times ``ECHO_MARGIN``; so the model's own voice coming back
  on the caller's leg (speakerphone, line echo) never counts, while a line without echo
  soon hears the caller as readily as in silence.

Speech *starts* after ``min_speech_ms`` of consecutive voiced frames (clicks, pops and a
crackle on the line are shorter), and *ends* after ``HANGOVER_MS`` without a voiced frame;
a new start needs the previous sound to have ended. Measured against other detectors on a
corpus of phone-line sounds in ``bench/speech_corpus.py`` (bench/RESULTS.md).
"""

from __future__ import annotations

from array import array

from voicebridge.core.audio import audioop

__all__ = [
    "ECHO_MARGIN",
    "ENDED",
    "ERL_MAX",
    "MIN_LEVEL",
    "NOISE_RATIO",
    "NOTHING",
    "STARTED",
    "EchoReference",
    "SpeechDetector",
]

FRAME_MS = 20
MIN_LEVEL = 200  # RMS, 16-bit scale (-44 dBFS); speech onsets measure 300-1500
NOISE_RATIO = 4.0  # 12 dB above the line's noise floor
# The echo return assumed at first, and never exceeded: an echo 20 dB down is always
# ignored. It falls (at most 0.18 dB a frame) towards what the line shows while the
# assistant talks, and rises (at most 2 dB a frame) when more comes back.
ERL_MAX = 0.1
ERL_MIN = 0.01  # -40 dB: a handset with echo cancelling
ECHO_MARGIN = 2.0  # 6 dB above the estimated echo
_ERL_RISE = 1.26
_ERL_FALL = 0.98
HANGOVER_MS = 100  # unvoiced this long: the sound has ended
_FLOOR_FALL = 0.3  # share of the way down to a quieter frame, per frame
_FLOOR_RISE = 1.0069  # per louder frame: +3 dB a second
# The echo of stream position p reaches the bridge about when a mark at p would be echoed,
# plus the acoustic or line delay (50-150 ms, up to 240 with jitter and the frame's own
# 20 ms); 20 ms early for the jitter the other way.
ECHO_LATE_MS = 240
ECHO_EARLY_MS = 20
_KEEP_BINS = 256  # levels kept behind the oldest position still asked about (about 5 s)

# What :meth:`SpeechDetector.feed` reports.
NOTHING, STARTED, ENDED = 0, 1, 2


class EchoReference:
    """The assistant's level along the stream, 20 ms a bin: how loud its echo can be.

    Positions are stream ms, as ``PlaybackTracker`` counts them (all audio written to
    Twilio, back to back). A mark echo and the caller's audio take the same path back to
    the bridge, so a caller frame arriving when the newest echo projects to position ``p``
    (:meth:`PlaybackTracker.echo_position`) was spoken while the caller heard ``p``, and
    can carry an echo of the audio a little before it.
    """

    def __init__(self) -> None:
        self._base = 0  # bin of _levels[0]
        self._levels = array("H")

    def add(self, start_ms: float, ulaw: bytes) -> None:
        """Assistant audio written at stream position ``start_ms``."""
        first = int(start_ms // FRAME_MS) - self._base
        if first < 0:
            return  # before what is kept: long heard
        levels = self._levels
        if first > len(levels):
            levels.frombytes(bytes(2 * (first - len(levels))))  # a gap: zeros
        lin = audioop.ulaw2lin(ulaw, 2)
        step = FRAME_MS * 16  # bytes of 16-bit PCM per bin
        for i, offset in enumerate(range(0, len(lin), step)):
            level = min(audioop.rms(lin[offset : offset + step], 2), 65535)
            b = first + i
            if b < len(levels):
                levels[b] = max(levels[b], level)  # a chunk ending mid-bin shares it
            else:
                levels.append(level)

    def cut(self, position_ms: float) -> None:
        """A ``clear`` cut playback at ``position_ms``: nothing after it was heard."""
        keep = max(0, -(-int(position_ms) // FRAME_MS) - self._base)
        del self._levels[keep:]

    def level(self, position_ms: float) -> int:
        """The loudest assistant level whose echo may be in a frame arriving at ``position_ms``."""
        lo = int((position_ms - ECHO_LATE_MS) // FRAME_MS) - self._base
        if lo > _KEEP_BINS:
            del self._levels[: lo - _KEEP_BINS // 2]  # rarely: a few seconds at a time
            self._base += lo - _KEEP_BINS // 2
            lo = _KEEP_BINS // 2
        hi = int((position_ms + ECHO_EARLY_MS) // FRAME_MS) + 1 - self._base
        window = self._levels[max(lo, 0) : max(hi, 0)]
        return max(window) if window else 0


class SpeechDetector:
    """Speech onsets in one caller's 20 ms μ-law frames (see the module docstring)."""

    def __init__(self, min_speech_ms: int = 60) -> None:
        self.onset_frames = max(1, -(-min_speech_ms // FRAME_MS))
        self.floor = -1.0  # the first frame's level (a loud first frame: it falls fast)
        self.erl = ERL_MAX  # the caller's level over the echo reference, while it talks
        self.speaking = False
        self.voiced_ms = 0  # voiced audio in the current (or last) sound
        self._run = 0  # consecutive voiced frames
        self._quiet = 0  # consecutive unvoiced frames while speaking

    def reset(self) -> None:
        """Forget the current sound (the detector was not fed for a while); keep the floor."""
        self.speaking = False
        self.voiced_ms = 0
        self._run = 0
        self._quiet = 0

    def feed(self, ulaw: bytes, echo_level: int = 0) -> int:
        """One frame; ``echo_level`` from :meth:`EchoReference.level` (0: nothing playing).

        Returns:
            ``STARTED`` at a speech onset, ``ENDED`` when a sound has ended, else ``NOTHING``.
        """
        level = audioop.rms(audioop.ulaw2lin(ulaw, 2), 2)
        floor = self.floor if self.floor >= 0 else level
        noise = max(MIN_LEVEL, floor * NOISE_RATIO)
        threshold = max(noise, echo_level * self.erl * ECHO_MARGIN)
        if level < floor:
            self.floor = floor + (level - floor) * _FLOOR_FALL
        else:
            self.floor = min(floor * _FLOOR_RISE, level)
        if echo_level > noise:
            # Slew-limited both ways: a caller's first words barely move it, so they are not
            # taken for echo; the line's own echo soon holds it up.
            erl = self.erl
            ratio = level / echo_level
            erl = min(ratio, erl * _ERL_RISE) if ratio > erl else max(ratio, erl * _ERL_FALL)
            self.erl = min(ERL_MAX, max(ERL_MIN, erl))
        if level >= threshold:
            self._quiet = 0
            self._run += 1
            if self.speaking:
                self.voiced_ms += FRAME_MS
            elif self._run >= self.onset_frames:
                self.speaking = True
                self.voiced_ms = self._run * FRAME_MS
                return STARTED
            return NOTHING
        self._run = 0
        if self.speaking:
            self._quiet += 1
            if self._quiet * FRAME_MS >= HANGOVER_MS:
                self.speaking = False
                self._quiet = 0
                return ENDED
        return NOTHING
