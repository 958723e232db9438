"""CallCore's own requests: the closing line told by its metadata, retries as asked, keypad
digits before the session, and answers the bridge asks for when the server does not."""

from __future__ import annotations

from typing import Any

from tests.support.call_core import done, play_response, policy_core, ready_core, session, upstream
from voicebridge.core import realtime as rt
from voicebridge.core import twilio as tw
from voicebridge.core.actions import ClosingStarted, EndCall, Ignored
from voicebridge.core.call import CallCore
from voicebridge.core.caller_turns import KeypadPause
from voicebridge.core.responses import Requests

SID = "MZ" + "1" * 32


def created(
    core: CallCore, response_id: str, create: dict[str, Any] | None, now: float
) -> list[dict[str, Any]]:
    """``response.created`` as the server sends it for ``create`` (None: its own, VAD)."""
    metadata = create["response"]["metadata"] if create else None
    return upstream(core.receive_realtime(rt.ResponseCreated(response_id, metadata), now))


def test_every_response_create_is_tagged_with_its_event_id() -> None:
    """The tag rides in the response's metadata, which the server echoes back."""
    core = policy_core(greeting_instructions="Greet.")
    [greet] = upstream(core.receive_realtime(rt.SessionUpdated(session()), 0.0))
    assert greet["response"] == {
        "instructions": "Greet.",
        "metadata": {Requests.KEY: greet["event_id"]},
    }


def test_a_server_response_arriving_first_is_not_taken_for_the_closing_line() -> None:
    """A VAD response created after the line was asked for is not the line: the call waits
    for the line's own response (matched by metadata) before it may end."""
    core = ready_core()
    [line] = upstream(core.close("draining", "Goodbye."))
    # Not the line, and never to be heard while the call closes: cancelled at once.
    [cancel] = created(core, "resp_vad", None, 10.0)
    assert (cancel["type"], cancel["response_id"]) == ("response.cancel", "resp_vad")
    core.receive_realtime(done("resp_vad", "cancelled"), 20.0)
    assert not core.closing_finished(30.0)  # the line is still to come
    created(core, "resp_line", line, 40.0)
    assert not core.closing_finished(50.0)
    assert upstream(core.receive_realtime(done("resp_line"), 60.0)) == []
    assert core.closing_finished(70.0)


def test_a_goodbye_already_said_asks_for_nothing_more() -> None:
    """close(reason, None): the next response.done sends no response.create."""
    core = ready_core()
    play_response(core, 1, 0.0)
    assert core.close("end_call", None) == []
    assert upstream(core.receive_realtime(done("resp_1"), 10.0)) == []
    assert upstream(core.receive_realtime(done("resp_2"), 20.0)) == []


def test_a_close_before_the_session_is_confirmed_asks_for_nothing() -> None:
    """No session to say the line: no response.create on response.done, no greeting after."""
    core = policy_core(greeting_instructions="Greet.")
    assert core.close("draining", "Goodbye.") == []
    assert core.closing_finished(0.0)
    assert upstream(core.receive_realtime(done("resp_1"), 10.0)) == []
    assert upstream(core.receive_realtime(rt.SessionUpdated(session()), 20.0)) == []


def test_a_failed_greeting_is_retried_as_a_greeting() -> None:
    """The retry carries the failed response's instructions; the apology its own."""
    core = policy_core(greeting_instructions="Greet.", apology_instructions="Sorry.")
    [greet] = upstream(core.receive_realtime(rt.SessionUpdated(session()), 0.0))
    created(core, "r1", greet, 1.0)
    [retry] = upstream(core.receive_realtime(done("r1", "failed"), 2.0))
    assert retry["response"]["instructions"] == "Greet."
    created(core, "r2", retry, 3.0)
    [apology] = upstream(core.receive_realtime(done("r2", "failed"), 4.0))
    assert apology["response"]["instructions"] == "Sorry."
    created(core, "r3", apology, 5.0)
    assert core.receive_realtime(done("r3", "failed"), 6.0) == [
        EndCall("responses_failing", failed=True)
    ]


def test_a_failed_resume_is_retried_as_a_resume() -> None:
    """After a reconnect, the word to the caller is asked for again if it fails."""
    core = ready_core(resume_instructions="We are back.")
    core.new_session(announce=True)
    [resume] = upstream(core.receive_realtime(rt.SessionUpdated(session()), 0.0))
    created(core, "r1", resume, 1.0)
    [retry] = upstream(core.receive_realtime(done("r1", "failed"), 2.0))
    assert retry["response"]["instructions"] == "We are back."


