"""Who asks the model to answer, on the virtual clock: the bridge itself when the session's
create_response is off, and keypad digits pressed before the session was confirmed."""

from __future__ import annotations

import asyncio

from tests.support.shell import bridged, until
from voicebridge.fake_realtime.session import FakeRealtimeOptions
from voicebridge.twilio_sim.recordings import packaged_call

# The first spoken turn of the packaged call (1.08-5.06 s), as Twilio's 20 ms frames.
TURN = packaged_call("books_a_table").payloads[54:253]


async def test_without_create_response_the_bridge_answers_each_turn() -> None:
    """CREATE_RESPONSE=false: the server only detects the turn; the bridge asks for the
    answer on its commit, and the caller hears it (the agent is never mute)."""
    async with asyncio.timeout(60), bridged(create_response=False) as b:
        await until(lambda: b.call.core.session_ready)
        await b.twilio.speak(TURN, pause_after=6.0)
        b.twilio.stop()
        result = await b.result()
    [pipe] = b.realtime.pipes
    update = pipe.events("client", "session.update")[0][1]["session"]
    assert update["audio"]["input"]["turn_detection"]["create_response"] is False
    [(committed, _)] = pipe.events("server", "input_audio_buffer.committed")
    [(asked, _)] = pipe.events("client", "response.create")
    assert asked >= committed
    assert b.twilio.heard_ms() > 1000
    assert (result.reason, result.failed) == ("caller_hangup", False)


async def test_without_create_response_an_idle_caller_is_still_reprompted() -> None:
    """The idle timeout's commit is answered too: each counted re-prompt is heard."""
    async with asyncio.timeout(60), bridged(create_response=False, idle_timeout_ms=8000) as b:
        await b.twilio.speak([], pause_after=30.0)  # two timeouts and their re-prompts
        b.twilio.stop()
        result = await b.result()
    [pipe] = b.realtime.pipes
    timeouts = pipe.events("server", "input_audio_buffer.timeout_triggered")
    assert len(pipe.events("client", "response.create")) == len(timeouts) == 2
    assert (result.reason, result.stats.idle_reprompts) == ("caller_hangup", 2)
    assert b.twilio.heard_ms() > 2000  # both re-prompts


async def test_digits_pressed_before_the_session_is_confirmed_reach_the_model() -> None:
    """Digits that arrive before session.updated are held, sent after it, then answered."""
    async with asyncio.timeout(60), bridged(start=False) as b:
        b.twilio.start()
        b.twilio.dtmf("4")
        b.twilio.dtmf("2")
        caller = asyncio.create_task(b.twilio.speak([], pause_after=5.0))
        await caller
        b.twilio.stop()
        result = await b.result()
    [pipe] = b.realtime.pipes
    [(confirmed, _)] = pipe.events("server", "session.updated")
    items = pipe.events("client", "conversation.item.create")
    assert [e["item"]["content"][0]["text"] for _, e in items] == ["[keypad] 4", "[keypad] 2"]
    assert all(at >= confirmed for at, _ in items)
    [(asked, _)] = pipe.events("client", "response.create")
    assert asked >= items[-1][0]
    assert b.twilio.heard_ms() > 1000
    assert result.stats.dtmf == 2 and not result.stats.ignored


async def test_a_failed_greeting_is_asked_for_again_as_the_greeting() -> None:
    """The first response fails: the retry carries the greeting's instructions, and the
    caller hears a greeting rather than a bare answer to nothing."""
    fails_once = FakeRealtimeOptions(fail_responses=1)
    async with (
        asyncio.timeout(60),
        bridged(fails_once, greeting_instructions="Greet the caller.") as b,
    ):
        await until(lambda: bool(b.twilio.events("media")))
        b.twilio.stop()
        await b.result()
    [pipe] = b.realtime.pipes
    asked = [e["response"].get("instructions") for _, e in pipe.events("client", "response.create")]
    assert asked == ["Greet the caller.", "Greet the caller."]
    statuses = [e["response"]["status"] for _, e in pipe.events("server", "response.done")]
    assert statuses[0] == "failed"
