"""Ending calls well: graceful drain on SIGTERM, and the upstream's session age limit."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.support.processes import free_port, serve, serve_env, wait_healthy
from tests.support.servers import running_bridge
from tests.support.waiting import wait_until
from voicebridge.config import DEFAULT_CLOSING, Settings
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.emulator import place_call
from voicebridge.twilio_sim.recordings import packaged_call
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


async def test_session_limit_renews_the_session(
    fake: FakeRealtimeServer, settings: Settings
) -> None:
    """With SESSION_LIMIT_ACTION=renew the call continues in a fresh upstream session.

    On the wall clock through real sockets, at a shrunk limit; both actions at the real
    limit (3480 s) are in tests/shell/test_timers.py."""
    with running_bridge(settings, session_limit_s=1.5, session_limit_action="renew") as bridge:
        report = await place_call(
            bridge.webhook, packaged_call("books_a_table"), speed=2.0, tail_ms=1000, timeout=20
        )
        await wait_until(lambda: bridge.state.active_calls == 0)
    assert fake.connections_total >= 2
    [result] = bridge.state.last_results
    assert not result.failed and result.reason == "caller_hangup" and result.stats.reconnects >= 1
    assert report.closed_by == "caller" and report.violations == []
    assert fake.sessions[1].received[0]["type"] == "session.update"
