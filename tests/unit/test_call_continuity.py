"""The core's part of ending an idle call well and of carrying a call into a fresh session:
the idle goodbye, the pause a renewal waits for, the re-seed (both sides, in order, a cut
answer as far as it was heard), renewals counted apart from reconnects."""

from __future__ import annotations

from typing import Any

from tests.support.call_core import (
    DELTA,
    done,
    echo_all,
    play_response,
    ready_core,
    session,
    start_event,
    upstream,
)
from voicebridge.core import realtime as rt
from voicebridge.core.actions import ClosingStarted, Playback
from voicebridge.core.call import CallCore
from voicebridge.core.continuity import TRANSCRIPT_WAIT_MS, PauseWatch
from voicebridge.core.policy import CallPolicy
from voicebridge.core.transcript import Transcript

POLICY = CallPolicy()


def transcribing_core(**policy: Any) -> CallCore:
    """A confirmed call whose session transcribes the caller."""
    config = rt.SessionConfig("hi", "marin", transcription_model="gpt-transcribe")
    core = CallCore(config, CallPolicy(**policy))
    core.receive_twilio(start_event(), 0.0)
    core.receive_realtime(rt.SessionUpdated(session()), 0.0)
    return core


# -- the idle goodbye ---------------------------------------------------------------------


def test_past_the_reprompts_the_servers_reprompt_is_replaced_by_a_goodbye() -> None:
    """create_response on: the server starts one more re-prompt with the last timeout; it is
    cancelled and the goodbye asked for instead, a closing that ends the call (deliberate)."""
    core = ready_core(idle_reprompts=1, idle_goodbye_instructions="Bye, silent caller.")
    assert core.receive_realtime(rt.TimeoutTriggered("t1"), 0.0) == []
    assert core.receive_realtime(rt.TimeoutTriggered("t2"), 9000.0) == []
    assert core.closing is None  # nothing asked over the server's coming response
    actions = core.receive_realtime(rt.ResponseCreated("reprompt"), 9001.0)
    assert actions[-1] == ClosingStarted("idle_caller") and core.closing == "idle_caller"
    [cancel] = upstream(actions)
    assert cancel == {**cancel, "type": "response.cancel", "response_id": "reprompt"}
    [create] = upstream(core.receive_realtime(done("reprompt", "cancelled"), 9100.0))
    assert create["response"]["instructions"] == "Bye, silent caller."


def test_without_create_response_the_goodbye_is_asked_for_at_once() -> None:
    core = ready_core(create=False, idle_reprompts=0)
    actions = core.receive_realtime(rt.TimeoutTriggered("t1"), 0.0)
    [create] = upstream(actions)
    assert create["response"]["instructions"] == POLICY.idle_goodbye_instructions
    assert actions[-1] == ClosingStarted("idle_caller")
    assert upstream(core.receive_realtime(rt.Committed("t1"), 1.0)) == []  # no re-prompt


def test_a_caller_speaking_after_the_last_timeout_keeps_the_call() -> None:
    core = ready_core(idle_reprompts=0)
    assert core.receive_realtime(rt.TimeoutTriggered("t1"), 0.0) == []
    core.receive_realtime(rt.SpeechStarted("u1", 0), 100.0)
    assert core.receive_realtime(rt.ResponseCreated("r1"), 900.0) == []
    assert core.closing is None


# -- the pause a renewal waits for --------------------------------------------------------


def test_a_pause_is_the_model_done_and_heard_and_the_caller_silent_and_answered() -> None:
    core = transcribing_core()
    assert core.at_pause(0.0)
    core.receive_realtime(rt.SpeechStarted("u1", 0), 0.0)
    assert not core.at_pause(10.0)  # the caller is speaking
    core.receive_realtime(rt.SpeechStopped("u1", 900), 900.0)
    assert not core.at_pause(910.0)  # the turn is not answered yet
    sent = play_response(core, 5, 1000.0)
    assert not core.at_pause(1000.0)  # the model is speaking
    core.receive_realtime(done("resp_1"), 1050.0)
    assert not core.at_pause(1100.0)  # its audio is still playing
    echo_all(core, sent, 1600.0)
    assert not core.at_pause(1600.0)  # the caller's words are not in the transcript yet
    core.receive_realtime(rt.Transcribed("caller", "u1", "A table for two"), 1700.0)
    assert core.at_pause(1700.0)


