"""SIGTERM against peers that never cooperate: the drain keeps its budget, as an operator runs it.

``voicebridge serve`` in its own process, at a short budget (the arithmetic at the production
budget is in tests/shell/test_shutdown.py and tests/unit/test_shutdown_budget.py): callers
whose Twilio never echoes a mark, Twilio's REST API never answering, a webhook answered just
before the signal, a second signal.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import free_port, serve, serve_env, wait_healthy
from tests.support.rest_fake import running_rest
from voicebridge.config import DEFAULT_CLOSING
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.call_report import CallReport
from voicebridge.twilio_sim.emulator import place_call
from voicebridge.twilio_sim.recordings import Recording, packaged_call
from voicebridge.twilio_sim.script import SILENCE_PAYLOAD
from voicebridge.twilio_sim.stream import EmulatedCall
from voicebridge.twilio_sim.webhook_client import LocalProxy, call_params, new_sid, post_webhook

pytestmark = pytest.mark.slow

AUTH = "0123456789abcdef0123456789abcdef"
ACCOUNT = "AC" + "fedcba9876543210" * 2
PUBLIC = "https://voice.example.com"
WEBHOOK = PUBLIC + "/twilio/stream"
# 1 s of drain, 2 s for the closing line, 5 s for the endings and the forced phase.
BUDGET = {"SHUTDOWN_TIMEOUT_S": "8", "DRAIN_TIMEOUT_S": "1", "CLOSING_TIMEOUT_S": "2"}
FORCE_AT = 8.0 - 2.0
SILENT = Recording(
    "silent", ({"event": "media", "media": {"timestamp": "0", "payload": SILENCE_PAYLOAD}},)
)


def bridge_env(port: int, fake: FakeRealtimeServer, rest_url: str) -> dict[str, str]:
    return serve_env(
        port,
        fake.url,
        PUBLIC_URL=PUBLIC,
        TWILIO_AUTH_TOKEN=AUTH,
        TWILIO_ACCOUNT_SID=ACCOUNT,
        TWILIO_API_BASE=rest_url,
        STREAM_TOKEN_SECRET="a-shared-stream-token-secret-0123456789",
        LOG_FORMAT="json",
        **BUDGET,
    )


def json_lines(out: str) -> list[dict[str, Any]]:
    lines = []
    for line in out.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def ended(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each call's end line, by CallSid."""
    return {line["call_sid"]: line for line in lines if line.get("event") == "call_ended"}


async def wait_exit(proc: subprocess.Popen[str], timeout: float) -> tuple[float, str]:
    """(seconds until the process exited, its output)."""
    began = time.monotonic()
    while proc.poll() is None and time.monotonic() - began < timeout:
        await asyncio.sleep(0.02)
    took = time.monotonic() - began
    out, _ = await asyncio.to_thread(proc.communicate, timeout=5)
    return took, out


