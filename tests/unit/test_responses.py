"""The response sub-machines: one at a time, failures retried, tools awaited."""

from __future__ import annotations

from voicebridge.core.responses import (
    RECENT,
    AfterFailure,
    FailureLadder,
    Requests,
    Responses,
    ToolCalls,
)


def test_a_create_is_sent_when_idle_and_queued_while_active() -> None:
    """A response asked for over an active one waits for that one's response.done."""
    r = Responses()
    assert r.request()
    r.created("r1")
    assert not r.request()
    assert not r.done("r0")  # not the active one: r1 is still in progress...
    assert r.active == "r1"  # ...but the queued create stays queued
    assert r.done("r1")
    assert r.active is None
    assert r.request()  # sending it clears the queue
    r.created("r2")
    assert not r.done("r2")


def test_recent_ids_are_remembered_and_bounded() -> None:
    """Done, spoken and interrupted ids are kept for the most recent responses only."""
    r = Responses()
    for n in range(RECENT + 1):
        r.done(f"r{n}")
        r.spoke(f"r{n}")
        r.interrupt(f"r{n}")
    assert not r.is_done("r0") and r.is_done("r1") and r.is_done(f"r{RECENT}")
    assert not r.has_spoken("r0") and r.has_spoken(f"r{RECENT}")
    assert not r.is_interrupted("r0") and r.is_interrupted(f"r{RECENT}")


def test_each_delta_of_a_response_counts_as_speaking_once() -> None:
    """A response's many deltas take one place among the responses that spoke."""
    r = Responses()
    r.spoke("a")
    for _ in range(RECENT * 2):
        r.spoke("b")
    assert r.has_spoken("a")


def test_a_lost_session_cuts_the_active_response() -> None:
    """The active response of a lost session is interrupted and nothing is active."""
    r = Responses()
    r.forget_active()
    assert r.active is None and not r.is_interrupted("r1")
    r.created("r1")
    r.forget_active()
    assert r.active is None and r.is_interrupted("r1")


def test_failures_climb_the_ladder_until_a_completed_response() -> None:
    """Retry, then apologise, then give up; a completed response starts again."""
    ladder = FailureLadder()
    assert ladder.failed() is AfterFailure.RETRY
    assert ladder.failed() is AfterFailure.APOLOGISE
    assert ladder.failed() is AfterFailure.GIVE_UP
    assert ladder.failed() is AfterFailure.GIVE_UP
    ladder.completed()
    assert ladder.failed() is AfterFailure.RETRY


def test_the_model_answers_after_the_last_tool() -> None:
    """With two tools running, only the second result lets the model answer."""
    tools = ToolCalls()
    tools.started(2)
    assert not tools.finished()
    assert tools.finished()
    assert tools.finished()  # a stray result never makes the count negative
    assert tools.running == 0


def test_our_requests_are_known_by_their_metadata_and_keep_their_instructions() -> None:
    """A response carrying our tag answers that request, with its instructions, once."""
    r = Requests()
    assert r.asked("vb_1", "Greet.") == {Requests.KEY: "vb_1"}
    r.asked("vb_2", None)
    assert r.created("resp_vad", None) is None  # the server's own
    assert r.created("resp_x", {Requests.KEY: "vb_9"}) is None  # never asked for
    assert r.created("resp_1", {Requests.KEY: "vb_1"}) == "vb_1"
    assert r.created("resp_1b", {Requests.KEY: "vb_1"}) is None  # answered already
    assert r.instructions("resp_1") == "Greet."
    assert r.instructions("resp_1") is None  # forgotten once read
    assert r.created("resp_2", {Requests.KEY: "vb_2"}) == "vb_2"
    assert r.instructions("resp_2") is None


def test_unanswered_requests_are_bounded() -> None:
    """Requests whose response never came (a lost session) do not pile up."""
    r = Requests()
    for n in range(RECENT + 1):
        r.asked(f"vb_{n}", "x")
    assert r.created("resp_0", {Requests.KEY: "vb_0"}) is None
    assert r.created("resp_1", {Requests.KEY: "vb_1"}) == "vb_1"
