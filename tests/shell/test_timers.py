"""The call's timers at their production values, on a virtual clock.

The real ``Call`` runs between the in-memory Twilio and the fake Realtime server on the
virtual clock of tests/shell/conftest.py: the loop's clock jumps to the next timer whenever
every task waits, so an hour's session limit takes milliseconds and every timing below is
exact to the loop's clock.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.support.memory_twilio import SILENCE
from tests.support.shell import bridged, until
from voicebridge.config import DEFAULT_CLOSING, Settings
from voicebridge.fake_realtime.session import FakeRealtimeOptions
from voicebridge.server.upstream_side import RENEW_WINDOW_S
from voicebridge.twilio_sim.recordings import packaged_call

DEFAULTS = Settings()
# A call that sends no media for an hour: no silence fed meanwhile (that would be 174 000
# frames), so the session clock is all that runs.
NO_GAP_FILL_MS = 10**8
SPEECH = [p for p in packaged_call("books_a_table").payloads if p != SILENCE]


def test_the_timers_are_tested_at_their_production_values() -> None:
    """The values below are the defaults, not shrunk copies."""
    assert DEFAULTS.session_limit_s == 3480.0
    assert DEFAULTS.upstream_stall_timeout_s == 10.0
    assert DEFAULTS.media_gap_ms == 100
    assert DEFAULTS.closing_timeout_s == 10.0
    assert DEFAULTS.start_timeout_s == 10.0


async def test_session_limit_ends_the_call_with_a_closing_line_heard_in_full() -> None:
    """At SESSION_LIMIT_S the model says the closing line, the caller hears all of it, the end."""
    async with asyncio.timeout(4000), bridged(media_gap_ms=NO_GAP_FILL_MS) as b:
        result = await b.result()
        ended = b.now()
    [pipe] = b.realtime.pipes
    [(confirmed, _)] = pipe.events("server", "session.updated")
    [(asked, create)] = pipe.events("client", "response.create")
    assert create["response"]["instructions"] == DEFAULT_CLOSING
    assert asked - confirmed == pytest.approx(3480.0, abs=0.001)
    assert (result.reason, result.deliberate, result.failed) == ("session_limit", True, False)
    chunks = b.twilio.player.chunks
    assert chunks and all(c.played == c.duration for c in chunks)  # heard to the end
    assert sum(c.duration for c in chunks) > 1000
    assert ended - asked < DEFAULTS.closing_timeout_s  # ended when heard, not at the deadline
    assert b.twilio.close_code == 1000


async def test_session_limit_renews_the_session_and_the_call_goes_on() -> None:
    """With SESSION_LIMIT_ACTION=renew a fresh session takes over at the first pause within
    RENEW_WINDOW_S of the limit (a silent line: at once), counted as a renewal; the caller
    is answered by it."""
    async with (
        asyncio.timeout(4000),
        bridged(media_gap_ms=NO_GAP_FILL_MS, session_limit_action="renew") as b,
    ):
        await until(lambda: b.realtime.connects == 2, step=60.0)
        await until(lambda: b.call.core.session_ready)
        await b.twilio.play(packaged_call("books_a_table"), tail_s=3.0)
        b.twilio.stop()
        result = await b.result()
    first, second = b.realtime.pipes
    [(confirmed, _)] = first.events("server", "session.updated")
    assert second.opened_at - confirmed == pytest.approx(3480.0 - RENEW_WINDOW_S, abs=0.001)
    assert first.closed_by == "client" and first.closed_at == second.opened_at
    assert second.events("client", "session.update")[0][0] == second.opened_at
    answer = {e["delta"] for _, e in second.events("server", "response.output_audio.delta")}
    assert b.twilio.player.heard_ms(answer) > 1000
    assert (result.reason, result.failed) == ("caller_hangup", False)
    assert (result.stats.renewals, result.stats.reconnects) == (1, 0)


async def test_a_stalled_upstream_is_replaced_after_the_stall_timeout() -> None:
    """An upstream that stops reading is given up UPSTREAM_STALL_TIMEOUT_S after its sends
    stop making progress, and a fresh session takes over; meanwhile the caller's audio waits
    in the bounded queue, oldest dropped."""
    stalls = FakeRealtimeOptions(stall_after_ms=2000, fault_sessions=1)
    async with asyncio.timeout(120), bridged(stalls) as b:
        caller = asyncio.create_task(b.twilio.speak([SILENCE] * 1000))  # 20 s
        await until(lambda: b.realtime.connects == 2)
        await caller
        await b.twilio.play(packaged_call("books_a_table"), tail_s=3.0)
        b.twilio.stop()
        result = await b.result()
    first, second = b.realtime.pipes
    stalled = first.opened_at + 2.0
    # The pipe's buffer (64 frames, 1.28 s) fills first; the watch checks every 2.5 s.
    assert 10.0 <= second.opened_at - stalled <= 10.0 + 1.28 + 2.5
    assert first.closed_by == "client"
    assert result.stats.caller_queue_dropped > 0 and result.stats.reconnects == 1
    assert (result.reason, result.failed) == ("caller_hangup", False)
    answer = {e["delta"] for _, e in second.events("server", "response.output_audio.delta")}
    assert b.twilio.player.heard_ms(answer) > 1000


async def test_each_media_gap_is_filled_from_media_gap_ms_on_and_only_the_gap() -> None:
    """Silence fills every gap in Twilio's media, MEDIA_GAP_MS after the last frame, a frame
    per 20 ms, and stops when media resumes."""
    async with asyncio.timeout(60), bridged() as b:
        await until(lambda: b.call.core.session_ready)
        # Gaps of 1010 and 510 ms from one frame to the next (speak ends 20 ms after its
        # last frame): silence from 100 ms in, every 20 ms, 46 and 21 frames.
        await b.twilio.speak(SPEECH[:50])
        await asyncio.sleep(0.99)
        await b.twilio.speak(SPEECH[50:100])
        await asyncio.sleep(0.49)
        await b.twilio.speak(SPEECH[100:150])
        b.twilio.stop()
        result = await b.result()
    [pipe] = b.realtime.pipes
    appends = [
        (at, e["audio"] == SILENCE) for at, e in pipe.events("client", "input_audio_buffer.append")
    ]
    runs = [list(run) for silent, run in itertools.groupby(appends, lambda a: a[1])]
    assert [len(r) for r in runs[1::2]] == [46, 21] and not runs[0][0][1]
    for spoken, silence in itertools.pairwise(runs):
        if silence[0][1]:
            assert silence[0][0] - spoken[-1][0] == pytest.approx(0.1, abs=0.001)
    assert result.stats.silence_frames == 67


async def test_the_model_answers_the_keypad_after_a_one_second_pause() -> None:
    """Each digit reaches the model at once; one response is asked for 1 s after the last."""
    async with asyncio.timeout(60), bridged() as b:
        await until(lambda: b.call.core.session_ready)
        caller = asyncio.create_task(b.twilio.speak([], pause_after=5.0))
        for digit in "123":
            b.twilio.dtmf(digit)
            last = b.now()
            await asyncio.sleep(0.6)
        await caller
        b.twilio.stop()
        result = await b.result()
    [pipe] = b.realtime.pipes
    items = pipe.events("client", "conversation.item.create")
    assert [e["item"]["content"][0]["text"] for _, e in items] == [f"[keypad] {d}" for d in "123"]
    [(asked, _)] = pipe.events("client", "response.create")
    assert asked - last == pytest.approx(1.0, abs=0.001)
    assert result.stats.dtmf == 3


async def test_a_silent_caller_is_reprompted_then_hung_up() -> None:
    """With IDLE_TIMEOUT_MS, each silence that long after the model's last words is a
    re-prompt; after IDLE_REPROMPTS of them the model says a short goodbye (its re-prompt
    cancelled for it), heard in full, and the call ends deliberately: <Hangup/>."""
    idle_ms = 8000
    async with asyncio.timeout(120), bridged(idle_timeout_ms=idle_ms) as b:
        caller = asyncio.create_task(b.twilio.speak([], pause_after=100.0))
        result = await b.result()
        caller.cancel()
    [pipe] = b.realtime.pipes
    [(confirmed, _)] = pipe.events("server", "session.updated")
    timeouts = [at for at, _ in pipe.events("server", "input_audio_buffer.timeout_triggered")]
    assert len(timeouts) == DEFAULTS.idle_reprompts + 1
    assert timeouts[0] - confirmed == pytest.approx(idle_ms / 1000, abs=0.021)
    for done, timeout in zip(
        [at for at, _ in pipe.events("server", "response.done")], timeouts[1:], strict=False
    ):
        assert timeout - done >= idle_ms / 1000  # counted after the re-prompt, not before
    assert (result.reason, result.failed, result.deliberate) == ("idle_caller", False, True)
    assert result.outcome == "idle" and result.stats.idle_reprompts == DEFAULTS.idle_reprompts
    [(_, goodbye)] = pipe.events("client", "response.create")
    assert goodbye["response"]["instructions"] == DEFAULTS.idle_goodbye_instructions
    last = pipe.events("server", "response.done")[-1][1]["response"]
    said = {
        e["delta"]
        for _, e in pipe.events("server", "response.output_audio.delta")
        if e["response_id"] == last["id"]
    }
    chunks = [c for c in b.twilio.player.chunks if c.payload in said]
    assert chunks and all(c.played == c.duration for c in chunks)  # the goodbye, all of it
    assert b.twilio.close_code == 1000 and await b.after_stream() == (("Hangup", ""),)


async def test_a_closing_line_never_heard_ends_the_call_at_the_closing_timeout() -> None:
    """When Twilio never confirms the closing line's playback, the call ends anyway
    CLOSING_TIMEOUT_S after the close was asked for."""
    async with asyncio.timeout(60), bridged(echo_marks=False) as b:
        await until(lambda: b.call.core.session_ready)
        caller = asyncio.create_task(b.twilio.speak([], pause_after=30.0))
        b.call.request_close("draining")
        asked = b.now()
        result = await b.result()
        ended = b.now()
        caller.cancel()
    assert (result.reason, result.deliberate, result.failed) == ("draining", True, False)
    assert ended - asked == pytest.approx(10.0, abs=0.06)  # polled every 50 ms


async def test_a_socket_without_start_is_refused_at_the_start_timeout() -> None:
    """A Media Streams socket that never sends `start` is closed (1008) START_TIMEOUT_S after
    it was accepted; no upstream is opened."""
    async with asyncio.timeout(60), bridged(start=False) as b:
        opened = b.now()
        b.twilio.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        result = await b.result()
        ended = b.now()
    assert ended - opened == pytest.approx(10.0, abs=0.001)
    assert (result.refused, result.close_code, b.twilio.close_code) == ("no_start", 1008, 1008)
    assert b.realtime.connects == 0
