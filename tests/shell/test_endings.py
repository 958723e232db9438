"""How calls end, as the caller hears it and as Twilio's ``<Connect action>`` is answered.

No REST credentials anywhere here (the default set-up): a deliberate ending closes the
stream, and the after-stream answer the call recorded (just before that close) ends it
without an apology; a transfer dials; a failure apologises.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tests.support.shell import Bridged, bridged, until
from voicebridge.config import DEFAULT_CLOSING, Settings
from voicebridge.fake_realtime.session import FakeRealtimeOptions
from voicebridge.twilio_sim.recordings import packaged_call

DEFAULTS = Settings()
HANG_UP = (("Hangup", ""),)
APOLOGY = (("Say", DEFAULTS.failure_say), ("Hangup", ""))


@contextlib.asynccontextmanager
async def caller_on_the_line(b: Bridged, recording: str = "books_a_table") -> AsyncIterator[None]:
    """The caller plays ``recording`` and then stays silent on the line until the call ends."""
    caller = asyncio.create_task(b.twilio.play(packaged_call(recording), tail_s=600.0))
    try:
        yield
    finally:
        caller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await caller


def answers(b: Bridged, session: int = 0) -> list[set[str]]:
    """Each spoken response's audio deltas, in order."""
    by_response: dict[str, set[str]] = {}
    for _, e in b.realtime.pipes[session].events("server", "response.output_audio.delta"):
        by_response.setdefault(e["response_id"], set()).add(e["delta"])
    return list(by_response.values())


def heard_in_full(b: Bridged, deltas: set[str]) -> bool:
    chunks = [c for c in b.twilio.player.chunks if c.payload in deltas]
    return bool(chunks) and all(c.played == c.duration for c in chunks)


def assert_ended_well(b: Bridged, result: Any, reason: str, label: str) -> None:
    assert (result.reason, result.failed, result.deliberate) == (reason, False, True)
    assert result.outcome == label
    assert b.twilio.close_code == 1000
    assert b.outcomes.put_while_open == [True]  # recorded before Twilio could ask for it


async def test_end_call_after_the_second_answer_hangs_up_after_the_whole_goodbye() -> None:
    """The model answers twice (a greeting, then the caller's first turn) and calls end_call
    on the second turn: the caller hears the whole goodbye, and the after-stream answer is a
    bare <Hangup/> (no apology), without REST credentials."""
    options = FakeRealtimeOptions(tool_call=("end_call", "{}"), tool_call_turn=2)
    async with (
        asyncio.timeout(120),
        bridged(options, greeting_instructions="Greet the caller.") as b,
        caller_on_the_line(b),
    ):
        result = await b.result()
    spoken = answers(b)
    assert len(spoken) == 3  # two answers, then (after the tool call) the goodbye
    [(_, create)] = b.realtime.pipes[0].events("client", "response.create")[-1:]
    assert create["response"]["instructions"] == DEFAULTS.goodbye_instructions
    assert heard_in_full(b, spoken[-1])
    assert_ended_well(b, result, "end_call", "deliberate")
    assert await b.after_stream() == HANG_UP


async def test_a_transfer_without_rest_credentials_reaches_dial() -> None:
    """transfer_call is declared with TRANSFER_DESTINATIONS alone; the after-stream answer
    dials the destination the model named (a SIP URI inside <Sip>)."""
    options = FakeRealtimeOptions(tool_call=("transfer_call", '{"destination": "desk"}'))
    destinations = "sales=+14155550100,desk=sip:desk@example.com"
    async with (
        asyncio.timeout(120),
        bridged(options, transfer_destinations=destinations) as b,
        caller_on_the_line(b),
    ):
        result = await b.result()
    [(_, update)] = b.realtime.pipes[0].events("client", "session.update")
    assert "transfer_call" in [t["name"] for t in update["session"]["tools"]]
    assert heard_in_full(b, answers(b)[-1])  # "transferring you now", heard
    assert_ended_well(b, result, "transfer", "transfer")
    assert result.destination == "sip:desk@example.com"
    assert await b.after_stream() == (("Dial", ""),)  # <Dial><Sip>…</Sip></Dial>


async def test_session_limit_and_drain_endings_hang_up_after_the_closing_line() -> None:
    """The session limit and a drain end with the closing line heard, then <Hangup/>."""
    async with asyncio.timeout(4000), bridged(media_gap_ms=10**8) as b:
        result = await b.result()  # a silent line: the session limit comes at 3480 s
    assert_ended_well(b, result, "session_limit", "deliberate")
    assert heard_in_full(b, answers(b)[-1])
    assert await b.after_stream() == HANG_UP
    async with asyncio.timeout(60), bridged() as b, caller_on_the_line(b):
        await until(lambda: b.call.core.session_ready)
        b.call.request_close("draining")
        result = await b.result()
    [(_, create)] = b.realtime.pipes[0].events("client", "response.create")[-1:]
    assert create["response"]["instructions"] == DEFAULT_CLOSING
    assert_ended_well(b, result, "draining", "deliberate")
    assert await b.after_stream() == HANG_UP


async def test_a_failed_call_is_answered_with_the_apology() -> None:
    """An upstream lost for good: closed 1011, and the after-stream answer apologises."""
    options = FakeRealtimeOptions(close_after_ms=500)
    async with (
        asyncio.timeout(60),
        bridged(options, upstream_reconnect=False) as b,
        caller_on_the_line(b),
    ):
        result = await b.result()
    assert result.failed and result.outcome == "failed" and b.twilio.close_code == 1011
    assert b.outcomes.put_while_open == [True]
    assert await b.after_stream() == APOLOGY


async def test_a_caller_hang_up_records_nothing() -> None:
    """Twilio's `stop`: nobody is left to run TwiML for, so no outcome is kept."""
    async with asyncio.timeout(60), bridged() as b:
        await until(lambda: b.call.core.session_ready)
        b.twilio.stop()
        result = await b.result()
    assert result.outcome == "caller_hangup" and b.outcomes.put_while_open == []
