"""Upstream faults through real sockets: the fake's fault options, then whole calls.

The fake Realtime server refuses, hangs, closes, stalls or sends garbage on purpose; a real
bridge under uvicorn carries calls from the Twilio emulator through it. Each test checks the
bridge's counters, what the emulated caller heard (or the failure path), and for bad input
that a concurrent healthy call was untouched and the bridge still serves a new call.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.audio import LOUD, SILENT
from tests.support.conformance import assert_events_valid
from tests.support.realtime_client import GA_PCMU, Client, open_client
from tests.support.recordings import silence_frames, silent_call
from tests.support.servers import Bridge, running_bridge
from tests.support.waiting import wait_until
from voicebridge.config import Secret, Settings
from voicebridge.fake_realtime.server import FakeRealtimeOptions, FakeRealtimeServer, FakeSession
from voicebridge.server.call import CallResult
from voicebridge.twilio_sim.emulator import CallReport, place_call
from voicebridge.twilio_sim.recordings import Recording, packaged_call

APOLOGY = Settings().failure_say
FAILURE_PATH = (("Say", APOLOGY), ("Hangup", ""))
GREETING = "Greet the caller in one sentence."
GREETING_MS = 2538.75  # clip 01, the first answer of every session


# -- helpers ---------------------------------------------------------------------------


async def staggered(
    fake: FakeRealtimeServer,
    calls: list[tuple[FakeRealtimeOptions, Callable[[], Awaitable[CallReport]]]],
) -> list[CallReport]:
    """Start the calls one after another, each once the previous one has its upstream
    session (so session i of the fake belongs to call i), with its own fake options; then
    wait for all of them, concurrently."""
    tasks: list[asyncio.Task[CallReport]] = []
    first = fake.connections_total
    async with asyncio.TaskGroup() as tg:
        for n, (options, start) in enumerate(calls, start=first + 1):
            fake.options = options  # read by the fake at the next handshake
            tasks.append(tg.create_task(start()))
            await wait_until(lambda: fake.connections_total >= n)  # noqa: B023 (awaited here)
    return [t.result() for t in tasks]


def result_of(bridge: Bridge, report: CallReport) -> CallResult:
    [result] = [r for r in bridge.state.last_results if r.call_sid == report.call_sid]
    return result


def heard(report: CallReport) -> list[tuple[float, float]]:
    """(start, end) of every piece of audio the caller heard, ms on the call clock."""
    return sorted((c.start, c.start + c.played) for c in report.player.chunks if c.played > 0)


def longest_silence(report: CallReport, start_ms: float, end_ms: float) -> float:
    """The longest stretch within [start_ms, end_ms] in which the caller heard nothing."""
    longest, cursor = 0.0, start_ms
    for a, b in heard(report):
        if b <= cursor:
            continue
        if a >= end_ms:
            break
        longest = max(longest, a - cursor)
        cursor = b
    return max(longest, end_ms - cursor)


def call_ms(report: CallReport, monotonic: float) -> float:
    """A time.monotonic() instant on the emulated call's clock."""
    return (monotonic - report.t0) * 1000.0


def control_events(session: FakeSession) -> list[dict[str, Any]]:
    """What a session received, caller audio left out."""
    return [e for e in session.received if e["type"] != "input_audio_buffer.append"]


@contextmanager
def queue_peaks(bridge: Bridge) -> Iterator[dict[str, int]]:
    """Sample each call's caller-audio queue on the bridge's own loop: peak per stream."""
    peaks: dict[str, int] = {}
    stop = threading.Event()

    async def sample() -> None:
        while not stop.is_set():
            for call in list(bridge.state.calls):
                sid = call.core.stream_sid
                waiting = call.upstream_q.statistics().audio_waiting
                peaks[sid] = max(peaks.get(sid, 0), waiting)
            await asyncio.sleep(0.002)

    sampler = asyncio.run_coroutine_threadsafe(sample(), bridge.thread.loop)
    try:
        yield peaks
    finally:
        stop.set()
        sampler.result(2)


# -- the fake's fault options, driven directly ------------------------------------------


