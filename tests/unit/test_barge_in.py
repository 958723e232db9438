"""The barge-in decision over received items, with a real playback estimate and no clock."""

from __future__ import annotations

from voicebridge.core.barge_in import Cut, ReceivedItems, Truncation
from voicebridge.core.playback import PlaybackTracker
from voicebridge.core.responses import RECENT, Responses


def setup() -> tuple[ReceivedItems, PlaybackTracker, Responses]:
    playback, responses = PlaybackTracker(), Responses()
    return ReceivedItems(playback, responses), playback, responses


def test_queued_audio_is_pending_and_cut_at_zero() -> None:
    """Audio received but not yet written is pending; a cut there truncates at 0 ms."""
    items, _, responses = setup()
    assert not items.pending(0.0)
    responses.created("r1")
    items.received("i1", "r1", 100.0)
    assert items.pending(0.0)
    assert items.barge_in(5.0, server_cancels=True) == Cut(True, (Truncation("i1", 0, 0.0),))
    assert items.truncated("i1")
    assert responses.is_interrupted("r1")
    assert not items.pending(5.0)  # an interrupted response's queued audio is dropped


def test_playing_audio_is_cut_at_the_heard_position() -> None:
    """Written audio still playing is truncated at what was heard, capped at what was sent."""
    items, playback, responses = setup()
    responses.created("r1")
    items.received("i1", "r1", 1000.0)
    playback.audio_written("i1", 600.0, 0.0)  # no echo yet, no network: heard = elapsed
    cut = items.barge_in(250.0, server_cancels=False)
    assert cut == Cut(True, (Truncation("i1", 250, 600.0),), cancel="r1")
    assert not playback.playing(250.0)  # the clear was accounted for


def test_the_server_cancels_by_itself_when_it_interrupts() -> None:
    """With interrupt_response on, no cancel is asked for; the response is still cut."""
    items, playback, responses = setup()
    responses.created("r1")
    items.received("i1", "r1", 200.0)
    playback.audio_written("i1", 200.0, 0.0)
    assert items.barge_in(50.0, server_cancels=True).cancel is None
    assert responses.is_interrupted("r1")


def test_a_response_still_generating_is_truncated_though_all_received_was_heard() -> None:
    """Heard == received, but the response is in progress: the server's item may be longer."""
    items, playback, responses = setup()
    responses.created("r1")
    items.received("i1", "r1", 300.0)
    playback.audio_written("i1", 300.0, 0.0)
    playback.mark_echoed("a1", 300.0)  # Twilio played it all
    assert not items.pending(1000.0)
    assert items.interrupts(1000.0)  # yet speech now is a barge-in
    cut = items.barge_in(1000.0, server_cancels=False)
    assert cut == Cut(False, (Truncation("i1", 300, 300.0),), cancel="r1")  # nothing to clear
    assert responses.is_interrupted("r1")  # its deltas still in flight are dropped


def test_a_generating_response_without_audio_yet_is_cut_without_a_truncate() -> None:
    """A response that has said nothing yet: interrupted, cancelled, nothing to truncate."""
    items, _, responses = setup()
    responses.created("r1")
    assert items.interrupts(0.0)
    assert items.barge_in(0.0, server_cancels=False) == Cut(cancel="r1")
    assert not items.interrupts(10.0)  # cut once: the next speech is no barge-in


def test_a_done_response_fully_heard_is_no_barge_in() -> None:
    """Everything played and the response done: the caller simply takes a turn."""
    items, playback, responses = setup()
    responses.created("r1")
    items.received("i1", "r1", 300.0)
    playback.audio_written("i1", 300.0, 0.0)
    responses.done("r1")
    assert not items.interrupts(10_000.0)


def test_items_queued_behind_the_playing_one_are_truncated_at_zero() -> None:
    """A later answer waiting behind the one playing was never heard: truncated at 0."""
    items, playback, responses = setup()
    responses.created("r1")
    items.received("i1", "r1", 1000.0)
    playback.audio_written("i1", 1000.0, 0.0)
    responses.done("r1")
    responses.created("r2")  # e.g. the answer after a tool, queued behind the first
    items.received("i2", "r2", 500.0)
    playback.audio_written("i2", 500.0, 0.0)
    cut = items.barge_in(400.0, server_cancels=True)
    assert cut.truncations == (Truncation("i1", 400, 1000.0), Truncation("i2", 0, 500.0))
    assert responses.is_interrupted("r1") and responses.is_interrupted("r2")


def test_audio_of_a_replaced_session_is_cleared_not_truncated() -> None:
    """After a new session the old item means nothing upstream: no truncate."""
    items, playback, responses = setup()
    items.received("i_old", "r_old", 500.0)
    playback.audio_written("i_old", 500.0, 0.0)
    items.forget()
    responses.created("r_new")
    assert items.pending(100.0)  # still playing at Twilio
    assert items.barge_in(100.0, server_cancels=False) == Cut(True, cancel="r_new")
    assert not items.truncated("i_old")


def test_a_new_sessions_audio_behind_a_replaced_sessions_is_cut_at_zero() -> None:
    """Old audio still playing: the new session's queued answer is truncated at 0."""
    items, playback, responses = setup()
    items.received("i_old", "r_old", 500.0)
    playback.audio_written("i_old", 500.0, 0.0)
    items.forget()
    responses.created("r_new")
    items.received("i_new", "r_new", 200.0)
    cut = items.barge_in(100.0, server_cancels=True)
    assert cut.truncations == (Truncation("i_new", 0, 0.0),)


def test_only_recent_items_are_kept() -> None:
    """The oldest item is forgotten once more than RECENT were received."""
    items, _, _ = setup()
    for n in range(RECENT + 1):
        items.received(f"i{n}", "r", 10.0)
    items.barge_in(0.0, server_cancels=True)  # cuts every queued item still known
    assert items.truncated(f"i{RECENT}")
    assert not items.truncated("i0")
