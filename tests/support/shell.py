"""The real ``Call`` between in-memory fakes: ``MemoryTwilio`` and the fake Realtime server.

``bridged`` runs one call in a task and hands the test both sides; on the virtual clock
(``VirtualClockLoop``) the loop's clock jumps to the next timer whenever every task waits,
so a call's timers run at their production values in milliseconds of wall time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.memory_realtime import MemoryRealtime
from tests.support.memory_twilio import MemoryTwilio
from voicebridge.config import Settings
from voicebridge.core import twilio as tw
from voicebridge.core.outcomes import MemoryOutcomes, Outcome
from voicebridge.core.twiml import after_stream_twiml
from voicebridge.fake_realtime.session import FakeRealtimeOptions
from voicebridge.server.call import Call, CallResult
from voicebridge.server.connect import Connect
from voicebridge.server.upstream import UpstreamConnection
from voicebridge.twilio_sim.webhook_client import parse_twiml

__all__ = ["Bridged", "bridged", "connected_call", "until"]

# Production settings, less what needs a network or a disk.
SETTINGS = Settings(realtime_url="ws://memory/v1/realtime")


async def admit_all(start: tw.Start) -> str | None:
    """Every `start` is admitted (the guard's checks are tested end to end)."""
    return None


class Outcomes(MemoryOutcomes):
    """The call's outcome store, on the loop's clock; notes whether Twilio's socket was
    still open when each outcome was recorded (it must be: Twilio asks right after)."""

    def __init__(self, twilio: MemoryTwilio) -> None:
        super().__init__(600.0, 100, lambda: asyncio.get_running_loop().time())
        self.twilio = twilio
        self.put_while_open: list[bool] = []

    async def put(self, call_sid: str, outcome: Outcome) -> None:
        self.put_while_open.append(not self.twilio.closed)
        await super().put(call_sid, outcome)


@dataclass
class Bridged:
    call: Call
    twilio: MemoryTwilio
    realtime: MemoryRealtime
    task: asyncio.Task[CallResult]
    outcomes: Outcomes

    async def result(self) -> CallResult:
        return await self.task

    async def after_stream(self) -> tuple[tuple[str, str], ...]:
        """The verbs Twilio's ``<Connect action>`` request gets for this call."""
        outcome = await self.outcomes.take(self.twilio.call_sid)
        return parse_twiml(after_stream_twiml(outcome, SETTINGS.failure_say)).verbs

    def now(self) -> float:
        """The loop's clock, in seconds."""
        return asyncio.get_running_loop().time()


@asynccontextmanager
async def bridged(
    options: FakeRealtimeOptions | None = None,
    *,
    start: bool = True,
    refuse: int = 0,
    echo_marks: bool = True,
    connect: Callable[[Settings], Connect] | None = None,
    parameters: dict[str, str] | None = None,
    **overrides: Any,
) -> AsyncIterator[Bridged]:
    """A call running between the fakes, with ``overrides`` applied to the settings.

    ``start``: Twilio's ``connected`` and ``start`` are already on the wire, with
    ``parameters`` (the webhook's <Parameter>s). ``connect`` builds the call's profiles,
    tools and events from its settings.
    """
    settings = dataclasses.replace(SETTINGS, **overrides)
    twilio = MemoryTwilio(echo_marks=echo_marks)
    realtime = MemoryRealtime(options or FakeRealtimeOptions(), refuse=refuse)
    outcomes = Outcomes(twilio)
    call = Call(
        twilio,
        settings,
        admit_all,
        connect_upstream=realtime.connect,
        outcomes=outcomes,
        connect=connect(settings) if connect is not None else None,
    )
    if start:
        twilio.start(**(parameters or {}))
    task = asyncio.create_task(call.run(), name="call")
    try:
        yield Bridged(call, twilio, realtime, task, outcomes)
    finally:
        if not task.done():
            twilio.hang_up()
            await task
        await realtime.aclose()


def connected_call(upstream: UpstreamConnection | Any | None) -> Call:
    """A call (not run) whose upstream-out is taken to be running on ``upstream``."""
    call = Call(MemoryTwilio(), SETTINGS, admit_all)
    call.upstream.conn = upstream
    return call


async def until(condition: Callable[[], bool], step: float = 0.01) -> None:
    """Wait, on the loop's clock, until ``condition`` holds (under the test's own timeout)."""
    while not condition():
        await asyncio.sleep(step)