def test_fault_options_are_validated() -> None:
    """Bad fault options fail at construction, not mid-call; the defaults are all off."""
    off = FakeRealtimeOptions()
    assert off.refuse_handshakes == () and off.stall_after_ms is None and off.inject == ()
    assert off.close_code == 1011 and off.close_sessions is None and off.fault_sessions is None
    for bad in (
        {"refuse_handshakes": (200,)},
        {"refuse_handshakes": (101,)},
        {"refuse_handshakes": (600,)},
        {"refuse_handshakes": (499,)},  # not a status HTTP defines
        {"refuse_handshakes_from": -1},
        {"close_sessions": -1},
        {"close_code": 1005},  # reserved: never sent on the wire
        {"close_code": 1006},
        {"close_code": 2000},
        {"close_code": 5000},
        {"close_reason": "x" * 124},
        {"stall_after_ms": -1},
        {"inject_after_ms": -5},
        {"inject_after_event": "conversation.item.added"},
        {"inject": (b"{}",)},
        {"fault_sessions": -1},
        {"accept_delay_ms": -1},
        {"close_after_ms": -1},
    ):
        with pytest.raises(ValueError):
            FakeRealtimeOptions(**bad)
    ok = FakeRealtimeOptions(
        refuse_handshakes=(429, 503), close_code=4000, close_reason="invalid_request_error"
    )
    assert [ok.refusal(n) for n in range(3)] == [429, 503, None]
    later = FakeRealtimeOptions(refuse_handshakes=(503,), refuse_handshakes_from=2)
    assert [later.refusal(n) for n in range(4)] == [None, None, 503, None]
    some = FakeRealtimeOptions(close_after_ms=10, close_sessions=2, fault_sessions=1)
    assert [some.closes(n) for n in range(3)] == [True, False, False]
    assert [FakeRealtimeOptions(close_after_ms=10).closes(n) for n in range(3)] == [True] * 3
    assert not FakeRealtimeOptions().closes(0)
    early = FakeRealtimeOptions(close_before_updated=True, close_sessions=1)
    assert [early.closes(n) for n in range(2)] == [True, False]


async def test_refused_handshakes_are_counted_then_accepted() -> None:
    """refuse_handshakes answers the first handshakes with its statuses, in order."""
    async with FakeRealtimeServer(FakeRealtimeOptions(refuse_handshakes=(429, 503))) as fake:
        for status in (429, 503):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(fake.url):
                    pass
            assert refused.value.response.status_code == status
            body = json.loads(refused.value.response.body or b"{}")
            assert body["error"]["message"]
        async with await open_client(fake):
            pass
        assert fake.handshake_attempts == 3 and fake.handshakes_refused == 2
        assert [status for _, status in fake.handshake_log] == [429, 503, None]
        assert fake.connections_total == 1


async def test_close_fault_picks_sessions_code_and_reason() -> None:
    """close_sessions=1: only session 0 is closed, with close_code 4000 and its reason."""
    options = FakeRealtimeOptions(
        close_after_ms=100, close_sessions=1, close_code=4000, close_reason="server_error"
    )
    async with FakeRealtimeServer(options) as fake:
        async with await open_client(fake) as first, await open_client(fake) as second:
            await first.update(GA_PCMU)
            await second.update(GA_PCMU)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await first.recv()
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "server_error")
            await asyncio.sleep(0.2)
            await second.sync()  # still open and answering, well past 100 ms
        await wait_until(lambda: fake.active == 0)
    zero, one = fake.sessions
    assert (zero.index, one.index) == (0, 1)
    assert zero.close_code == 4000 and zero.fault_closed_at is not None
    assert one.fault_closed_at is None and one.close_code == 1000


async def test_stall_stops_reading_answering_pings_and_sending() -> None:
    """After stall_after_ms the fake reads nothing (so pings go unanswered once websockets'
    queue is full), sends nothing, and is released when the server closes."""
    async with FakeRealtimeServer(FakeRealtimeOptions(stall_after_ms=100)) as fake:
        async with connect(fake.url, ping_interval=None, close_timeout=0.2) as ws:
            client = Client(ws)
            assert (await client.recv())["type"] == "session.created"
            await client.update(GA_PCMU)
            await wait_until(lambda: fake.sessions[0].stalled_at is not None)
            received = len(fake.sessions[0].received)
            # Loud audio would start VAD and a response: nothing comes back.
            await client.append([LOUD] * 40 + [SILENT] * 40)
            await asyncio.sleep(0.2)  # read in one go, past max_queue: reading is paused now
            pong = await ws.ping()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.6):
                    await asyncio.shield(pong)
            pong.cancel()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await ws.recv()
            assert len(fake.sessions[0].received) == received
            assert fake.active == 1
            began = time.monotonic()
            await fake.close()
            assert time.monotonic() - began < 1.5
    [session] = fake.sessions
    assert session.closed_at is not None and session.stalled_at is not None