async def test_sigterm_keeps_its_budget_against_peers_that_never_answer(
    fake: FakeRealtimeServer, tmp_path: Path
) -> None:
    """Three callers whose Twilio never echoes a mark, Twilio's REST API never answering,
    and a webhook answered 100 ms before SIGTERM: the late stream is admitted and hears the
    closing line; a webhook after the signal is refused as draining; every call ends by the
    budget's cutoff (forced, accounted one line each); the process exits 0 within
    SHUTDOWN_TIMEOUT_S + 1 s."""
    port = free_port()
    proxy = LocalProxy(f"127.0.0.1:{port}")
    recording = packaged_call("books_a_table")
    with running_rest() as rest:
        rest.hang = True
        proc = serve(bridge_env(port, fake, rest.url), tmp_path)
        try:
            await wait_healthy(proc, f"http://127.0.0.1:{port}")
            muted = [
                asyncio.create_task(
                    place_call(
                        WEBHOOK,
                        recording,
                        auth_token=AUTH,
                        proxy=proxy,
                        tail_ms=30_000,
                        echo_marks=False,
                        timeout=30,
                    )
                )
                for _ in range(3)
            ]
            await asyncio.sleep(2.5)  # mid-conversation
            late_sid = new_sid("CA")
            params = call_params(late_sid, ACCOUNT, from_="+15005550006", to="+15005550001")
            answer = await post_webhook(WEBHOOK, params, auth_token=AUTH, proxy=proxy)
            assert answer.twiml is not None and answer.twiml.stream_url is not None
            await asyncio.sleep(0.1)
            sigterm_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            late = EmulatedCall(
                answer.twiml.stream_url,
                SILENT,  # nobody talks over its closing line
                parameters=answer.twiml.parameters,
                call_sid=late_sid,
                account_sid=ACCOUNT,
                auth_token=AUTH,
                proxy=proxy,
                tail_ms=30_000,
            )
            late_report = asyncio.create_task(late.run(timeout=30))
            after = await post_webhook(
                WEBHOOK,
                call_params(new_sid("CA"), ACCOUNT, from_="+1", to="+2"),
                auth_token=AUTH,
                proxy=proxy,
            )
            took, out = await wait_exit(proc, 15)
            reports: list[CallReport] = [*await asyncio.gather(*muted), await late_report]
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, out
    assert took <= 8.0 + 1.0, out
    assert after.twiml is not None and after.twiml.stream_url is None  # busy TwiML
    lines = json_lines(out)
    assert any(
        line.get("message", "").endswith("/twilio/stream from 127.0.0.1: draining")
        for line in lines
    )
    # Every call, the late one too, accounted once: cut at the budget's cutoff.
    ends = ended(lines)
    assert set(ends) == {r.call_sid for r in reports}, out
    for line in ends.values():
        assert (line["outcome"], line["reason"]) == ("forced", "shutdown_budget"), line
    for report in reports:
        cut = report.t0 + report.ended_at / 1000 - sigterm_at
        assert FORCE_AT - 0.5 < cut < FORCE_AT + 1.0, cut
        assert report.closed_by == "server" and report.close_code == 1012
    assert len(rest.requests) == 4  # each call's hang-up was asked for, never answered
    # The late stream was admitted and heard its closing line.
    late_heard = late_report.result()
    assert late_heard.frames_received > 0
    closing_sessions = [
        s
        for s in fake.sessions
        if any(
            e.get("response", {}).get("instructions") == DEFAULT_CLOSING for e in s.response_creates
        )
    ]
    assert len(closing_sessions) == 4
    closing_audio = {d for s in closing_sessions for d in list(s.items.values())[-1].deltas}
    line = [
        c
        for c in late_heard.player.chunks
        if c.payload in closing_audio and late_heard.t0 + c.start / 1000 > sigterm_at + 1.0
    ]
    assert line and all(c.played == c.duration for c in line)  # heard in full


async def test_a_second_sigterm_ends_every_call_at_once(
    fake: FakeRealtimeServer, tmp_path: Path
) -> None:
    """A second SIGTERM during the drain: the calls end then, forced, and the process
    exits 0 at once."""
    port = free_port()
    proxy = LocalProxy(f"127.0.0.1:{port}")
    with running_rest() as rest:
        proc = serve(bridge_env(port, fake, rest.url), tmp_path)
        try:
            await wait_healthy(proc, f"http://127.0.0.1:{port}")
            calls = [
                asyncio.create_task(
                    place_call(
                        WEBHOOK,
                        packaged_call("books_a_table"),
                        auth_token=AUTH,
                        proxy=proxy,
                        tail_ms=30_000,
                        timeout=30,
                    )
                )
                for _ in range(2)
            ]
            await asyncio.sleep(2.0)
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            took, out = await wait_exit(proc, 10)
            reports = await asyncio.gather(*calls)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, out
    assert took < 2.0, out
    ends = ended(json_lines(out))
    assert set(ends) == {r.call_sid for r in reports}
    for line in ends.values():
        assert (line["outcome"], line["reason"]) == ("forced", "second_signal"), line
    assert rest.requests == []  # no closing line began: nothing to hang up
