"""Local barge-in on the virtual clock: the pause at once, the window, the rewind, the resume.

The real ``Call`` runs between the in-memory Twilio and the fake Realtime server modelled as
distant (every event 80 ms late, its VAD needing 200 ms of speech), with ``LOCAL_BARGE_IN``
on and its production window (600 ms) and rewind (200 ms).
"""

from __future__ import annotations

import asyncio
import base64

from tests.support.memory_realtime import MemoryRealtime
from tests.support.memory_twilio import SILENCE
from tests.support.shell import Bridged, bridged, until
from voicebridge.config import Settings
from voicebridge.fake_realtime.clips import load_clips
from voicebridge.fake_realtime.session import FakeRealtimeOptions
from voicebridge.twilio_sim.line_sounds import cough, frames
from voicebridge.twilio_sim.recordings import packaged_call

DEFAULTS = Settings()
WINDOW_MS, REWIND_MS = DEFAULTS.local_barge_in_window_ms, DEFAULTS.local_barge_in_rewind_ms
ANSWER = 4  # the fake's clip 05: a 3 s answer
CLIP = load_clips()[ANSWER].ulaw
DISTANT = FakeRealtimeOptions(event_delay_ms=80, vad_start_ms=200, first_clip=ANSWER)
# The first spoken turn of the packaged call (1.08-5.06 s), as Twilio's 20 ms frames.
TURN = packaged_call("books_a_table").payloads[54:253]
COUGH = frames(cough(150, rms=3000, seed=1))


async def answer_playing(b: Bridged) -> float:
    """The caller's turn, then silence until the answer starts playing; its start (ms)."""
    await b.twilio.speak(TURN, pause_after=0.2)
    while not b.twilio.events("media"):
        await b.twilio.speak([SILENCE])
    return b.twilio.player.chunks[0].start


def answer_heard(b: Bridged) -> float:
    return sum(c.played for c in b.twilio.player.chunks)


async def test_a_cough_pauses_the_answer_which_resumes_with_a_rewind() -> None:
    """A 150 ms cough 800 ms into a 3 s answer: cleared two frames after the cough's first,
    the answer resumes when the window ends unconfirmed, from 200 ms before the cut; the
    caller hears all of it, nothing is truncated, one false interruption is counted."""
    async with asyncio.timeout(60), bridged(DISTANT, local_barge_in=True) as b:
        await until(lambda: b.call.core.session_ready)
        started = await answer_playing(b)
        await b.twilio.speak([SILENCE] * 40)  # 800 ms into the answer
        coughed = b.now() * 1000
        await b.twilio.speak([*COUGH, *[SILENCE] * 250])
        stats = b.call.core.stats
    player = b.twilio.player
    [cleared] = player.clears
    assert cleared - coughed == 40  # the third frame of the cough: 60 ms of it
    before = [c for c in player.chunks if c.arrived <= cleared]
    after = [c for c in player.chunks if c.arrived > cleared]
    cut = sum(c.played for c in before)
    assert abs(cut - (cleared - started)) < 1  # no network: the cut is where it played
    assert after[0].arrived - cleared == WINDOW_MS  # resumed when the window ended
    first = base64.b64decode(after[0].payload)
    assert CLIP.find(first) == round(cut - REWIND_MS) * 8  # from the cut less the rewind
    assert answer_heard(b) == len(CLIP) / 8 + REWIND_MS  # all of it, the rewind twice
    assert all(c.played == c.duration for c in after)
    [pipe] = b.realtime.pipes
    assert pipe.events("client", "conversation.item.truncate") == []
    turns = pipe.events("server", "input_audio_buffer.speech_started")
    assert [t for t, _ in turns if t * 1000 > coughed] == []  # the upstream heard nothing
    assert (stats.local_pauses, stats.false_interruptions, stats.truncations) == (1, 1, 0)


async def test_speech_confirmed_by_the_upstream_is_cut_where_the_pause_left_it() -> None:
    """Caller speech over the answer: Twilio is cleared 60 ms into it, long before the
    upstream's speech_started; that confirms the barge-in, truncated at what the caller
    heard when playback stopped, without a second clear."""
    async with asyncio.timeout(60), bridged(DISTANT, local_barge_in=True) as b:
        await until(lambda: b.call.core.session_ready)
        await answer_playing(b)
        await b.twilio.speak([SILENCE] * 30)
        spoke = b.now() * 1000
        await b.twilio.speak(TURN[:60], pause_after=1.0)
        stats = b.call.core.stats
    player = b.twilio.player
    [cleared] = player.clears
    assert cleared - spoke <= 60
    [pipe] = b.realtime.pipes
    [_, (started_at, _)] = pipe.events("server", "input_audio_buffer.speech_started")
    [(truncated_at, truncate)] = pipe.events("client", "conversation.item.truncate")
    assert started_at * 1000 - cleared > 200  # the upstream's VAD alone: that much later
    assert truncated_at >= started_at
    heard = sum(c.played for c in player.chunks if c.arrived <= cleared)
    assert abs(truncate["audio_end_ms"] - heard) <= 1
    assert (stats.local_pauses, stats.local_confirmed, stats.false_interruptions) == (1, 1, 0)
    assert stats.barge_ins == 1 and stats.truncations == 1


async def test_off_the_cough_changes_nothing_and_speech_waits_for_the_upstream() -> None:
    """LOCAL_BARGE_IN=off: a cough does not touch the answer; speech is cut only when the
    upstream's speech_started arrives."""
    async with asyncio.timeout(60), bridged(DISTANT, local_barge_in=False) as b:
        await until(lambda: b.call.core.session_ready)
        await answer_playing(b)
        await b.twilio.speak([SILENCE] * 40 + COUGH + [SILENCE] * 200)
        assert b.twilio.player.clears == []
        assert answer_heard(b) == len(CLIP) / 8
        await b.twilio.speak([SILENCE] * 10)
        assert b.call.core.stats.local_pauses == 0


async def test_nothing_runs_while_no_answer_is_playing_or_due() -> None:
    """The caller's own turn, with no answer playing or generating, pauses nothing and does
    not even reach the detector."""
    async with asyncio.timeout(60), bridged(DISTANT, local_barge_in=True) as b:
        await until(lambda: b.call.core.session_ready)
        await b.twilio.speak(TURN[:100])
        local = b.call.core._audio.local
        assert local is not None and local.detector.floor < 0  # never fed
        assert b.call.core.stats.local_pauses == 0 and b.twilio.player.clears == []


async def test_the_fake_sends_every_event_late_and_in_order() -> None:
    """event_delay_ms: a distant server; each event leaves that long after it was made."""
    realtime = MemoryRealtime(FakeRealtimeOptions(event_delay_ms=80))
    try:
        pipe = await realtime.connect(DEFAULTS, 5.0)
        opened = asyncio.get_running_loop().time()
        await pipe.send('{"type": "session.update", "session": {"type": "realtime"}}')
        sent = asyncio.get_running_loop().time()
        assert await pipe.recv()
        created = realtime.pipes[0].wire[-1][0]
        await until(lambda: len(realtime.pipes[0].wire) >= 3)
        updated = realtime.pipes[0].wire[-1][0]
        assert round((created - opened) * 1000) == 80
        assert round((updated - sent) * 1000) == 80
    finally:
        await realtime.aclose()
