"""An upstream that never connects: logged as such, counted by reason, on the virtual clock."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest
from prometheus_client import generate_latest

from tests.support.shell import bridged
from voicebridge.config import Settings
from voicebridge.core.stats import CONNECT_FAILURES, CallStats
from voicebridge.errors import UpstreamError
from voicebridge.server.metrics import Metrics
from voicebridge.server.upstream import UpstreamConnection

DEFAULTS = Settings()


async def never_connects(settings: Settings, deadline: float) -> UpstreamConnection:
    """As open_upstream against a host that never answers: retries until the deadline."""
    await asyncio.sleep(deadline)
    raise UpstreamError(f"no connection to the Realtime API within {deadline:g} s (9 attempts)")


async def test_an_upstream_that_never_connects_is_logged_and_counted_as_such(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The caller talks through UPSTREAM_CONNECT_TIMEOUT_S (5 s) while nothing connects:
    the drops say the upstream is not connected yet (never "not keeping up"), one line says
    it never connected and why, and the failure is counted under its reason."""
    caplog.set_level(logging.INFO, "voicebridge")
    async with asyncio.timeout(60), bridged(caller_queue_frames=50) as b:
        b.call.upstream.connect = never_connects
        caller = asyncio.create_task(b.twilio.speak([], pause_after=30.0))
        result = await b.result()
        ended = b.now()
        caller.cancel()
    assert ended == pytest.approx(DEFAULTS.upstream_connect_timeout_s, abs=0.05)
    assert result.failed and result.reason.startswith("upstream_connect_failed: no connection")
    assert result.stats.upstream_connect_failures == Counter({"unreachable": 1})
    assert result.stats.caller_queue_dropped > 0
    lines = [r.getMessage() for r in caplog.records]
    assert "upstream not connected yet: dropping oldest caller audio" in lines
    assert not any("not keeping up" in line for line in lines)
    [never] = [line for line in lines if "never connected" in line]
    assert never.startswith("the upstream never connected (unreachable): no connection")


async def test_a_session_never_confirmed_is_a_connect_failure_too() -> None:
    """Connected, but no session.updated within the connect timeout: not_confirmed."""

    class Silent:
        async def send(self, text: str) -> None:
            pass

        async def recv(self) -> str:
            await asyncio.Event().wait()
            raise AssertionError

        def can_send_now(self, size: int) -> bool:
            return True

        async def close(self) -> None:
            pass

    async def silent(settings: Settings, deadline: float) -> UpstreamConnection:
        return Silent()

    async with asyncio.timeout(60), bridged() as b:
        b.call.upstream.connect = silent
        result = await b.result()
    assert result.reason == "session_not_confirmed"
    assert result.stats.upstream_connect_failures == Counter({"not_confirmed": 1})


async def test_connect_failures_are_a_metric_by_reason() -> None:
    """voicebridge_upstream_connect_failures_total{reason}: every reason from the start."""
    stats = CallStats()
    stats.upstream_connect_failures["auth"] += 1
    metrics = Metrics(live=lambda: [], rejected=Counter)
    metrics.call_ended(stats, "failed")
    text = generate_latest(metrics.registry).decode()
    assert 'voicebridge_upstream_connect_failures_total{reason="auth"} 1.0' in text
    for reason in set(CONNECT_FAILURES) - {"auth"}:
        assert f'voicebridge_upstream_connect_failures_total{{reason="{reason}"}} 0.0' in text
