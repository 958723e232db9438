"""The local barge-in machine: pause on local speech, confirm or resume, no I/O."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from voicebridge.config import ConfigError, Settings
from voicebridge.core.local_barge_in import HeldAudio, LocalBargeIn, LocalSettings
from voicebridge.server.session import call_policy
from voicebridge.twilio_sim.line_sounds import noise_burst

FRAME = 160
QUIET = noise_burst(20, rms=40, seed=1)
LOUD = noise_burst(20, rms=3000, seed=2)
SETTINGS = LocalSettings(min_speech_ms=60, window_ms=600, rewind_ms=200)


def chunk(n: int, ms: float = 100.0) -> str:
    """A distinct chunk: ``ms`` of μ-law bytes all equal to ``n``."""
    return base64.b64encode(bytes([n]) * int(ms * 8)).decode()


def feed(local: LocalBargeIn, frames: list[bytes], *, armed: bool = True) -> list[bool]:
    return [local.caller_frame(f, 0.0, armed) for f in frames]


def test_the_detector_runs_only_while_armed() -> None:
    """Not armed: frames are not even measured; armed, a sound of 60 ms is an onset."""
    local = LocalBargeIn(SETTINGS)
    assert feed(local, [LOUD] * 10, armed=False) == [False] * 10
    assert local.detector.floor < 0  # never fed
    assert feed(local, [QUIET] * 5 + [LOUD] * 3) == [False] * 7 + [True]


def test_a_sound_from_before_the_answer_is_not_an_onset_until_it_ends() -> None:
    """Arming resets the sound: speech going on when the answer starts counts anew, once."""
    local = LocalBargeIn(SETTINGS)
    feed(local, [QUIET] * 5 + [LOUD] * 3)
    assert feed(local, [LOUD] * 3, armed=False) == [False] * 3
    assert feed(local, [LOUD] * 3) == [False, False, True]


def test_no_onset_while_paused_and_the_window_deadline() -> None:
    local = LocalBargeIn(SETTINGS)
    feed(local, [QUIET] * 5 + [LOUD] * 3)
    local.paused_at(1000.0, {"i1": 800.0}, 5000.0)
    assert local.paused and local.deadline == 1600.0
    assert feed(local, [QUIET] * 10 + [LOUD] * 5, armed=False) == [False] * 15
    assert not local.expired(1599.0) and local.expired(1600.0)
    pause = local.confirmed()
    assert pause.heard == {"i1": 800.0} and not local.paused


def test_resume_resends_from_the_cut_less_the_rewind() -> None:
    """The item cut mid-way from 200 ms before the cut (sliced mid-chunk), the rest whole;
    an item heard before the cut is not resent, one that arrived during the pause is."""
    local = LocalBargeIn(SETTINGS)
    local.received("i0", "r0", chunk(1), 100.0)  # heard in full before
    for n in range(5):
        local.received("i1", "r1", chunk(10 + n), 100.0)
    local.paused_at(0.0, {"i1": 250.0}, 0.0)
    local.received("i1", "r1", chunk(20), 100.0)  # held during the pause
    local.received("i2", "r1", chunk(30), 100.0)
    again = local.resume()
    assert [(r.item_id, r.offset_ms, r.ms) for r in again] == [
        ("i1", 50.0, 50.0),
        ("i1", 100.0, 100.0),
        ("i1", 200.0, 100.0),
        ("i1", 300.0, 100.0),
        ("i1", 400.0, 100.0),
        ("i1", 500.0, 100.0),
        ("i2", 0.0, 100.0),
    ]
    assert base64.b64decode(again[0].payload) == bytes([10]) * 400  # the chunk's last 50 ms
    assert again[1].payload == chunk(11) and again[-1].payload == chunk(30)
    assert not local.paused


def test_a_short_cut_rewinds_to_the_start_and_nothing_heard_starts_at_zero() -> None:
    local = LocalBargeIn(SETTINGS)
    local.received("i1", "r1", chunk(1), 100.0)
    local.paused_at(0.0, {"i1": 120.0, "i2": 0.0}, 0.0)
    local.received("i2", "r1", chunk(2), 100.0)
    assert [(r.item_id, r.offset_ms) for r in local.resume()] == [("i1", 0.0), ("i2", 0.0)]


def test_held_audio_keeps_what_a_rewind_needs_and_drops_played_items() -> None:
    held = HeldAudio()
    held.add("i0", "r0", chunk(1), 100.0)
    for n in range(30):
        held.add("i1", "r1", chunk(n), 100.0)
    held.heard("i1", 2500.0, keep_ms=1200.0)
    assert held.items() == ["i1"]
    again = held.from_({"i1": 0.0})
    assert again[0].offset_ms == 1200.0  # the chunk ending at 1300 covers 2500 - 1200
    held.heard("unknown", 9999.0, keep_ms=0.0)  # an item not held: nothing changes
    assert held.items() == ["i1"]


def test_heard_trims_only_outside_a_pause_and_abandon_forgets() -> None:
    local = LocalBargeIn(SETTINGS)
    for n in range(30):
        local.received("i1", "r1", chunk(n), 100.0)
    local.paused_at(0.0, {"i1": 2800.0}, 0.0)
    local.heard("i1", 2800.0)
    assert local.held.from_({"i1": 0.0})[0].offset_ms == 0.0  # kept during the pause
    local.abandon()
    assert not local.paused and local.held.items() == []


def test_echo_of_written_audio_and_the_cut() -> None:
    """Written audio raises the echo reference; a pause cuts what was never heard."""
    local = LocalBargeIn(SETTINGS)
    loud = base64.b64encode(noise_burst(1000, rms=5000, seed=3)).decode()
    local.written(0.0, loud)
    assert local.echo.level(500.0) > 3000
    local.paused_at(0.0, {}, 400.0)
    assert local.echo.level(500.0) > 3000 and local.echo.level(800.0) == 0


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"LOCAL_BARGE_IN": "sometimes"}, "LOCAL_BARGE_IN"),
        ({"LOCAL_BARGE_IN_MIN_SPEECH_MS": "10"}, "LOCAL_BARGE_IN_MIN_SPEECH_MS"),
        ({"LOCAL_BARGE_IN_MIN_SPEECH_MS": "60ms"}, "LOCAL_BARGE_IN_MIN_SPEECH_MS"),
        ({"LOCAL_BARGE_IN_WINDOW_MS": "50"}, "LOCAL_BARGE_IN_WINDOW_MS"),
        ({"LOCAL_BARGE_IN_WINDOW_MS": "9000"}, "LOCAL_BARGE_IN_WINDOW_MS"),
        ({"LOCAL_BARGE_IN_REWIND_MS": "5000"}, "LOCAL_BARGE_IN_REWIND_MS"),
    ],
)
def test_settings_are_validated_at_start_up(env: dict[str, str], name: str) -> None:
    """A bad LOCAL_BARGE_IN setting stops start-up with its name in the message."""
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env)


def test_the_core_gets_the_settings_only_when_on() -> None:
    """On by default; off, the core runs nothing of it."""
    assert call_policy(Settings.from_env({})).local_barge_in == LocalSettings(60, 600, 200)
    assert call_policy(Settings.from_env({"LOCAL_BARGE_IN": "off"})).local_barge_in is None
    rewind = Settings.from_env({"LOCAL_BARGE_IN_REWIND_MS": "0"})
    assert call_policy(rewind).local_barge_in == LocalSettings(60, 600, 0)


def test_the_settings_are_documented() -> None:
    """README's table and .env.example give LOCAL_BARGE_IN's settings and their defaults."""
    root = Path(__file__).resolve().parents[2]
    readme, example = (root / "README.md").read_text(), (root / ".env.example").read_text()
    defaults = Settings()
    for name, shown in {
        "LOCAL_BARGE_IN": "on" if defaults.local_barge_in else "off",
        "LOCAL_BARGE_IN_MIN_SPEECH_MS": str(defaults.local_barge_in_min_speech_ms),
        "LOCAL_BARGE_IN_WINDOW_MS": str(defaults.local_barge_in_window_ms),
        "LOCAL_BARGE_IN_REWIND_MS": str(defaults.local_barge_in_rewind_ms),
    }.items():
        assert f"| `{name}` | `{shown}` |" in readme, name
        assert f"\n{name}={shown}\n" in example, name
