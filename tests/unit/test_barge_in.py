"""The barge-in decision over received items, with a real playback estimate and no clock."""

from __future__ import annotations

from voicebridge.core.barge_in import Cut, ReceivedItems
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
    assert items.barge_in(5.0, server_cancels=True) == Cut("i1", 0, 0.0)
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
    assert cut == Cut("i1", 250, 600.0, cancel="r1")
    assert not playback.playing(250.0)  # the clear was accounted for


def test_the_server_cancels_by_itself_when_it_interrupts() -> None:
    """With interrupt_response on, no cancel is asked for; the response is still cut."""
    items, playback, responses = setup()
    responses.created("r1")
    items.received("i1", "r1", 200.0)
    playback.audio_written("i1", 200.0, 0.0)
    assert items.barge_in(50.0, server_cancels=True).cancel is None
    assert responses.is_interrupted("r1")


def test_audio_of_a_replaced_session_is_cleared_not_truncated() -> None:
    """After a new session the old item means nothing upstream: no truncate."""
    items, playback, responses = setup()
    items.received("i_old", "r_old", 500.0)
    playback.audio_written("i_old", 500.0, 0.0)
    items.forget()
    responses.created("r_new")
    assert items.pending(100.0)  # still playing at Twilio
    assert items.barge_in(100.0, server_cancels=False) == Cut(cancel="r_new")
    assert not items.truncated("i_old")


def test_only_recent_items_are_kept() -> None:
    """The oldest item is forgotten once more than RECENT were received."""
    items, _, _ = setup()
    for n in range(RECENT + 1):
        items.received(f"i{n}", "r", 10.0)
    items.barge_in(0.0, server_cancels=True)  # cuts the newest queued item
    assert items.truncated(f"i{RECENT}")
    assert not items.truncated("i0")
