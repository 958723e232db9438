"""The closing sub-machine: a last line, one response at a time, then the end."""

from __future__ import annotations

import pytest

from voicebridge.core.closing import Closing, ClosingState


def state(c: Closing) -> ClosingState:
    return c.state  # read afresh: each assert sees the state after the calls before it


def test_the_line_is_asked_for_at_once_when_nothing_is_active() -> None:
    """Idle: ASKED, then SAYING once created, SPOKEN when that response is done."""
    c = Closing()
    assert not c.spoken and c.reason is None
    assert c.close("drain", "Goodbye.", can_speak=True, busy=False) is ClosingState.ASKED
    assert c.reason == "drain" and c.line == "Goodbye."
    c.asked("vb_1")
    assert not c.response_created("r_vad", None)  # the server's own response: not the line
    assert state(c) is ClosingState.ASKED
    assert not c.response_created("r_line", "vb_1")
    assert state(c) is ClosingState.SAYING
    assert not c.response_done("r_other")  # another response's end changes nothing
    assert not c.spoken
    assert not c.response_done("r_line")
    assert state(c) is ClosingState.SPOKEN and c.spoken


def test_an_active_response_is_cancelled_before_the_line() -> None:
    """Busy: CANCELLING; the next response.done asks for the line."""
    c = Closing()
    assert c.close("session_cap", "Bye.", can_speak=True, busy=True) is ClosingState.CANCELLING
    c.response_created("r_late", None)  # not the line: nothing was asked yet
    assert state(c) is ClosingState.CANCELLING
    assert c.response_done("r_cancelled")
    assert state(c) is ClosingState.ASKED


@pytest.mark.parametrize(
    ("instructions", "can_speak"), [(None, True), ("Bye.", False)], ids=["said", "no_session"]
)
def test_without_a_line_to_wait_for_the_call_may_end(
    instructions: str | None, can_speak: bool
) -> None:
    """A line already said, or no session to say it: UNSAID, spoken at once, and no
    response.done asks for a line after all."""
    c = Closing()
    assert c.close("tool", instructions, can_speak=can_speak, busy=True) is ClosingState.UNSAID
    assert c.spoken
    assert not c.response_done("r1")
    assert state(c) is ClosingState.UNSAID and c.spoken
    assert not c.response_done("r2")


def test_closing_twice_is_a_local_error() -> None:
    """The dispatcher closes once; a second close is a bug, not a transition."""
    c = Closing()
    c.close("drain", None, can_speak=True, busy=False)
    with pytest.raises(RuntimeError, match="expected an open call"):
        c.close("drain", None, can_speak=True, busy=False)


@pytest.mark.parametrize(
    "before",
    [ClosingState.UNSAID, ClosingState.ASKED, ClosingState.SAYING, ClosingState.SPOKEN],
)
def test_a_closing_that_yields_is_called_off_by_the_caller(before: ClosingState) -> None:
    """The model's goodbye: caller speech in any closing state reopens the call."""
    c = Closing()
    c.close(
        "end_call",
        None if before is ClosingState.UNSAID else "Bye.",
        can_speak=True,
        busy=False,
        yields=True,
    )
    c.asked("vb_1")
    if before in (ClosingState.SAYING, ClosingState.SPOKEN):
        c.response_created("r_line", "vb_1")
    if before is ClosingState.SPOKEN:
        c.response_done("r_line")
    assert state(c) is before
    assert c.caller_spoke()
    assert state(c) is ClosingState.OPEN and c.reason is None and not c.spoken
    # A line asked for but not yet begun is cut when it comes; nothing else is.
    assert c.response_created("r_line", "vb_1") is (before is ClosingState.ASKED)
    assert not c.response_created("r_other", "vb_2")
    c.close("end_call", None, can_speak=True, busy=False, yields=True)  # closable again


def test_a_closing_imposed_on_the_call_does_not_yield() -> None:
    """A drain or the session limit ends the call whatever the caller says."""
    c = Closing()
    c.close("draining", "Bye.", can_speak=True, busy=False)
    assert not c.caller_spoke()
    assert c.reason == "draining" and state(c) is ClosingState.ASKED
    assert not Closing().caller_spoke()  # nothing to call off