def test_a_failed_server_response_is_retried_bare() -> None:
    """A response the server created (VAD) had no instructions of ours: none on the retry."""
    core = ready_core()
    created(core, "r1", None, 0.0)
    [retry] = upstream(core.receive_realtime(done("r1", "failed"), 1.0))
    assert "instructions" not in retry["response"]


def test_a_failure_with_a_create_queued_sends_one_create() -> None:
    """A request queued behind the failed response is answered by the retry, not twice."""
    core = ready_core()
    created(core, "r1", None, 0.0)
    assert core.request_response() == []  # queued
    assert len(upstream(core.receive_realtime(done("r1", "failed"), 1.0))) == 1
    created(core, "r2", None, 2.0)
    assert upstream(core.receive_realtime(done("r2"), 3.0)) == []


def test_keypad_digits_before_the_session_are_held_then_sent() -> None:
    """Digits pressed before session.updated go up after it, in order, then the answer."""
    core = policy_core()
    assert core.receive_twilio(tw.Dtmf(SID, "4"), 0.0) == []
    assert core.receive_twilio(tw.Dtmf(SID, "2"), 100.0) == []
    assert core.dtmf_pause(1100.0) == []  # no session yet: nothing is asked for
    events = upstream(core.receive_realtime(rt.SessionUpdated(session()), 1500.0))
    texts = [e["item"]["content"][0]["text"] for e in events[:2]]
    assert texts == ["[keypad] 4", "[keypad] 2"]
    assert [e["type"] for e in events[2:]] == ["response.create"]  # the pause is over
    assert core.stats.dtmf == 2 and not core.stats.ignored


def test_held_digits_come_before_the_greeting_which_answers_them() -> None:
    """With a greeting, the digits precede it and no second response is asked for."""
    core = policy_core(greeting_instructions="Greet.")
    core.receive_twilio(tw.Dtmf(SID, "9"), 0.0)
    events = upstream(core.receive_realtime(rt.SessionUpdated(session()), 100.0))
    assert [e["type"] for e in events] == ["conversation.item.create", "response.create"]
    assert events[1]["response"]["instructions"] == "Greet."
    assert core.dtmf_pause(1100.0) == []


def test_held_digits_are_bounded() -> None:
    """Past KeypadPause.MAX_HELD digits before the session, the rest are ignored, counted."""
    core = policy_core()
    for _ in range(KeypadPause.MAX_HELD):
        assert core.receive_twilio(tw.Dtmf(SID, "1"), 0.0) == []
    assert core.receive_twilio(tw.Dtmf(SID, "1"), 0.0) == [Ignored("dtmf_held_too_many")]
    events = upstream(core.receive_realtime(rt.SessionUpdated(session()), 0.0))
    assert len(events) == KeypadPause.MAX_HELD


def test_a_digit_is_caller_activity_for_the_idle_count() -> None:
    """A caller answering by keypad is not idle: the count starts again."""
    core = ready_core(idle_reprompts=1)
    assert core.receive_realtime(rt.TimeoutTriggered("t1"), 0.0) == []
    core.receive_twilio(tw.Dtmf(SID, "1"), 100.0)
    core.dtmf_pause(1100.0)
    assert core.receive_realtime(rt.TimeoutTriggered("t2"), 9000.0) == []
    assert core.receive_realtime(rt.TimeoutTriggered("t3"), 18000.0) == []
    assert core.receive_realtime(rt.ResponseCreated("r"), 18000.0)[-1] == ClosingStarted(
        "idle_caller"
    )


def test_a_timeout_while_digits_await_their_answer_is_not_counted() -> None:
    """Silence in the middle of keying a number is the caller at work."""
    core = ready_core(idle_reprompts=0)
    core.receive_twilio(tw.Dtmf(SID, "1"), 0.0)
    assert core.receive_realtime(rt.TimeoutTriggered("t1"), 500.0) == []


def test_without_create_response_the_bridge_answers_each_committed_turn() -> None:
    """create_response off: a commit asks for the answer; one ending during a response is
    answered once that response is done."""
    core = ready_core(create=False)
    [create] = upstream(core.receive_realtime(rt.Committed("u1"), 0.0))
    assert create["type"] == "response.create"
    created(core, "r1", create, 10.0)
    assert core.receive_realtime(rt.Committed("u2"), 20.0) == []  # queued behind r1
    [answer] = upstream(core.receive_realtime(done("r1"), 30.0))
    assert answer["type"] == "response.create"


def test_with_create_response_the_server_answers_turns() -> None:
    """The session's default: a commit asks the bridge for nothing."""
    core = ready_core()
    assert core.receive_realtime(rt.Committed("u1"), 0.0) == []