def test_a_caller_transcript_that_never_comes_is_not_waited_for_long() -> None:
    watch = PauseWatch(transcribes=True)
    watch.speech_started()
    watch.speech_stopped("u1", 0.0)
    watch.answered()
    assert not watch.quiet(TRANSCRIPT_WAIT_MS)
    assert watch.quiet(TRANSCRIPT_WAIT_MS + 1)


# -- the re-seed --------------------------------------------------------------------------


def test_turns_keep_the_order_they_began_in_whenever_their_text_comes() -> None:
    """The caller's transcript comes after the model's answer to it: the seed still puts
    the question first."""
    t = Transcript()
    t.expect("caller", "u1", 100.0)
    t.partial("a1", "Sure, ", 200.0)
    t.partial("a1", "for two.", 210.0)
    t.add("assistant", "Sure, for two.", "a1", 300.0)
    t.add("caller", "A table please", "u1", 400.0)
    t.expect("caller", "u2", 500.0)  # never transcribed: not seeded
    assert [(i["role"], i["content"][0]["text"]) for i in t.as_items()] == [
        ("user", "A table please"),
        ("assistant", "Sure, for two."),
    ]


def test_a_cut_answer_keeps_the_heard_share_to_the_last_whole_word() -> None:
    t = Transcript()
    t.partial("a1", "one two three four", 0.0)
    t.cut_short("a1", 0.5)
    [turn] = t.turns
    assert (turn.text, turn.cut_short) == ("one two", True)
    assert t.as_items()[0]["content"][0]["text"].endswith(
        "[cut off here: the caller heard only this much]"
    )


def test_a_renewal_at_a_pause_seeds_and_asks_for_nothing() -> None:
    """A renewal is counted as one (not a reconnect); its session gets both sides and the
    note to carry on, and no response: nobody was owed a word."""
    core = transcribing_core(greeting_instructions="Hello!")
    core.receive_realtime(rt.SpeechStopped("u1", 900), 900.0)
    core.receive_realtime(rt.Transcribed("caller", "u1", "Hi"), 1000.0)
    core.receive_realtime(rt.Transcribed("assistant", "a1", "Hello, how can I help?"), 1100.0)
    core.new_session(announce=False, renewal=True)
    assert (core.stats.renewals, core.stats.reconnects) == (1, 0)
    events = upstream(core.receive_realtime(rt.SessionUpdated(session()), 2000.0))
    assert [e["type"] for e in events] == ["conversation.item.create"] * 3
    assert [e["item"]["role"] for e in events] == ["user", "assistant", "system"]
    assert events[2]["item"]["content"][0]["text"] == POLICY.continuation


def test_a_renewal_that_cuts_an_answer_reseeds_it_and_carries_it_on() -> None:
    """No pause came before the limit: the answer in progress is cut at what was written
    to Twilio (all of which plays) and the fresh session continues it, without a greeting."""
    core = ready_core()
    core.receive_realtime(rt.ResponseCreated("r1"), 0.0)
    core.receive_realtime(rt.TranscriptDelta("a1", "First half "), 0.0)
    [chunk] = core.receive_realtime(rt.AudioDelta("r1", "a1", DELTA), 0.0)
    assert isinstance(chunk, Playback)
    core.render(chunk, 10.0)
    core.receive_realtime(rt.AudioDelta("r1", "a1", DELTA), 20.0)  # received, never written
    core.receive_realtime(rt.TranscriptDelta("a1", "second half"), 20.0)
    core.new_session(announce=False, renewal=True)
    events = upstream(core.receive_realtime(rt.SessionUpdated(session()), 100.0))
    assert events[0]["item"]["content"][0]["text"].startswith("First half [cut off here")
    assert events[-1]["response"]["instructions"] == POLICY.renew_resume_instructions


def test_a_response_the_server_begins_while_closing_is_cancelled_unheard() -> None:
    """The goodbye is spoken; the server's idle timer fires again and it starts a re-prompt:
    that response is cancelled at once and none of its audio plays, so the call can end."""
    core = ready_core(idle_reprompts=0)
    core.receive_realtime(rt.TimeoutTriggered("t1"), 0.0)
    core.receive_realtime(rt.ResponseCreated("reprompt"), 1.0)
    core.receive_realtime(done("reprompt", "cancelled"), 2.0)  # the goodbye is asked for
    [cancel] = upstream(core.receive_realtime(rt.ResponseCreated("again"), 3.0))
    assert (cancel["type"], cancel["response_id"]) == ("response.cancel", "again")
    assert core.receive_realtime(rt.AudioDelta("again", "i9", DELTA), 4.0) == []
