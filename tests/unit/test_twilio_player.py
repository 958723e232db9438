"""TwilioPlayer: Twilio's playback buffer, mark echoes, clear and hang-up."""

from __future__ import annotations

import base64

import pytest

from voicebridge.twilio_sim.player import TwilioPlayer


def ulaw(ms: int, byte: int = 0xFF) -> str:
    """Base64 μ-law audio lasting ``ms`` (8 bytes per ms); ``byte`` makes payloads distinct."""
    return base64.b64encode(bytes([byte]) * (8 * ms)).decode()


A, B, C, D = ulaw(100, 1), ulaw(100, 2), ulaw(100, 3), ulaw(100, 4)


def test_chunk_duration_comes_from_the_payload() -> None:
    """A chunk lasts its μ-law byte count / 8 ms, whatever the base64 padding."""
    player = TwilioPlayer()
    assert [player.media(ulaw(ms), at=0).duration for ms in (20, 100)] == [20.0, 100.0]
    assert player.media(base64.b64encode(b"\xff" * 161).decode(), at=0).duration == 161 / 8


def test_chunks_play_back_to_back_from_arrival() -> None:
    """An idle buffer plays a chunk on arrival; later chunks queue behind the audio already buffered."""
    player = TwilioPlayer()
    a = player.media(A, at=0)
    b = player.media(B, at=10)
    c = player.media(C, at=150)
    assert (a.start, b.start, c.start) == (0, 100, 200)
    assert player.busy_until == 300
    d = player.media(D, at=500)  # buffer ran dry at 300
    assert d.start == 500
    assert player.busy_until == 600


def test_playout_delay_applies_only_when_idle() -> None:
    """With playout_ms, a chunk reaching an idle buffer starts that much later; queued chunks do not wait again."""
    player = TwilioPlayer(playout_ms=60)
    a = player.media(A, at=0)
    b = player.media(B, at=50)
    assert (a.start, b.start) == (60, 160)
    c = player.media(C, at=1000)
    assert c.start == 1060
    assert [ch.arrived for ch in player.chunks] == [0, 50, 1000]


def test_unplayed_chunks_count_as_fully_played() -> None:
    """Without a clear or cut, every chunk's played time equals its duration."""
    player = TwilioPlayer()
    for i, p in enumerate((A, B, C)):
        player.media(p, at=i)
    assert [c.played for c in player.chunks] == [100, 100, 100]
    assert player.heard_ms() == 300


def test_mark_echo_when_playback_reaches_it() -> None:
    """A mark sent after audio is echoed when playback reaches it, and not before."""
    player = TwilioPlayer(playout_ms=20)
    player.media(A, at=0)
    player.mark("m1", at=1)
    player.media(B, at=2)
    player.mark("m2", at=3)
    assert player.next_echo_time() == 120
    assert player.due_echoes(119) == []
    assert player.due_echoes(120) == [(120, "m1")]
    assert player.due_echoes(1000) == [(220, "m2")]
    assert player.next_echo_time() is None


def test_mark_echo_at_arrival_when_nothing_is_buffered() -> None:
    """A mark reaching an empty buffer is echoed at its arrival time, even with a playout delay."""
    player = TwilioPlayer(playout_ms=60)
    player.mark("idle", at=42)
    assert player.due_echoes(42) == [(42, "idle")]
    player.media(A, at=100)  # plays 160..260
    player.mark("after", at=400)
    assert player.due_echoes(400) == [(400, "after")]


def test_clear_cuts_playing_chunk_and_zeroes_later_ones() -> None:
    """clear stops the chunk being played part-way, and chunks not yet started are never heard."""
    player = TwilioPlayer()
    a, b, c = (player.media(p, at=0) for p in (A, B, C))  # 0-100, 100-200, 200-300
    player.clear(at=150)
    assert a.played == 100
    assert b.played == 50 and b.played < b.duration
    assert c.played == 0
    assert player.clears == [150]
    assert player.busy_until == 150


def test_clear_makes_pending_echoes_due_at_clear_time() -> None:
    """Marks not yet reached are echoed at the clear time; marks already reached keep their time."""
    player = TwilioPlayer()
    for name, p in (("m1", A), ("m2", B), ("m3", C)):
        player.media(p, at=0)
        player.mark(name, at=0)
    player.clear(at=150)
    assert player.due_echoes(150) == [(100, "m1"), (150, "m2"), (150, "m3")]


def test_audio_after_clear_plays_from_its_arrival() -> None:
    """After a clear the buffer is empty: new audio starts at its arrival (+playout), not after the cleared audio."""
    player = TwilioPlayer(playout_ms=40)
    player.media(A, at=0)  # 40-140
    player.media(B, at=0)  # 140-240
    player.clear(at=100)
    d = player.media(D, at=110)
    assert d.start == 150
    player.mark("m", at=120)
    assert player.due_echoes(250) == [(250, "m")]


def test_a_later_clear_does_not_recut_audio_already_cut() -> None:
    """Audio cut by an earlier clear keeps its played time when a later clear happens."""
    player = TwilioPlayer()
    a = player.media(A, at=0)
    b = player.media(B, at=0)
    player.clear(at=50)
    d = player.media(D, at=60)  # 60-160
    player.clear(at=100)
    assert (a.played, b.played, d.played) == (50, 0, 40)
    assert player.clears == [50, 100]


def test_heard_ms_total_and_by_payload() -> None:
    """heard_ms sums played time over all chunks, or only those whose payload is in the given set."""
    player = TwilioPlayer()
    for p in (A, B, C):
        player.media(p, at=0)
    player.clear(at=150)
    assert player.heard_ms() == 150
    assert player.heard_ms({B}) == 50
    assert player.heard_ms({A, C}) == 100
    assert player.heard_ms(set()) == 0
    assert player.heard_ms({ulaw(100, 9)}) == 0


def test_cut_stops_playback_without_touching_echoes() -> None:
    """cut (hang-up) stops audio at that time like clear, but records no clear and leaves echo times alone."""
    player = TwilioPlayer()
    a = player.media(A, at=0)
    player.mark("m", at=0)
    b = player.media(B, at=0)
    player.cut(at=130)
    assert (a.played, b.played) == (100, 30)
    assert player.clears == []
    assert player.heard_ms() == 130
    assert player.next_echo_time() == 100


@pytest.mark.parametrize(("at", "played"), [(0, 0), (30, 0), (90, 50), (200, 100)])
def test_cut_during_playout_delay(at: float, played: float) -> None:
    """A chunk waiting out the playout delay is heard only from its start, capped at its duration."""
    player = TwilioPlayer(playout_ms=40)
    chunk = player.media(A, at=0)  # 40-140
    player.cut(at=at)
    assert chunk.played == played