async def test_injected_frames_are_sent_verbatim_and_kept_apart() -> None:
    """inject frames go out as they are, after the anchor event, into sent_raw only;
    ${done_response_id}/${done_item_id} name the last finished response; only sessions
    below fault_sessions get them."""
    frames = (
        "{not json",
        '{"type":"response.output_audio.delta","response_id":"${done_response_id}",'
        '"item_id":"${done_item_id}","output_index":0,"content_index":0,"delta":"/w=="}',
    )
    options = FakeRealtimeOptions(
        speed=50.0,
        response_delay_ms=10,
        inject=frames,
        inject_after_event="response.done",
        inject_after_ms=20,
        fault_sessions=1,
    )
    async with FakeRealtimeServer(options) as fake:
        for _ in range(2):
            async with await open_client(fake) as client:
                await client.update(GA_PCMU)
                await client.send({"type": "response.create"})
                done, _ = await client.until("response.done")
                after = (
                    [await client.ws.recv() for _ in range(2)]
                    if fake.sessions[-1].index == 0
                    else []
                )
                await client.sync()
            if after:
                response = done["response"]
                assert after[0] == "{not json"
                delta = json.loads(after[1])
                assert delta["response_id"] == response["id"]
                assert delta["item_id"] == response["output"][0]["id"]
                assert fake.sessions[0].sent_raw == list(after)
    first, second = fake.sessions
    assert first.injected_at is not None and second.injected_at is None
    assert second.sent_raw == []
    assert_events_valid([first, second])  # sent holds only real events


# -- bad upstream input during calls ------------------------------------------------------

NOT_JSON = "{not json"
NOT_AN_OBJECT = "[1, 2, 3]"
DELTA_WITHOUT_FIELDS = '{"type": "response.output_audio.delta", "event_id": "event_bad1"}'
UNKNOWN_TYPE = '{"type": "session.hibernated", "event_id": "event_bad2"}'
SETUP_ERROR = json.dumps(
    {
        "type": "error",
        "event_id": "event_bad3",
        "error": {
            "type": "invalid_request_error",
            "code": "unknown_parameter",
            "message": "Unknown parameter: 'session.foo'.",
            "param": "session.foo",
            "event_id": None,
        },
    }
)
SERVER_ERROR = json.dumps(
    {
        "type": "error",
        "event_id": "event_bad4",
        "error": {
            "type": "server_error",
            "code": "server_error",
            "message": "The server had an error while processing your request.",
            "param": None,
            "event_id": None,
        },
    }
)
TRUNCATED_UNKNOWN = json.dumps(
    {
        "type": "conversation.item.truncated",
        "event_id": "event_bad5",
        "item_id": "item_nobody_knows",
        "content_index": 0,
        "audio_end_ms": 500,
    }
)
AUDIO_DONE_UNKNOWN = json.dumps(
    {
        "type": "response.output_audio.done",
        "event_id": "event_bad6",
        "response_id": "resp_nobody_knows",
        "item_id": "item_nobody_knows",
        "output_index": 0,
        "content_index": 0,
    }
)
LATE_PAYLOAD = base64.b64encode(b"\x10" * 800).decode()  # 100 ms of loud μ-law
DELTA_AFTER_DONE = json.dumps(
    {
        "type": "response.output_audio.delta",
        "event_id": "event_bad7",
        "response_id": "${done_response_id}",
        "item_id": "${done_item_id}",
        "output_index": 0,
        "content_index": 0,
        "delta": LATE_PAYLOAD,
    }
)


