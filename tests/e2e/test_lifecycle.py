"""Ending calls well: graceful drain on SIGTERM, and the upstream's session age limit."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.support.audio import SILENCE_B64
from tests.support.processes import free_port, serve, serve_env, wait_healthy
from tests.support.servers import running_bridge
from tests.support.waiting import wait_until
from voicebridge.config import DEFAULT_CLOSING, Settings
from voicebridge.core.policy import CallPolicy
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.emulator import place_call
from voicebridge.twilio_sim.recordings import Recording, packaged_call
from voicebridge.twilio_sim.webhook_client import call_params, new_sid, parse_twiml


@pytest.mark.slow
async def test_sigterm_drains_calls_then_exits_zero(
    fake: FakeRealtimeServer, tmp_path: Path
) -> None:
    """SIGTERM: busy at once, calls go on, then a closing line each, then exit 0."""
    port = free_port()
    env = serve_env(port, fake.url, DRAIN_TIMEOUT_S="3", CLOSING_TIMEOUT_S="8")
    proc = serve(env, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(proc, base)
        calls = [
            asyncio.create_task(
                place_call(base + "/twilio/stream", packaged_call("books_a_table"), timeout=40)
            )
            for _ in range(3)
        ]
        await asyncio.sleep(4.0)  # mid-conversation: the first answers are playing
        sigterm_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)

        def busy() -> str:
            req = urllib.request.Request(
                base + "/twilio/stream",
                data=urlencode(call_params(new_sid("CA"), "AC1", from_="+1", to="+2")).encode(),
            )
            with urllib.request.urlopen(req, timeout=2) as resp:
                return resp.read().decode()

        answer = parse_twiml(await asyncio.to_thread(busy))
        assert time.monotonic() - sigterm_at < 1.0
        assert answer.stream_url is None and "busy" in answer.says_before[0]
        reports = await asyncio.gather(*calls)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "draining" in out
    for report in reports:
        ended = report.t0 + report.ended_at / 1000
        assert ended - sigterm_at >= 2.0  # the call went on
        heard_after = sum(
            c.played for c in report.player.chunks if report.t0 + c.start / 1000 > sigterm_at + 2.0
        )
        assert heard_after > 500  # and the caller kept hearing the model
        assert report.violations == []
    sessions = [s for s in fake.sessions if s.response_creates]
    assert len(sessions) == 3
    # Each call heard its own closing line to the end, then was closed.
    by_call = {r.call_sid: r for r in reports}
    assert len(by_call) == 3
    for session in sessions:
        closing = [
            e
            for e in session.response_creates
            if e.get("response", {}).get("instructions") == DEFAULT_CLOSING
        ]
        assert len(closing) == 1
    assert all(r.closed_by == "server" for r in reports)
    # The draining instance still answers Twilio's <Connect action>: a hang-up, no apology.
    assert all(r.after_stream == (("Hangup", ""),) for r in reports)


def two_turns() -> Recording:
    """4 s of silence (the greeting), the caller's first utterance of "interrupts", 5 s of
    silence, the same utterance again, silence: each turn answered and heard before the next."""
    base = packaged_call("interrupts")
    t0 = int(base.media[0]["media"]["timestamp"])
    said = [m["media"]["payload"] for m in base.media if int(m["media"]["timestamp"]) - t0 < 3400]
    quiet = SILENCE_B64
    payloads = [quiet] * 200 + said + [quiet] * 250 + said + [quiet] * 150
    frames = [
        {
            "event": "media",
            "sequenceNumber": str(n + 2),
            "streamSid": "MZ0",
            "media": {
                "track": "inbound",
                "chunk": str(n + 1),
                "timestamp": str(n * 20),
                "payload": p,
            },
        }
        for n, p in enumerate(payloads)
    ]
    return Recording("two-turns", (base.messages[0], base.messages[1], *frames, base.messages[-1]))


async def test_session_limit_renews_the_session_and_keeps_the_conversation(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """SESSION_LIMIT_ACTION=renew through real sockets on the wall clock, at a short limit:
    the renewal comes at the pause after the first answer (heard in full), the fresh session
    receives both sides of the conversation so far and the note to carry on, is asked for
    nothing (no second greeting), and answers the caller's next turn, heard.

    Both actions at the real limit (3480 s) are in tests/shell/test_timers.py."""
    with running_bridge(
        settings,
        session_limit_s=15.0,
        session_limit_action="renew",
        upstream_reconnect=False,
        greeting_instructions="Greet the caller.",
    ) as bridge:
        report = await place_call(bridge.webhook, two_turns(), timeout=40)
        await wait_until(lambda: bridge.state.active_calls == 0)
    [result] = bridge.state.last_results
    assert (result.failed, result.reason) == (False, "caller_hangup")
    assert result.stats.renewals >= 1 and result.stats.reconnects == 0
    assert report.closed_by == "caller" and report.violations == []
    first, second = fake.sessions[:2]
    # At a pause: nothing was cut, and every answer was heard to its end (the greeting and
    # the fresh session's answer are the fake's first clip: the same audio).
    [greeting, answer], [again] = first.items.values(), second.items.values()
    assert again.deltas == greeting.deltas and first.truncations == []
    heard = report.player.heard_ms
    assert heard(set(answer.deltas)) == pytest.approx(answer.audio_ms_sent, abs=1)
    both = greeting.audio_ms_sent + again.audio_ms_sent
    assert heard(set(greeting.deltas)) == pytest.approx(both, abs=1)
    # Both sides, then the note to carry on; then nothing asked until the caller speaks.
    caller = next(
        e["transcript"]
        for e in first.sent
        if e["type"] == "conversation.item.input_audio_transcription.completed"
    )
    hello, reply = [
        e["transcript"] for e in first.sent if e["type"] == "response.output_audio_transcript.done"
    ]
    seeded = [
        (e["item"]["role"], e["item"]["content"][0]["text"])
        for e in second.received
        if e["type"] == "conversation.item.create"
    ]
    note = CallPolicy().continuation
    assert seeded == [
        ("assistant", hello),
        ("user", caller),
        ("assistant", reply),
        ("system", note),
    ]
    assert second.response_creates == []  # answered by VAD after the caller's turn: no greeting
