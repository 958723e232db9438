"""Profiles per number and call events, on the virtual clock.

A number with a profile of its own gets its voice, its instructions (the caller's number
quoted into them) and its tools; any other number gets the default. Call events reach the
backend with the outcome and both sides of the transcript; a backend that is down for the
whole call changes nothing for the caller, and its failures are counted, retried with backoff
for CALL_EVENTS_RETRY_S.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.shell.test_http_tools import (
    CALLER,
    SECRET,
    caller_on_the_line,
    in_memory,
    tools_file,
)
from tests.support.shell import bridged, until
from voicebridge.business_sim.backend import BusinessBackend
from voicebridge.config import Secret, Settings
from voicebridge.fake_realtime.session import FakeRealtimeOptions
from voicebridge.server.connect import Connect

PROFILES = """\
[profiles.default]
instructions = "You answer for the Trattoria. The caller's number is {caller}."
tools = []

[profiles.bistro]
numbers = ["+18005550100"]
voice = "cedar"
instructions = "You answer for the Bistro ({param.tenant}). The caller's number is {caller}."
tools = ["check_table"]
say_language = "fr-FR"
"""


def profiles_file(tmp_path: Path) -> str:
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES)
    return str(path)


async def session_of(tmp_path: Path, to: str) -> dict[str, object]:
    """The session.update a call to ``to`` sends upstream."""
    settings = {
        "profiles_file": profiles_file(tmp_path),
        "tools_file": tools_file(tmp_path),
        "signing_secret": Secret(SECRET),
    }
    params = {**CALLER, "To": to}
    async with asyncio.timeout(60), bridged(parameters=params, **settings) as b:
        await until(lambda: b.call.core.session_ready)
        b.twilio.stop()
        await b.result()
    [(_, update)] = b.realtime.pipes[0].events("client", "session.update")
    session: dict[str, object] = update["session"]
    return session


async def test_a_number_with_a_profile_gets_its_voice_instructions_and_tools(
    tmp_path: Path,
) -> None:
    """+18005550100 is the Bistro's; +18005550199 has no profile: the default answers."""
    bistro = await session_of(tmp_path, "+18005550100")
    assert bistro["audio"]["output"]["voice"] == "cedar"  # type: ignore[index]
    assert bistro["instructions"] == (
        'You answer for the Bistro ("roma"). The caller\'s number is "+14155550123".'
    )
    assert "check_table" in [t["name"] for t in bistro["tools"]]  # type: ignore[attr-defined]
    other = await session_of(tmp_path, "+18005550199")
    assert other["audio"]["output"]["voice"] == "marin"  # type: ignore[index]
    assert other["instructions"] == (
        'You answer for the Trattoria. The caller\'s number is "+14155550123".'
    )
    assert "check_table" not in [t["name"] for t in other["tools"]]  # type: ignore[attr-defined]


def events_to(backend: BusinessBackend, made: list[Connect]) -> Callable[[Settings], Connect]:
    def build(settings: Settings) -> Connect:
        connect = in_memory(backend)(settings)
        made.append(connect)
        return connect

    return build


EVENTS = {"call_events_url": "https://backend.test/events", "signing_secret": Secret(SECRET)}


async def test_call_ended_carries_the_outcome_and_both_sides_of_the_transcript() -> None:
    backend = BusinessBackend(SECRET)
    made: list[Connect] = []
    async with (
        asyncio.timeout(120),
        bridged(connect=events_to(backend, made), parameters=CALLER, **EVENTS) as b,
        caller_on_the_line(b),
    ):
        events = made[0].events
        assert events is not None
        async with events.running():
            roles = lambda: {t.role for t in b.call.core.transcript.spoken()}  # noqa: E731
            await until(lambda: roles() == {"caller", "assistant"})
            b.twilio.stop()
            await b.result()
    assert [e["type"] for e in backend.events] == ["call.started", "call.ended"]
    started, ended = backend.events
    assert started["call"]["caller"] == "+14155550123" and started["call"]["call_sid"] == "CA0001"
    assert ended["outcome"] == "caller_hangup" and ended["turns"] >= 2
    assert {t["role"] for t in ended["transcript"]} == {"caller", "assistant"}
    assert all(t["text"] for t in ended["transcript"])
    assert backend.bad_signatures == 0
    assert events.count("call.ended", "delivered") == 1


async def test_a_backend_down_all_call_long_changes_nothing_for_the_caller() -> None:
    """Every attempt gets 503: the call runs and ends as without events (the hang-up ends it
    at once), and each event is retried with growing, jittered waits for CALL_EVENTS_RETRY_S,
    then counted as failed."""
    backend = BusinessBackend(SECRET, events_down=True)
    made: list[Connect] = []
    async with (
        asyncio.timeout(600),
        bridged(connect=events_to(backend, made), parameters=CALLER, **EVENTS) as b,
        caller_on_the_line(b),
    ):
        events = made[0].events
        assert events is not None
        async with events.running():
            await until(lambda: b.call.core.session_ready)
            await asyncio.sleep(20)
            hung_up = b.now()
            b.twilio.stop()
            result = await b.result()
            assert b.now() - hung_up < 0.5  # the call did not wait for any event
            await asyncio.sleep(300)  # the retries run out (CALL_EVENTS_RETRY_S=120)
    assert not result.failed and result.outcome == "caller_hangup"
    assert events.count("call.started", "failed") == 1
    assert events.count("call.ended", "failed") == 1
    failures = events.attempt_failures._value.get()
    # Backoff from 0.5 s doubling to 30 s, full jitter: a handful of attempts, not hundreds.
    assert 6 <= failures == backend.event_attempts <= 60
    assert backend.events == []


async def test_an_overflowing_queue_drops_and_counts() -> None:
    """A full queue (CALL_EVENTS_QUEUE) never blocks the call: the event is dropped, counted."""
    backend = BusinessBackend(SECRET, events_down=True)
    settings = Settings(
        call_events_url="https://backend.test/events",
        signing_secret=Secret(SECRET),
        call_events_queue=1,
    )
    connect = Connect(settings, custom=[], transport=httpx.ASGITransport(app=backend.app))
    events = connect.events
    assert events is not None
    for _ in range(3):  # no worker running: the first waits in the queue, the rest overflow
        events.emit("call.started", {"call": {}})
    assert events.count("call.started", "dropped") == 2
    await events.aclose(asyncio.get_running_loop().time())
    assert events.count("call.started", "dropped") == 3  # closed with it still queued


async def test_a_transfer_sends_call_transferred_then_call_ended() -> None:
    backend = BusinessBackend(SECRET)
    made: list[Connect] = []
    options = FakeRealtimeOptions(tool_call=("transfer_call", '{"destination": "desk"}'))
    async with (
        asyncio.timeout(120),
        bridged(
            options,
            connect=events_to(backend, made),
            parameters=CALLER,
            transfer_destinations="desk=+14155550100",
            **EVENTS,
        ) as b,
        caller_on_the_line(b),
    ):
        events = made[0].events
        assert events is not None
        async with events.running():
            result = await b.result()
    assert result.outcome == "transfer"
    assert [e["type"] for e in backend.events] == ["call.started", "call.transferred", "call.ended"]
    assert backend.events[1]["destination"] == "+14155550100"
    assert backend.events[2]["outcome"] == "transfer"
