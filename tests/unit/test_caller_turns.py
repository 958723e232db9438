"""Idle re-prompts and keypad pauses, with explicit times."""

from __future__ import annotations

from voicebridge.core.caller_turns import IdleCaller, KeypadPause


def test_idle_timeouts_end_the_call_past_the_limit() -> None:
    """Up to the limit the server re-prompts; the next unanswered timeout ends the call."""
    idle = IdleCaller(limit=2)
    assert not idle.timed_out()
    assert not idle.timed_out()
    assert idle.timed_out()


def test_speech_resets_the_idle_count() -> None:
    """An answer starts the count again."""
    idle = IdleCaller(limit=1)
    assert not idle.timed_out()
    idle.answered()
    assert not idle.timed_out()
    assert idle.timed_out()


def test_no_reprompts_ends_at_the_first_timeout() -> None:
    """A limit of 0 ends the call at the first idle timeout."""
    assert IdleCaller(limit=0).timed_out()


def test_the_keypad_pause_fires_once_a_second_after_the_last_digit() -> None:
    """More digits push the pause back; it fires once, then waits for a new digit."""
    pad = KeypadPause()
    assert not pad.paused(5000.0)  # no digit yet
    pad.digit(0.0)
    assert pad.waiting
    assert not pad.paused(999.0)
    pad.digit(900.0)  # another digit: wait again
    assert not pad.paused(1500.0)
    assert pad.paused(1900.0)
    assert not pad.waiting
    assert not pad.paused(3000.0)


def test_digits_are_held_bounded_and_released_in_order() -> None:
    """Before a session, digits are kept (at most MAX_HELD), then handed over once."""
    pad = KeypadPause()
    assert pad.hold("1", 0.0) and pad.hold("2", 10.0)
    assert pad.waiting  # their pause runs from the last one
    assert pad.release() == ["1", "2"]
    assert pad.release() == []
    for _ in range(KeypadPause.MAX_HELD):
        assert pad.hold("9", 20.0)
    assert not pad.hold("9", 30.0)
    pad.answered()
    assert not pad.waiting and not pad.paused(10_000.0)
