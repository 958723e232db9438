"""What the caller heard of each model item, matched by bytes or, after conversion, by sound."""

from __future__ import annotations

import pytest

from voicebridge.core.transcode import ModelToCaller
from voicebridge.fake_realtime.clips import clip_chunks
from voicebridge.twilio_sim.heard import heard_per_item
from voicebridge.twilio_sim.player import TwilioPlayer


def deltas(clip: int, fmt: str) -> list[str]:
    return [c.audio_b64 for c in clip_chunks(clip, fmt, 100)]


def clip_ms(clip: int) -> float:
    return sum(c.ms for c in clip_chunks(clip, "audio/pcmu", 100))


@pytest.mark.parametrize("fmt", ["audio/pcmu", "audio/pcm"])
def test_each_item_is_credited_with_the_audio_heard_of_it(fmt: str) -> None:
    """Item A cut by a clear after 8 chunks (two more converted but flushed, the rest
    dropped), then B and D whole; C was never sent at all: each is credited with what was
    played of it."""
    a, b, c, d = deltas(0, fmt), deltas(1, fmt), deltas(2, fmt), deltas(3, fmt)
    bridge = ModelToCaller()  # one converter for the call, as the bridge has

    def forwarded(delta: str) -> str:
        return bridge.convert(delta) if fmt == "audio/pcm" else delta

    player = TwilioPlayer()
    for n, delta in enumerate(a[:8]):
        player.media(forwarded(delta), n * 10.0)  # faster than real time, as the model sends
    player.clear(550.0)
    for delta in a[8:10]:
        forwarded(delta)  # converted, then flushed by the barge-in: never sent
    for delta in b + d:
        player.media(forwarded(delta), 5000.0)
    items = [("A", a), ("B", b), ("C", c), ("D", d)]
    heard = heard_per_item(player, items, fmt)
    assert heard["A"] == pytest.approx(550.0)  # cut by the clear mid-chunk
    assert heard["B"] == pytest.approx(clip_ms(1), abs=1.0)
    assert heard["C"] == 0.0
    assert heard["D"] == pytest.approx(clip_ms(3), abs=1.0)
    assert sum(heard.values()) == pytest.approx(player.heard_ms())


def test_audio_that_is_none_of_the_items_is_not_credited() -> None:
    """A chunk the model never sent (say, another source) counts for no item."""
    player = TwilioPlayer()
    player.media(deltas(4, "audio/pcmu")[3], 0.0)
    assert heard_per_item(player, [("A", deltas(0, "audio/pcmu"))], "audio/pcmu") == {"A": 0.0}
