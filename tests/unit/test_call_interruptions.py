"""CallCore when the caller speaks over the model: a response still generating, a goodbye."""

from __future__ import annotations

import pytest

from tests.support.call_core import (
    DELTA,
    done,
    echo_all,
    play_response,
    ready_core,
    twilio_sent,
    upstream,
    write_all,
)
from voicebridge.core import realtime as rt
from voicebridge.core.actions import Playback


@pytest.mark.parametrize("interrupt", [True, False], ids=["server_cancels", "bridge_cancels"])
def test_speech_over_a_response_still_generating_interrupts_it(interrupt: bool) -> None:
    """All received has played, yet the response is in progress: its item is truncated at
    what was heard, it is cancelled unless the server does it, and late deltas are dropped."""
    core = ready_core(interrupt=interrupt)
    echo_all(core, play_response(core, 5, 0.0), 600.0)  # 500 ms, heard to the end
    actions = core.receive_realtime(rt.SpeechStarted("u1", 900), 1000.0)
    assert twilio_sent(actions) == []  # nothing buffered: nothing to clear
    events = upstream(actions)
    truncate = {"item_id": "item_1", "content_index": 0, "audio_end_ms": 500}
    assert [{k: e[k] for k in truncate} for e in events[:1]] == [truncate]
    cancels = [e["response_id"] for e in events if e["type"] == "response.cancel"]
    assert cancels == ([] if interrupt else ["resp_1"])
    assert core.stats.barge_ins == 1 and core.stats.truncations == 1
    # A delta already on its way when the caller spoke is never played over them.
    assert core.receive_realtime(rt.AudioDelta("resp_1", "item_1", DELTA), 1010.0) == []
    assert core.stats.late_deltas_dropped == 1


def test_speech_after_a_finished_answer_was_heard_is_no_barge_in() -> None:
    """Response done and played out: the caller simply takes a turn."""
    core = ready_core()
    echo_all(core, play_response(core, 5, 0.0), 600.0)
    core.receive_realtime(done("resp_1"), 100.0)
    assert core.receive_realtime(rt.SpeechStarted("u1", 900), 1000.0) == []
    assert core.stats.barge_ins == 0


def test_a_second_start_of_speech_cancels_nothing_twice() -> None:
    """The response cut by the first barge-in is not cancelled again."""
    core = ready_core(interrupt=False)
    play_response(core, 1, 0.0)
    first = upstream(core.receive_realtime(rt.SpeechStarted("u1", 0), 50.0))
    assert [e["type"] for e in first] == ["conversation.item.truncate", "response.cancel"]
    assert core.receive_realtime(rt.SpeechStarted("u2", 0), 60.0) == []


def test_talking_over_the_models_goodbye_calls_the_hang_up_off() -> None:
    """The model said goodbye and asked to end; the caller speaks over it: the goodbye is
    cut and the conversation goes on (no closing, nothing asked for, no end)."""
    core = ready_core()
    play_response(core, 20, 0.0)
    core.receive_realtime(done("resp_1"), 10.0)
    assert core.close("end_call", None, yields=True) == []
    assert core.closing == "end_call"
    actions = core.receive_realtime(rt.SpeechStarted("u1", 0), 500.0)
    assert core.closing is None
    assert twilio_sent(actions) == ["clear"]
    assert [e["type"] for e in upstream(actions)] == ["conversation.item.truncate"]
    assert not core.closing_finished(10_000.0)
    # The caller's turn is answered as any other; the model may say goodbye again later.
    core.receive_realtime(rt.ResponseCreated("resp_2"), 1500.0)
    assert upstream(core.receive_realtime(done("resp_2"), 2000.0)) == []
    assert core.close("end_call", None, yields=True) == [] and core.closing == "end_call"


def test_a_goodbye_line_asked_for_and_talked_over_is_cancelled_when_it_comes() -> None:
    """The line was asked for, the caller spoke before it began: it is cancelled, unheard."""
    core = ready_core()
    [create] = upstream(core.close("end_call", "Say goodbye.", yields=True))
    core.receive_realtime(rt.SpeechStarted("u1", 0), 100.0)
    assert core.closing is None
    created = rt.ResponseCreated("resp_line", create["response"]["metadata"])
    [cancel] = upstream(core.receive_realtime(created, 150.0))
    assert cancel["type"] == "response.cancel" and cancel["response_id"] == "resp_line"
    assert core.receive_realtime(rt.AudioDelta("resp_line", "i9", DELTA), 160.0) == []


def test_a_goodbye_line_being_said_is_cut_by_the_caller_and_the_call_goes_on() -> None:
    """Speech over the line's response: barge-in as usual, and the closing is off."""
    core = ready_core(interrupt=False)
    [create] = upstream(core.close("end_call", "Say goodbye.", yields=True))
    core.receive_realtime(rt.ResponseCreated("resp_line", create["response"]["metadata"]), 0.0)
    write_all(core, core.receive_realtime(rt.AudioDelta("resp_line", "i_l", DELTA), 0.0), 0.0)
    events = upstream(core.receive_realtime(rt.SpeechStarted("u1", 0), 50.0))
    assert [e["type"] for e in events] == ["conversation.item.truncate", "response.cancel"]
    assert core.closing is None
    core.receive_realtime(done("resp_line", "cancelled"), 60.0)
    assert not core.closing_finished(10_000.0)


def test_a_drain_closing_still_ends_when_the_caller_talks_over_its_line() -> None:
    """A closing imposed on the call (drain, session limit) does not yield: the line is cut,
    and the call ends once nothing is left to play."""
    core = ready_core()
    [create] = upstream(core.close("draining", "We have to end the call."))
    core.receive_realtime(rt.ResponseCreated("resp_line", create["response"]["metadata"]), 0.0)
    chunk = core.receive_realtime(rt.AudioDelta("resp_line", "i_l", DELTA), 0.0)
    assert isinstance(chunk[0], Playback)
    sent = write_all(core, chunk, 0.0)
    actions = core.receive_realtime(rt.SpeechStarted("u1", 0), 50.0)
    assert twilio_sent(actions) == ["clear"] and core.closing == "draining"
    core.receive_realtime(done("resp_line", "cancelled"), 60.0)
    echo_all(core, sent, 70.0)
    assert core.closing_finished(70.0)
