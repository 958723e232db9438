"""CallCore with LOCAL_BARGE_IN: the pause, its confirmation and its resume, as actions."""

from __future__ import annotations

import base64

from tests.support.call_core import SID, play_response, ready_core, twilio_sent, upstream
from voicebridge.core import realtime as rt
from voicebridge.core import twilio as tw
from voicebridge.core.actions import Action, FlushPlayback, Note, Playback, WakeAt
from voicebridge.core.call import CallCore
from voicebridge.core.local_barge_in import LocalSettings
from voicebridge.twilio_sim.line_sounds import noise_burst

QUIET = base64.b64encode(noise_burst(20, rms=40, seed=1)).decode()
LOUD = base64.b64encode(noise_burst(20, rms=3000, seed=2)).decode()
ON = LocalSettings(min_speech_ms=60, window_ms=600, rewind_ms=200)


def frames(core: CallCore, payloads: list[str], start: float) -> list[Action]:
    """Caller frames every 20 ms from ``start``; every action they caused."""
    out: list[Action] = []
    for i, payload in enumerate(payloads):
        out += core.receive_twilio(tw.Media(SID, i * 20, payload, i + 1), start + i * 20)
    return out


def test_speech_over_an_answer_pauses_at_the_third_frame() -> None:
    core = ready_core(local_barge_in=ON)
    play_response(core, 20, 1000.0)  # 2 s written at once
    actions = frames(core, [QUIET] * 10 + [LOUD] * 3, 1100.0)
    assert twilio_sent(actions) == ["clear"]
    assert any(isinstance(a, FlushPlayback) for a in actions)
    [wake] = [a for a in actions if isinstance(a, WakeAt)]
    assert wake.at == 1100.0 + 12 * 20 + 600
    assert core.stats.local_pauses == 1
    assert {e["type"] for e in upstream(actions)} == {"input_audio_buffer.append"}  # no cut yet


def test_confirmed_it_truncates_at_the_pause_once() -> None:
    """speech_started after the pause: truncate at what was heard at the pause (no second
    clear), whatever the clock says by then."""
    core = ready_core(local_barge_in=ON)
    play_response(core, 20, 1000.0)
    frames(core, [QUIET] * 10 + [LOUD] * 3, 1100.0)  # paused at 1340: 340 ms heard
    actions = core.receive_realtime(rt.SpeechStarted(0, "item_u"), 1700.0)
    assert twilio_sent(actions) == []
    [truncate] = [e for e in upstream(actions) if e["type"] == "conversation.item.truncate"]
    assert truncate["audio_end_ms"] == 340
    assert (core.stats.local_confirmed, core.stats.barge_ins) == (1, 1)
    assert core.wake(1940.0) == []  # the window's timer finds nothing to resume


def test_unconfirmed_it_resumes_from_the_cut_less_the_rewind() -> None:
    core = ready_core(local_barge_in=ON)
    play_response(core, 20, 1000.0)
    frames(core, [QUIET] * 10 + [LOUD] * 3, 1100.0)  # paused at 1340: 340 ms heard
    assert not core.closing_finished(1400.0) and core.wake(1900.0) == []  # not yet
    actions = core.wake(1940.0)
    assert isinstance(actions[0], Note) and "false interruption" in actions[0].text
    played = [a for a in actions if isinstance(a, Playback)]
    assert played[0].ms == 60.0 and sum(a.ms for a in played) == 2000 - 140
    assert core.stats.false_interruptions == 1 and core.stats.truncations == 0
    for a in played:
        core.render(a, 1940.0)
    later = core.receive_realtime(rt.SpeechStarted(0, "item_u"), 2000.0)
    [truncate] = [e for e in upstream(later) if e["type"] == "conversation.item.truncate"]
    assert truncate["audio_end_ms"] == 140 + 60  # the resumed stream maps back to the item


def test_audio_arriving_during_the_pause_is_held() -> None:
    """An answer still generating: deltas during the pause are not played, then resumed."""
    core = ready_core(local_barge_in=ON)
    play_response(core, 5, 1000.0)
    frames(core, [QUIET] * 10 + [LOUD] * 3, 1100.0)
    delta = rt.AudioDelta("resp_1", "item_1", base64.b64encode(b"\x55" * 800).decode())
    assert core.receive_realtime(delta, 1400.0) == []
    played = [a for a in core.wake(1940.0) if isinstance(a, Playback)]
    assert sum(a.ms for a in played) == 600 - 140


def test_a_new_session_abandons_the_pause() -> None:
    core = ready_core(local_barge_in=ON)
    play_response(core, 20, 1000.0)
    frames(core, [QUIET] * 10 + [LOUD] * 3, 1100.0)
    core.new_session(announce=True)
    assert core.wake(1940.0) == [] and core.stats.false_interruptions == 0


def test_off_nothing_is_heard_locally() -> None:
    core = ready_core()
    play_response(core, 20, 1000.0)
    actions = frames(core, [QUIET] * 10 + [LOUD] * 10, 1100.0)
    assert twilio_sent(actions) == [] and core.stats.local_pauses == 0