async def test_bad_upstream_input_is_counted_and_survived(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """Three calls get garbage from their upstream at three points (before the session is
    confirmed, mid-answer, after the answer); each is counted, none is heard, none ends a
    call; a concurrent healthy call is untouched and a new call afterwards works."""
    healthy = fake.options
    at_setup = dataclasses.replace(
        healthy,
        inject=(NOT_JSON, NOT_AN_OBJECT, DELTA_WITHOUT_FIELDS, UNKNOWN_TYPE, SETUP_ERROR),
        inject_after_event="session.created",
    )
    mid_answer = dataclasses.replace(
        healthy,
        inject=(SERVER_ERROR, TRUNCATED_UNKNOWN, AUDIO_DONE_UNKNOWN, UNKNOWN_TYPE),
        inject_after_event="response.output_audio.delta",
    )
    after_answer = dataclasses.replace(
        healthy,
        inject=(DELTA_AFTER_DONE, SERVER_ERROR),
        inject_after_event="response.done",
        inject_after_ms=50,
    )

    def call() -> Awaitable[CallReport]:
        return place_call(bridge.webhook, silent_call(5), hangup_at_ms=3200, timeout=15)

    with running_bridge(settings, greeting_instructions=GREETING) as bridge:
        reports = await staggered(
            fake,
            [(at_setup, call), (mid_answer, call), (after_answer, call), (healthy, call)],
        )
        await wait_until(lambda: bridge.state.active_calls == 0)
        fake.options = healthy
        afterwards = await call()
        await wait_until(lambda: bridge.state.active_calls == 0 and fake.active == 0)
        results = [result_of(bridge, r) for r in [*reports, afterwards]]

    setup, mid, after, ok, new = results
    # Counted, by kind: bad JSON/shapes as bad events, `error` events by code.
    assert setup.stats.upstream_errors == {
        "bad_event:not_json": 1,
        "bad_event:bad_shape": 2,
        "unknown_parameter": 1,
    }
    assert mid.stats.upstream_errors == {"server_error": 1}
    assert after.stats.upstream_errors == {"server_error": 1}
    assert after.stats.upstream_ignored == {"delta_after_done": 1}
    for result in (setup, mid, ok, new):
        assert result.stats.upstream_ignored == {}
    for result in (ok, new):
        assert result.stats.upstream_errors == {}
    # Survived: every call ended by the caller's hang-up, on its one session, not failed.
    for result in results:
        assert (result.failed, result.reason, result.stats.reconnects) == (
            False,
            "caller_hangup",
            0,
        )
        assert result.stats.ignored == {}
    # What each caller heard: the whole greeting, nothing injected, nothing broken.
    sessions = fake.sessions
    assert [s.index for s in sessions] == [0, 1, 2, 3, 4]
    for report, session in zip([*reports, afterwards], sessions, strict=True):
        assert report.violations == []
        assert report.closed_by == "caller" and report.after_stream == ()
        [item] = session.items.values()
        played = [c.payload for c in report.player.chunks]
        assert played == item.deltas  # exactly the answer, in order
        assert report.player.heard_ms() == pytest.approx(GREETING_MS, abs=1)
        assert LATE_PAYLOAD not in played
    # The fake sent exactly the garbage it was told to, to the three faulty sessions only.
    assert sessions[0].sent_raw == list(at_setup.inject)
    assert sessions[1].sent_raw == list(mid_answer.inject)
    [late, _] = sessions[2].sent_raw
    assert json.loads(late)["response_id"] == next(iter(sessions[2].items.values())).response_id
    assert sessions[3].sent_raw == [] and sessions[4].sent_raw == []
    assert_events_valid(sessions)


def garbage_delta(n: int, payload: str) -> str:
    """A response.output_audio.delta of a fresh response whose audio is not base64 μ-law."""
    return json.dumps(
        {
            "type": "response.output_audio.delta",
            "event_id": f"event_garbage{n}",
            "response_id": f"resp_garbage{n}",
            "item_id": f"item_garbage{n}",
            "output_index": 0,
            "content_index": 0,
            "delta": payload,
        }
    )


GARBAGE_AUDIO = ("!!not base64 at all!!", "/w=", "\u0080\u00ff")  # ascii, padding, non-ascii


async def test_undecodable_audio_deltas_are_counted_not_played(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """Audio that is not base64 is bad input like any other: counted and dropped, the call
    goes on, and Twilio never gets a media message it would refuse (31951); a concurrent
    call is untouched."""
    healthy = fake.options
    faulty = dataclasses.replace(
        healthy,
        inject=tuple(garbage_delta(n, p) for n, p in enumerate(GARBAGE_AUDIO)),
        inject_after_event="session.updated",
    )

    def call() -> Awaitable[CallReport]:
        return place_call(bridge.webhook, silent_call(5), hangup_at_ms=2000, timeout=15)

    with running_bridge(settings, greeting_instructions=GREETING) as bridge:
        report, other = await staggered(fake, [(faulty, call), (healthy, call)])
        await wait_until(lambda: bridge.state.active_calls == 0 and fake.active == 0)
        result, other_result = result_of(bridge, report), result_of(bridge, other)
    assert (result.failed, result.reason) == (False, "caller_hangup"), result.reason
    stats = result.stats
    counted = sum(stats.upstream_errors.values()) + sum(stats.upstream_ignored.values())
    assert counted == len(GARBAGE_AUDIO), (stats.upstream_errors, stats.upstream_ignored)
    assert report.violations == []
    for rep, session in zip((report, other), fake.sessions, strict=True):
        [item] = session.items.values()  # the greeting, and nothing else
        assert [c.payload for c in rep.player.chunks] == item.deltas
        assert rep.player.heard_ms() > 1000
    assert (other_result.failed, other_result.reason) == (False, "caller_hangup")
    assert other.violations == [] and not other_result.stats.upstream_ignored


# -- the upstream lost mid-call -----------------------------------------------------------


def one_turn_then_silence(seconds: float) -> Recording:
    """The caller's first utterance of "interrupts" (0.64-3.12 s), then silence."""
    base = packaged_call("interrupts")
    t0 = int(base.media[0]["media"]["timestamp"])
    first = [m for m in base.media if int(m["media"]["timestamp"]) - t0 < 3400]
    quiet = silence_frames(int(seconds * 50) - len(first), after=len(first), t0=t0)
    msgs = base.messages
    return Recording("one-turn", (msgs[0], msgs[1], *first, *quiet, msgs[-1]))


@dataclasses.dataclass(frozen=True)
class Loss:
    close_code: int
    close_after_ms: int  # from the first session.update
    speed: float  # the fake's
    recording: Callable[[], Recording]
    hangup_at_ms: float
    bridge: dict[str, Any]
    heard_before_ms: float  # of the concurrent call: all it should hear


LOSSES = [
    # The caller spoke and was answered (both transcribed); the line drops while the answer
    # is still playing: the fresh session is told both turns, then speaks after the answer.
    pytest.param(
        Loss(
            close_code=1011,
            close_after_ms=4500,
            speed=10.0,
            recording=lambda: one_turn_then_silence(10),
            hangup_at_ms=7800,
            bridge={"transcription_model": "gpt-4o-mini-transcribe"},
            heard_before_ms=GREETING_MS,  # clip 01 answers the caller's turn
        ),
        id="1011-after-an-answer",
    ),
    # The greeting is cut off mid-sentence (the fake speaks in real time) with 4000, as the
    # real API closes on errors: no turn was finished, so only the greeting is re-seeded, as
    # far as it reached the caller, marked as cut off.
    pytest.param(
        Loss(
            close_code=4000,
            close_after_ms=700,
            speed=1.0,
            recording=lambda: silent_call(6),
            hangup_at_ms=4500,
            bridge={"greeting_instructions": GREETING},
            heard_before_ms=GREETING_MS,
        ),
        id="4000-mid-greeting",
    ),
]


@pytest.mark.parametrize("loss", LOSSES)
async def test_lost_upstream_is_replaced_and_the_caller_is_told(
    fake: FakeRealtimeServer, settings: Settings, loss: Loss
) -> None:
    """The upstream closes mid-call: the bridge opens a fresh session once, re-seeds it with
    what was transcribed so far, asks it to tell the caller it is back, and the caller never
    sits in silence for 2 s; a concurrent call is untouched."""
    healthy = dataclasses.replace(fake.options, speed=loss.speed)
    faulty = dataclasses.replace(
        healthy,
        close_after_ms=loss.close_after_ms,
        close_sessions=1,
        close_code=loss.close_code,
        close_reason="server_error",
    )

    def call() -> Awaitable[CallReport]:
        return place_call(
            bridge.webhook, loss.recording(), hangup_at_ms=loss.hangup_at_ms, timeout=15
        )

    with running_bridge(settings, **loss.bridge) as bridge:
        report, other = await staggered(fake, [(faulty, call), (healthy, call)])
        await wait_until(lambda: bridge.state.active_calls == 0 and fake.active == 0)
        result, other_result = result_of(bridge, report), result_of(bridge, other)

    assert fake.connections_total == 3  # the lost one, the concurrent call, the fresh one
    lost, concurrent, fresh = fake.sessions
    assert lost.close_code == loss.close_code and lost.fault_closed_at is not None
    assert concurrent.fault_closed_at is None and fresh.fault_closed_at is None
    # Counted once, and the call went on.
    assert result.stats.reconnects == 1
    assert (result.failed, result.reason) == (False, "caller_hangup")
    assert report.closed_by == "caller" and report.after_stream == ()
    assert report.violations == []
    # The fresh session: configured as the first, told the call so far (what was
    # transcribed, in order), then asked to tell the caller it is back.
    said = [
        ("user", e["transcript"])
        if e["type"].startswith("conversation.item.input_audio_transcription")
        else ("assistant", e["transcript"])
        for e in lost.sent
        if e["type"]
        in (
            "conversation.item.input_audio_transcription.completed",
            "response.output_audio_transcript.done",
        )
        and e["transcript"]
    ]
    transcribed = "transcription_model" in loss.bridge
    assert len(said) == (2 if transcribed else 0), said
    control = control_events(fresh)
    assert control[0]["type"] == "session.update"
    assert control[0]["session"] == lost.received[0]["session"]
    seeded = control[1 : 1 + len(said)]
    assert [e["type"] for e in seeded] == ["conversation.item.create"] * len(said)
    for event, (role, text) in zip(seeded, said, strict=True):
        assert event["item"]["role"] == role
        assert text in json.dumps(event["item"]["content"])
    rest = control[1 + len(said) :]
    if not transcribed:  # the greeting the drop cut, as far as it reached the caller
        cut, rest = rest[0], rest[1:]
        spoken = "".join(
            e["delta"] for e in lost.sent if e["type"] == "response.output_audio_transcript.delta"
        )
        marker = " [cut off here: the caller heard only this much]"
        assert cut["item"]["role"] == "assistant" and spoken.strip()
        assert cut["item"]["content"][0]["text"] == spoken.strip() + marker
    note, resume = rest[0], rest[1]
    assert note["item"]["role"] == "system"  # the call goes on: no greeting again
    assert resume["type"] == "response.create"
    assert "back" in resume["response"]["instructions"]
    assert [e["type"] for e in control].count("response.create") == 1
    assert_events_valid(fake.sessions)
    # What the caller heard: the fresh session's answer, soon after the loss.
    lost_at = call_ms(report, lost.fault_closed_at)
    [resumed] = fresh.items.values()
    after = report.player.chunks[-len(resumed.deltas) :]  # the same clip: tell by order
    assert [c.payload for c in after] == resumed.deltas
    assert 0 < after[0].arrived - lost_at < 2000, (lost_at, after[0].arrived)
    assert sum(c.played for c in after) > 1000
    assert longest_silence(report, lost_at, after[0].start + 100) < 2000
    # The concurrent call: one session, its answer, nothing else.
    assert other_result.stats.reconnects == 0 and not other_result.failed
    assert other.violations == [] and other.after_stream == ()
    assert other.player.heard_ms() == pytest.approx(loss.heard_before_ms, abs=1)
    assert concurrent.appended == [p for _, p in other.caller_audio]


@pytest.mark.parametrize("greeting", [GREETING, ""], ids=["greeting", "no-greeting"])
async def test_lost_before_the_session_is_confirmed_starts_afresh(
    fake: FakeRealtimeServer, settings: Settings, greeting: str
) -> None:
    """The first connection drops before its session.updated: the caller has heard nothing
    yet, so the fresh session starts the call as configured (the greeting, or silence until
    the caller speaks), not with "the line dropped, I'm back"."""
    fake.options = dataclasses.replace(
        fake.options, close_before_updated=True, close_sessions=1, close_code=1011
    )
    hangup_ms = 2000 if greeting else 1500
    with running_bridge(settings, greeting_instructions=greeting) as bridge:
        report = await place_call(
            bridge.webhook, silent_call(5), hangup_at_ms=hangup_ms, timeout=15
        )
        await wait_until(lambda: bridge.state.active_calls == 0 and fake.active == 0)
        [result] = bridge.state.last_results
    lost, fresh = fake.sessions
    assert lost.fault_closed_at is not None and lost.close_code == 1011
    assert "session.updated" not in [e["type"] for e in lost.sent]
    assert result.stats.reconnects == 1
    assert (result.failed, result.reason) == (False, "caller_hangup")
    instructions = [e.get("response", {}).get("instructions") for e in fresh.response_creates]
    assert instructions == ([greeting] if greeting else []), instructions
    if greeting:
        [item] = fresh.items.values()
        assert [c.payload for c in report.player.chunks] == item.deltas
        assert report.player.heard_ms() > 1000
    else:
        assert report.player.chunks == []


async def test_fresh_session_lost_too_plays_the_failure_path(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """Every session closes with 4000: one fresh session is tried, then the failure path."""
    fake.options = dataclasses.replace(fake.options, close_after_ms=600, close_code=4000)
    with running_bridge(settings, greeting_instructions=GREETING) as bridge:
        report = await place_call(bridge.webhook, silent_call(6), timeout=15)
        await wait_until(lambda: bridge.state.active_calls == 0 and fake.active == 0)
        [result] = bridge.state.last_results
    assert fake.connections_total == 2
    assert [s.close_code for s in fake.sessions] == [4000, 4000]
    assert result.stats.reconnects == 1
    assert result.failed and result.reason.startswith("upstream_lost")
    assert report.closed_by == "server" and report.after_stream == FAILURE_PATH
    assert report.ended_at < 2500
    assert report.player.heard_ms() > 500  # the greeting, then the fresh session's words


async def test_fresh_session_refused_plays_the_failure_path(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """The upstream is lost and every handshake for the fresh session is refused (503):
    retried within RECONNECT_TIMEOUT_S, then the failure path."""
    fake.options = dataclasses.replace(
        fake.options,
        close_after_ms=600,
        refuse_handshakes=(503,) * 1000,
        refuse_handshakes_from=1,
    )
    with running_bridge(settings, greeting_instructions=GREETING) as bridge:
        report = await place_call(bridge.webhook, silent_call(6), timeout=15)
        await wait_until(lambda: bridge.state.active_calls == 0 and fake.active == 0)
        [result] = bridge.state.last_results
    assert fake.connections_total == 1 and fake.handshakes_refused >= 3
    assert result.stats.reconnects == 1
    assert result.failed and result.reason.startswith("upstream_connect_failed")
    assert report.closed_by == "server" and report.after_stream == FAILURE_PATH
    lost_at = call_ms(report, fake.sessions[0].fault_closed_at or 0.0)
    reconnect_ms = bridge.settings.reconnect_timeout_s * 1000
    assert reconnect_ms - 100 < report.ended_at - lost_at < reconnect_ms + 700


# -- handshakes refused or hanging ------------------------------------------------------


async def test_rate_limited_then_overloaded_handshakes_are_retried(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """429, then 503, then accepted: the call works, a little late."""
    fake.options = dataclasses.replace(fake.options, refuse_handshakes=(429, 503))
    with running_bridge(settings, greeting_instructions=GREETING) as bridge:
        report = await place_call(bridge.webhook, silent_call(5), hangup_at_ms=1800, timeout=15)
        await wait_until(lambda: bridge.state.active_calls == 0 and fake.active == 0)
        [result] = bridge.state.last_results
    assert fake.handshake_attempts == 3 and fake.handshakes_refused == 2
    assert [status for _, status in fake.handshake_log] == [429, 503, None]
    assert fake.connections_total == 1
    assert (result.failed, result.reason) == (False, "caller_hangup")
    assert report.after_stream == () and report.violations == []
    [item] = fake.sessions[0].items.values()
    assert [c.payload for c in report.player.chunks] == item.deltas  # the greeting
    assert heard(report)[0][0] < 1000  # two backoffs cost well under a second
    assert report.player.heard_ms() > 700


async def test_handshakes_refused_past_the_deadline_play_the_failure_path(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """Every handshake refused (503): retried with backoff until the 1 s deadline, then
    the apology."""
    fake.options = dataclasses.replace(fake.options, refuse_handshakes=(503,) * 1000)
    with running_bridge(settings, upstream_connect_timeout_s=1.0) as bridge:
        report = await place_call(bridge.webhook, silent_call(5), timeout=15)
        [result] = bridge.state.last_results
    assert report.after_stream == FAILURE_PATH and report.closed_by == "server"
    assert 900 < report.ended_at < 1800
    assert result.failed and "upstream_connect_failed" in result.reason
    assert 3 <= fake.handshake_attempts <= 8
    assert fake.handshakes_refused == fake.handshake_attempts
    assert fake.connections_total == 0 and report.player.heard_ms() == 0


async def test_wrong_api_key_fails_at_once_without_retrying(
    fake: FakeRealtimeServer, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """401: a configuration error, logged as such; no retry, the apology at once."""
    fake.options = dataclasses.replace(fake.options, api_key="sk-the-right-key")
    wrong = "sk-a-wrong-key-1234"
    caplog.set_level(logging.INFO)
    with running_bridge(settings, openai_api_key=Secret(wrong)) as bridge:
        report = await place_call(bridge.webhook, silent_call(5), timeout=15)
        [result] = bridge.state.last_results
    assert report.after_stream == FAILURE_PATH
    assert report.ended_at < 600
    assert fake.handshake_attempts == 1 and fake.connections_total == 0
    assert result.failed
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("configuration" in r.getMessage() for r in errors), caplog.text
    assert any("OPENAI_API_KEY" in r.getMessage() for r in errors), caplog.text
    assert wrong not in caplog.text


async def test_hanging_handshake_plays_the_failure_path(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """A handshake that never completes is abandoned (and retried) within the deadline."""
    fake.options = dataclasses.replace(fake.options, accept_delay_ms=10_000)
    with running_bridge(settings, upstream_connect_timeout_s=1.0) as bridge:
        report = await place_call(bridge.webhook, silent_call(5), timeout=15)
        [result] = bridge.state.last_results
    assert report.after_stream == FAILURE_PATH
    assert 900 < report.ended_at < 1800
    assert result.failed and "upstream_connect_failed" in result.reason
    assert fake.handshake_attempts >= 1 and fake.connections_total == 0


async def test_slow_handshake_within_the_deadline_connects(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """A handshake that takes 1 s of a 2 s deadline is slow, not hanging: the call is
    answered. (Abandoning it early to retry does not help: a retry starts the handshake over
    and takes as long again.)"""
    fake.options = dataclasses.replace(fake.options, accept_delay_ms=1000)
    with running_bridge(
        settings, upstream_connect_timeout_s=2.0, greeting_instructions=GREETING
    ) as bridge:
        report = await place_call(bridge.webhook, silent_call(6), hangup_at_ms=2600, timeout=15)
        await wait_until(lambda: bridge.state.active_calls == 0)
        [result] = bridge.state.last_results
    assert (result.failed, result.reason) == (False, "caller_hangup"), result.reason
    assert report.after_stream == ()
    assert fake.connections_total == 1
    assert report.player.heard_ms() > 1000


# -- an upstream that stalls ------------------------------------------------------------


async def test_stalled_upstream_is_detected_and_replaced_with_a_bounded_queue(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """Session 0 stops reading and sending; the bridge's pings go unanswered and the call
    moves to a fresh session within the stall timeout (+ margin). While it waits, the
    caller's audio queue stays within CALLER_QUEUE_FRAMES, dropping the oldest (counted).
    A concurrent call on a healthy session keeps talking."""
    stall_timeout, queue_frames = 2.0, 10
    healthy = fake.options
    # Stalls while the concurrent caller is waiting for, then hearing, its answer.
    stalls = dataclasses.replace(healthy, stall_after_ms=2500, fault_sessions=1)
    # The fresh session's first three handshakes are refused (backoff: 0.35-1.05 s), so the
    # caller's audio has to wait in the bounded queue for a while.
    reopen_slowly = dataclasses.replace(
        healthy, refuse_handshakes=(503, 503, 503), refuse_handshakes_from=2
    )

    def stalled_call() -> Awaitable[CallReport]:
        return place_call(bridge.webhook, silent_call(11), hangup_at_ms=9500, timeout=20)

    def talking_call() -> Awaitable[CallReport]:
        return place_call(
            bridge.webhook, packaged_call("interrupts"), hangup_at_ms=7000, timeout=20
        )

    with running_bridge(
        settings,
        upstream_stall_timeout_s=stall_timeout,
        caller_queue_frames=queue_frames,
    ) as bridge:
        with queue_peaks(bridge) as peaks:
            report, other = await staggered(
                fake, [(stalls, stalled_call), (reopen_slowly, talking_call)]
            )
        await wait_until(lambda: bridge.state.active_calls == 0)
        result, other_result = result_of(bridge, report), result_of(bridge, other)

    stalled, concurrent, fresh = fake.sessions
    assert stalled.stalled_at is not None and concurrent.stalled_at is None
    assert fresh.stalled_at is None
    # Detected by the unanswered pings within the stall timeout (+ queue fill and close).
    times = [t for t, _ in fake.handshake_log]
    assert [s for _, s in fake.handshake_log] == [None, None, 503, 503, 503, None]
    detected = times[2] - stalled.stalled_at
    assert 0.9 < detected < stall_timeout + 2.0, detected
    assert fresh.opened_at - stalled.stalled_at < stall_timeout + 2.0 + 1.2
    # The stalled call moved on: one reconnect, the caller heard the fresh session.
    assert result.stats.reconnects == 1
    assert (result.failed, result.reason) == (False, "caller_hangup")
    assert report.violations == [] and report.after_stream == ()
    [resumed] = fresh.items.values()
    after = report.player.chunks[-len(resumed.deltas) :]
    assert [c.payload for c in after] == resumed.deltas
    assert call_ms(report, stalled.stalled_at) < after[0].arrived
    assert sum(c.played for c in after) > 1000
    # Its caller audio waited in a bounded queue: full, oldest dropped and counted.
    assert result.stats.caller_queue_dropped > 0  # on /metrics too
    assert peaks[result.stream_sid] == queue_frames
    # Twilio's media was read without a pause throughout, the lost session's close included.
    assert result.stats.silence_frames == 0 and other_result.stats.silence_frames == 0
    # The concurrent call never noticed.
    assert other_result.stats.reconnects == 0 and not other_result.failed
    assert other_result.stats.caller_queue_dropped == 0
    assert peaks[other_result.stream_sid] < queue_frames
    assert other.violations == [] and other.after_stream == ()
    assert other_result.stats.barge_ins >= 1
    assert other.player.heard_ms() > 1000 and other_result.stats.truncations >= 1
    # ... also while the other call was stuck: it heard its answer then.
    stuck_from = call_ms(other, stalled.stalled_at)
    stuck_to = call_ms(other, fresh.opened_at)
    during = sum(
        min(b, stuck_to) - max(a, stuck_from)
        for a, b in heard(other)
        if b > stuck_from and a < stuck_to
    )
    assert during > 1000, (stuck_from, stuck_to, heard(other))
    # ... and every frame its caller spoke reached its session, in order.
    assert concurrent.appended == [p for _, p in other.caller_audio]
