"""A call carried on in a fresh session, on the virtual clock: a renewal at the session's age
limit (at a pause, seeded with both sides, no second greeting, nothing lost) and a reconnect
after a drop mid-answer (the cut answer re-seeded as far as the caller heard it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.memory_realtime import Pipe
from tests.support.shell import bridged, until
from voicebridge.core.policy import CallPolicy
from voicebridge.fake_realtime.session import FakeRealtimeOptions
from voicebridge.server.upstream_side import RENEW_WINDOW_S
from voicebridge.twilio_sim.recordings import packaged_call

POLICY = CallPolicy()
LIMIT_S = 60.0  # the renewal window opens at 30 s: after the recording's two answers


def seeded(pipe: Pipe) -> list[tuple[str, str]]:
    """(role, text) of each item the bridge created in this session."""
    return [
        (e["item"]["role"], e["item"]["content"][0]["text"])
        for _, e in pipe.events("client", "conversation.item.create")
    ]


def said(pipe: Pipe) -> list[tuple[str, str]]:
    """(role, transcript) of each turn of the session, in the order the turns began."""
    caller = {
        e["item_id"]: e["transcript"]
        for _, e in pipe.events("server", "conversation.item.input_audio_transcription.completed")
    }
    turns: list[tuple[str, str]] = []
    for _, e in sorted(
        pipe.events("server", "input_audio_buffer.speech_stopped")
        + pipe.events("server", "response.output_audio_transcript.done"),
        key=lambda pair: pair[0],
    ):
        if e["type"].endswith("speech_stopped"):
            turns.append(("user", caller[e["item_id"]]))
        else:
            turns.append(("assistant", e["transcript"]))
    return turns


def deltas_by_response(pipe: Pipe) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for _, e in pipe.events("server", "response.output_audio.delta"):
        out.setdefault(e["response_id"], set()).add(e["delta"])
    return out


def heard_in_full(chunks: list[Any], deltas: set[str]) -> bool:
    mine = [c for c in chunks if c.payload in deltas]
    return bool(mine) and all(c.played == c.duration for c in mine)


async def test_renew_at_a_pause_seeds_both_sides_and_the_model_does_not_greet_again() -> None:
    """SESSION_LIMIT_ACTION=renew at a short limit: the renewal waits for the first pause in
    the window (both answers heard to the end), the fresh session receives both sides of the
    conversation so far and is told to carry on, no response is asked of it until the
    caller speaks again (no greeting), it answers, and the renewal is counted as one."""
    async with (
        asyncio.timeout(300),
        bridged(
            session_limit_s=LIMIT_S,
            session_limit_action="renew",
            greeting_instructions="Greet the caller.",
        ) as b,
    ):
        await b.twilio.speak([], pause_after=3.0)  # the greeting, heard in silence
        await b.twilio.play(packaged_call("books_a_table"), tail_s=1.0)
        first_turn_done = b.now()
        await until(lambda: b.realtime.connects == 2 and b.call.core.session_ready, step=0.1)
        await b.twilio.play(packaged_call("books_a_table"), tail_s=4.0)
        b.twilio.stop()
        result = await b.result()
    first, second = b.realtime.pipes
    [(confirmed, _)] = first.events("server", "session.updated")
    renewed = second.opened_at - confirmed
    assert LIMIT_S - RENEW_WINDOW_S <= renewed < LIMIT_S
    assert second.opened_at >= first_turn_done - 1.0  # not before the conversation paused
    # At a pause: every answer of the first session was heard to its end, none was cut.
    answers = deltas_by_response(first)
    assert len(answers) == 3  # the greeting and two answers
    assert all(heard_in_full(b.twilio.player.chunks, d) for d in answers.values())
    assert not first.events("client", "conversation.item.truncate")
    # Both sides, in the order spoken, then the note that the call goes on.
    assert seeded(second) == [*said(first), ("system", POLICY.continuation)]
    assert [role for role, _ in said(first)] == [
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    # No greeting, no resume: the first response.create-less answer comes after speech.
    assert second.events("client", "response.create") == []
    [(spoke, _), *_] = second.events("server", "input_audio_buffer.speech_stopped")
    [(answered, _), *_] = second.events("server", "response.created")
    assert answered >= spoke  # answering the caller, not greeting
    for deltas in deltas_by_response(second).values():
        assert b.twilio.player.heard_ms(deltas) > 0
    assert (result.stats.renewals, result.stats.reconnects) == (1, 0)
    assert (result.reason, result.failed) == ("caller_hangup", False)


async def test_a_drop_mid_answer_reseeds_both_sides_and_the_cut_answer_as_heard() -> None:
    """The upstream drops while an answer is still being generated: the fresh session gets
    the caller's turn and the answer as far as it reached the caller (its transcript deltas
    so far; no finished transcript ever came), marked as cut off, then resumes."""
    options = FakeRealtimeOptions(pause_midway_ms=3000, close_after_ms=7000, fault_sessions=1)
    async with asyncio.timeout(120), bridged(options) as b:
        caller = asyncio.create_task(b.twilio.play(packaged_call("books_a_table"), tail_s=10.0))
        await until(lambda: b.realtime.connects == 2 and b.call.core.session_ready)
        await caller
        b.twilio.stop()
        result = await b.result()
    first, second = b.realtime.pipes
    assert first.closed_by == "server" and result.stats.reconnects == 1
    [(_, cut)] = first.events("server", "response.created")
    assert not first.events("server", "response.output_audio_transcript.done")  # never came
    pieces = [
        e["delta"] for _, e in first.events("server", "response.output_audio_transcript.delta")
    ]
    heard = "".join(pieces).strip()
    assert heard and b.twilio.player.heard_ms(deltas_by_response(first)[cut["response"]["id"]])
    [caller_text] = [
        e["transcript"]
        for _, e in first.events("server", "conversation.item.input_audio_transcription.completed")
    ]
    assert seeded(second) == [
        ("user", caller_text),
        ("assistant", heard + " [cut off here: the caller heard only this much]"),
        ("system", POLICY.continuation),
    ]
    [(_, resume)] = second.events("client", "response.create")
    assert resume["response"]["instructions"] == POLICY.resume_instructions


@pytest.mark.parametrize("transcription_model", ["", "gpt-transcribe"])
async def test_without_transcription_the_reseed_has_no_caller(transcription_model: str) -> None:
    """TRANSCRIPTION_MODEL= (empty) turns caller transcription off: the caller's turns are
    missing from a re-seed (the cost README names); on, they are there."""
    options = FakeRealtimeOptions(close_after_ms=9000, fault_sessions=1)
    async with (
        asyncio.timeout(120),
        bridged(options, transcription_model=transcription_model) as b,
    ):
        caller = asyncio.create_task(b.twilio.play(packaged_call("books_a_table"), tail_s=8.0))
        await until(lambda: b.realtime.connects == 2 and b.call.core.session_ready)
        await caller
        b.twilio.stop()
        await b.result()
    roles = [role for role, _ in seeded(b.realtime.pipes[1])]
    assert ("user" in roles) is bool(transcription_model)
    assert "assistant" in roles
