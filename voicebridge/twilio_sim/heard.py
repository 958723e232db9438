"""What the caller heard of each of the model's audio items, whatever the upstream's format.

The bridge turns each ``response.output_audio.delta`` into one Twilio ``media`` chunk, in
order: unchanged when the upstream speaks ``audio/pcmu``, converted to μ-law when it speaks
``audio/pcm``, by one converter per call whose filter state runs from delta to delta. So the
chunks Twilio played are the deltas the model sent, less those never written: late deltas of
an interrupted response (dropped before conversion) and audio queued when a barge-in
flushed it (converted, then dropped). This module replays that conversion over the deltas in
the order sent and matches its output, byte for byte, to the chunks in the order played.
Across a run of deltas that were not written, the state is the one after converting some
first part of the run (those queued before the barge-in), so every such state is kept until
the next chunk shows which it was.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from voicebridge.core.transcode import ModelToCaller
from voicebridge.twilio_sim.player import TwilioPlayer

__all__ = ["heard_per_item"]

_MAX_RUN = 256  # deltas in a row never written before the search gives up on the rest


def heard_per_item(
    player: TwilioPlayer, items: Sequence[tuple[str, Sequence[str]]], output_format: str
) -> dict[str, float]:
    """Ms the caller heard of each item, by id.

    Args:
        items: (item id, its deltas as the upstream sent them, base64), in the order sent.
        output_format: the session's output format (``audio/pcmu`` or ``audio/pcm``).
    """
    heard = {item_id: 0.0 for item_id, _ in items}
    chunks = player.chunks
    passthrough = output_format != "audio/pcm"
    # Converter states the bridge may be in: after converting the first j deltas of the
    # current run of deltas not (yet) seen at Twilio, for each j.
    states = [ModelToCaller()]  # its state is immutable values: a shallow copy forks it
    k = 0  # the next chunk Twilio played
    for item_id, delta in ((i, d) for i, deltas in items for d in deltas):
        if k >= len(chunks):
            break
        if passthrough:
            if delta == chunks[k].payload:
                heard[item_id] += chunks[k].played
                k += 1
            continue
        for state in states:
            trial = copy.copy(state)
            out = trial.convert(delta)
            if out and out == chunks[k].payload:
                heard[item_id] += chunks[k].played
                k += 1
                states = [trial]
                break
        else:
            if len(states) < _MAX_RUN:  # or: this one was converted too, and not written
                grown = copy.copy(states[-1])
                grown.convert(delta)
                states.append(grown)
    return heard
