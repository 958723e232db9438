"""The upstream session as the call sees it: greeting once, resuming after a loss."""

from __future__ import annotations

from voicebridge.core.session_state import (
    OnConfirm,
    SessionPhase,
    SessionState,
    session_creates_response,
)


def phase(s: SessionState) -> SessionPhase:
    return s.phase  # read afresh: each assert sees the phase after the calls before it


def test_the_first_confirmation_greets_once() -> None:
    """A greeting call greets on its first session.updated only."""
    s = SessionState(greets=True)
    assert not s.ready
    assert s.confirmed(interrupt_response=False) is OnConfirm.GREET
    assert s.ready and not s.interrupt_response
    assert s.confirmed(interrupt_response=True) is OnConfirm.NOTHING
    assert s.interrupt_response


def test_a_call_without_a_greeting_waits_for_the_caller() -> None:
    """Without greeting instructions nothing is said on confirmation."""
    assert SessionState(greets=False).confirmed(True) is OnConfirm.NOTHING


def test_a_session_lost_before_confirmation_starts_afresh() -> None:
    """Nothing was heard from it: the next session still greets, nothing to resume."""
    s = SessionState(greets=True)
    s.replaced(announce=True)
    assert phase(s) is SessionPhase.OPENING
    assert s.confirmed(True) is OnConfirm.GREET


def test_a_confirmed_session_lost_is_resumed_when_announced() -> None:
    """After a loss the replacement re-seeds and speaks; never a second greeting."""
    s = SessionState(greets=True)
    s.confirmed(True)
    s.replaced(announce=True)
    assert phase(s) is SessionPhase.RESUMING and not s.ready
    assert s.confirmed(True) is OnConfirm.RESUME
    s.replaced(announce=False)  # a renewal at a pause: seeded, nothing said
    assert phase(s) is SessionPhase.OPENING
    assert s.confirmed(True) is OnConfirm.SEED
    assert s.confirmed(True) is OnConfirm.NOTHING  # (a second echo of the same session)


def test_a_replacement_lost_before_confirmation_still_resumes() -> None:
    """RESUMING lost again stays RESUMING: the caller is still owed the resume."""
    s = SessionState(greets=False)
    s.confirmed(True)
    s.replaced(announce=True)
    s.replaced(announce=True)
    assert phase(s) is SessionPhase.RESUMING
    assert s.confirmed(True) is OnConfirm.RESUME
    s.replaced(announce=True)
    s.replaced(announce=False)  # a replacement not to be announced: started afresh
    assert phase(s) is SessionPhase.OPENING


def test_the_confirmed_session_says_who_answers_turns() -> None:
    """interrupt_response and create_response are read from each session.updated."""
    s = SessionState(greets=False)
    assert s.create_response and s.interrupt_response
    s.confirmed(interrupt_response=False, create_response=False)
    assert not s.create_response and not s.interrupt_response


def test_create_response_is_read_from_the_session() -> None:
    """The API's default is on; off only when the session says so; no VAD, no turns."""

    def td(turn: object) -> dict[str, object]:
        return {"audio": {"input": {"turn_detection": turn}}}

    assert session_creates_response(td({"type": "server_vad"}))
    assert not session_creates_response(td({"type": "server_vad", "create_response": False}))
    assert session_creates_response(td(None))  # nobody commits a turn to answer
