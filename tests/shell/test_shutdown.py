"""The drain after SIGTERM at its production budget (25 s), on the virtual clock.

Real calls between the in-memory Twilio and the fake Realtime server, drained by the real
``Shutdown``: the closing lines at DRAIN_TIMEOUT_S, the forced end at the budget's cutoff, a
second signal, and a call whose stream arrives during the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.shell import Bridged, bridged, until
from voicebridge.config import DEFAULT_CLOSING, Secret, Settings
from voicebridge.core.shutdown import FORCE_S, ShutdownPlan
from voicebridge.server import closing
from voicebridge.server.call import Call
from voicebridge.server.shutdown import Shutdown

DEFAULTS = Settings()
PLAN = DEFAULTS.shutdown_plan()
REST = {"twilio_account_sid": "AC" + "0" * 32, "twilio_auth_token": Secret("f" * 32)}
HANG_UP = (("Hangup", ""),)
APOLOGY = (("Say", DEFAULTS.failure_say), ("Hangup", ""))


class App:
    """What the drain sees of the app: the running calls (as AppState keeps them)."""

    def __init__(self, *calls: Bridged) -> None:
        self.calls: set[Call] = set()
        self.no_calls = asyncio.Event()
        for b in calls:
            self.add(b)

    def add(self, b: Bridged) -> None:
        self.calls.add(b.call)
        self.no_calls.clear()
        b.task.add_done_callback(lambda _: self._gone(b.call))

    def _gone(self, call: Call) -> None:
        self.calls.discard(call)
        if not self.calls:
            self.no_calls.set()

    async def wait_no_calls(self, timeout: float) -> bool:
        if not self.calls:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self.no_calls.wait()
        except TimeoutError:
            return False
        return True


@contextlib.asynccontextmanager
async def on_the_line(**overrides: Any) -> AsyncIterator[Bridged]:
    """A call whose session is ready and whose caller stays silent on the line."""
    async with bridged(**overrides) as b:
        await until(lambda: b.call.core.session_ready)
        caller = asyncio.create_task(b.twilio.speak([], pause_after=600.0))
        try:
            yield b
        finally:
            caller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await caller


async def hanging_rest(*args: object, **kwargs: object) -> None:
    """Twilio's REST API, never answering."""
    await asyncio.Event().wait()


def test_the_budget_is_tested_at_its_production_values() -> None:
    """25 s in all, 10 s of drain, 10 s for the closing line: and they fit."""
    assert PLAN == ShutdownPlan(budget_s=25.0, drain_s=10.0, closing_s=10.0)
    assert PLAN.fits() and PLAN.force_at == 23.0 and PLAN.stop_at == 24.5


async def test_every_call_ends_within_the_budget_whatever_its_peers_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGTERM at t=0 with three calls: one hangs up during the drain (caller_hangup), one
    whose Twilio never echoes marks ends at 10 + 10 s after its unheard closing line
    (deliberate), one whose REST hang-up never answers is cut at 23 s (forced, after its
    closing line: a hang-up, no apology); the drain is over before the server's stop."""
    monkeypatch.setattr(closing, "update_call", hanging_rest)
    async with (
        asyncio.timeout(60),
        on_the_line() as leaving,
        on_the_line(echo_marks=False) as muted,
        on_the_line(**REST) as stuck,
    ):
        app = App(leaving, muted, stuck)
        shutdown = Shutdown(PLAN)
        t0 = leaving.now()
        shutdown.begin(t0, app.calls)
        drain = asyncio.create_task(shutdown.drain(app))
        await asyncio.sleep(4.0)
        leaving.twilio.stop()
        results = {
            name: (await b.result(), b.now() - t0)
            for name, b in (("leaving", leaving), ("muted", muted), ("stuck", stuck))
        }
        await drain
        drained = muted.now() - t0
    left, left_at = results["leaving"]
    assert left.outcome == "caller_hangup" and left_at == pytest.approx(4.0, abs=0.1)
    quiet, quiet_at = results["muted"]
    assert (quiet.outcome, quiet.reason) == ("deliberate", "draining")
    assert quiet_at == pytest.approx(PLAN.drain_s + PLAN.closing_s, abs=0.1)
    assert await muted.after_stream() == HANG_UP
    cut, cut_at = results["stuck"]
    assert (cut.outcome, cut.reason, cut.failed, cut.forced) == (
        "forced",
        "shutdown_budget",
        False,
        True,
    )
    assert cut_at == pytest.approx(PLAN.force_at, abs=0.01)
    assert await stuck.after_stream() == HANG_UP  # its closing line was asked for
    assert stuck.twilio.close_code == 1012
    [(_, line)] = stuck.realtime.pipes[0].events("client", "response.create")
    assert line["response"]["instructions"] == DEFAULT_CLOSING
    assert drained < PLAN.stop_at and drained - PLAN.force_at < FORCE_S


async def test_a_second_signal_ends_every_call_at_once() -> None:
    """A second signal during the drain: every call ends then, forced, before any closing
    line; Twilio's action request gets the apology."""
    async with asyncio.timeout(60), on_the_line() as one, on_the_line() as two:
        app = App(one, two)
        shutdown = Shutdown(PLAN)
        t0 = one.now()
        shutdown.begin(t0, app.calls)
        drain = asyncio.create_task(shutdown.drain(app))
        await asyncio.sleep(3.0)
        shutdown.force(one.now(), app.calls)
        for b in (one, two):
            result = await b.result()
            assert (result.outcome, result.reason) == ("forced", "second_signal")
            assert b.now() - t0 == pytest.approx(3.0, abs=0.01)
            assert await b.after_stream() == APOLOGY
        await drain
    assert not one.realtime.pipes[0].events("client", "response.create")


async def test_a_stream_arriving_in_the_closing_phase_gets_its_closing_line() -> None:
    """A call created after the closing lines were asked for (its webhook came before the
    drain) is admitted, waits for its session, and hears the closing line in full."""
    shutdown = Shutdown(PLAN)
    shutdown.begin(0.0, [])
    shutdown.close_all([])
    async with asyncio.timeout(60), bridged(start=False) as b:
        shutdown.adopt(b.call)
        b.twilio.start()
        result = await b.result()
    [pipe] = b.realtime.pipes
    [(_, line)] = pipe.events("client", "response.create")
    assert line["response"]["instructions"] == DEFAULT_CLOSING
    assert (result.outcome, result.reason) == ("deliberate", "draining")
    chunks = b.twilio.player.chunks
    assert chunks and all(c.played == c.duration for c in chunks)
    assert await b.after_stream() == HANG_UP


async def test_a_socket_still_waiting_for_start_at_the_cutoff_is_refused_as_draining() -> None:
    """No `start` by the cutoff: not a call; refused (draining), no upstream opened."""
    async with asyncio.timeout(60), bridged(start=False) as b:
        b.call.end_by(b.now() + 3.0, "shutdown_budget")
        result = await b.result()
    assert result.refused == "draining" and not result.admitted
    assert b.realtime.connects == 0
