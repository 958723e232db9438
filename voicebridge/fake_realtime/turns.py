"""Turn-taking details of the fake Realtime server: idle timeout, semantic VAD, transcription.

All of it is measured on the *input timeline* (milliseconds of audio appended, PROTOCOLS.md
B.3), never on wall time: a phone bridge streams caller audio continuously, so appended audio
is the session's clock, and tests can drive it as fast as they like. No I/O here.
"""

from __future__ import annotations

import re

from .session import JSON, FakeItem

__all__ = ["SEMANTIC_SILENCE_MS", "IdleTimer", "transcription_events"]

# semantic_vad stand-in: the real model decides end-of-turn from what was said, with the max
# timeouts 8 s / 4 s / 2 s for low / medium / high eagerness (B.2). The fake has no language
# model, so eagerness only sets how much trailing silence ends the turn; "auto" is "medium".
SEMANTIC_SILENCE_MS = {"high": 250, "medium": 500, "auto": 500, "low": 1000}


class IdleTimer:
    """``turn_detection.idle_timeout_ms`` (server_vad only), on the input timeline.

    The API applies the timeout "after the last model response's audio has finished playing,
    i.e. it's set to the `response.done` time plus audio playback duration" (B.2). Here the
    timer starts at the input position of ``response.done`` plus the ms of audio that response
    sent (its truncation point if the client truncated it): the bridge keeps appending caller
    audio in real time while the caller hears the reply, so that much appended audio later is
    when playback ends. Before the model's first response the timer counts from the latest
    ``session.updated`` (a choice: the docs only cover the time after a response). Caller
    speech disarms it and ``speech_stopped`` restarts it; a response in progress holds it; it
    fires once and then waits for the next response or speech.
    """

    def __init__(self) -> None:
        self._start_ms: float | None = None  # input ms the silence counts from
        self._played: FakeItem | None = None  # add its played audio to _start_ms
        self.responded = False  # the model has finished a response in this session

    def disarm(self) -> None:
        self._start_ms = None
        self._played = None

    def arm(self, start_ms: float) -> None:
        self._start_ms = start_ms
        self._played = None

    def arm_after_response(self, done_ms: float, item: FakeItem | None) -> None:
        """``response.done`` went out at input position ``done_ms``; ``item`` is its audio."""
        self.responded = True
        self._start_ms = done_ms
        self._played = item

    @property
    def start_ms(self) -> float | None:
        """Where the silence counts from (read lazily: a later truncate shortens playback)."""
        if self._start_ms is None:
            return None
        if self._played is None:
            return self._start_ms
        item = self._played
        played = item.audio_ms_sent if item.truncated_ms is None else item.truncated_ms
        return self._start_ms + played

    def due(self, now_ms: float, timeout_ms: int) -> float | None:
        """The silence's start if ``timeout_ms`` of it has passed at ``now_ms``, else None."""
        start = self.start_ms
        if start is None or now_ms - start < timeout_ms:
            return None
        return start


def transcription_events(model: str, item_id: str, speech_ms: float) -> tuple[list[JSON], str]:
    """``conversation.item.input_audio_transcription.delta``s and ``.completed`` for a user item.

    The fake does no speech recognition: the transcript is a placeholder giving the length of
    the caller's turn, e.g. "(caller speech, 1.4 s)". Returns the events (without event ids)
    and the transcript.
    """
    seconds = speech_ms / 1000
    transcript = f"(caller speech, {seconds:.1f} s)"
    ids: JSON = {"item_id": item_id, "content_index": 0}
    events: list[JSON] = [
        {"type": "conversation.item.input_audio_transcription.delta", **ids, "delta": piece}
        for piece in re.findall(r"\S+\s*", transcript)
    ]
    usage: JSON
    if model == "whisper-1":  # billed by duration; the gpt-*transcribe models by tokens
        usage = {"type": "duration", "seconds": round(seconds, 3)}
    else:
        audio_tokens = max(1, int(speech_ms / 100))  # ~10 audio tokens per second
        text_tokens = len(transcript) // 4
        usage = {
            "type": "tokens",
            "input_tokens": audio_tokens,
            "output_tokens": text_tokens,
            "total_tokens": audio_tokens + text_tokens,
            "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0},
        }
    events.append(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            **ids,
            "transcript": transcript,
            "usage": usage,
        }
    )
    return events, transcript
