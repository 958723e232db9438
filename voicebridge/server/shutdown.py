"""The drain after SIGTERM, on one budget (``core/shutdown.py``): what it asks of every call.

:class:`Shutdown` holds the orders of a shutdown in progress: a cutoff for every call
(``Call.end_by``: the budget's ``force_at``, or now after a second signal), and from
``DRAIN_TIMEOUT_S`` on, a closing line. A call whose stream arrives during the drain (its
webhook was answered before it began) gets the same orders when it is created
(:meth:`Shutdown.adopt`), so no call outlives the budget. :meth:`Shutdown.drain` runs the
phases; ``BridgeServer`` (serve.py) starts it on the first signal and stops the server when
it returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol

from voicebridge.core.shutdown import ShutdownPlan
from voicebridge.server.call import Call

__all__ = ["DRAINING", "FORCED_BY_BUDGET", "FORCED_BY_SIGNAL", "Shutdown"]

log = logging.getLogger(__name__)

DRAINING = "draining"  # the closing reason, and the refusal of streams that came too late
FORCED_BY_BUDGET = "shutdown_budget"  # a call still open at the budget's force_at
FORCED_BY_SIGNAL = "second_signal"


class Draining(Protocol):
    """What the drain sees of the app (``AppState``)."""

    @property
    def calls(self) -> set[Call]: ...

    async def wait_no_calls(self, timeout: float) -> bool: ...  # noqa: ASYNC109


class Shutdown:
    """A shutdown's orders to the calls, and its phases; idle until :meth:`begin`."""

    def __init__(self, plan: ShutdownPlan) -> None:
        self.plan = plan
        self.began: float | None = None  # loop time of the first signal
        self.closing = False  # closing lines asked for
        self._cutoff: tuple[float, str] | None = None  # (loop time, why) for Call.end_by

    def begin(self, now: float, calls: Iterable[Call]) -> None:
        """The first signal, at loop time ``now``: every call ends by the budget's force_at."""
        self.began = now
        self._order_cutoff(now + self.plan.force_at, FORCED_BY_BUDGET, calls)

    def force(self, now: float, calls: Iterable[Call]) -> None:
        """A second signal: every call ends now."""
        self._order_cutoff(now, FORCED_BY_SIGNAL, calls)

    def _order_cutoff(self, when: float, why: str, calls: Iterable[Call]) -> None:
        self._cutoff = (when, why)
        for call in list(calls):
            call.end_by(when, why)

    def close_all(self, calls: Iterable[Call]) -> None:
        """Ask every call for its closing line, and those that start from now on."""
        self.closing = True
        for call in list(calls):
            call.request_close(DRAINING)

    def adopt(self, call: Call) -> None:
        """A call created during the shutdown gets its orders too."""
        if self._cutoff is not None:
            call.end_by(*self._cutoff)
        if self.closing:
            call.request_close(DRAINING)

    async def drain(self, app: Draining) -> None:
        """From the first signal until no call is left, or the server must stop: the calls
        go on, then closing lines; each call's own cutoff ends whatever is left."""
        assert self.began is not None
        loop = asyncio.get_running_loop()
        plan = self.plan
        if not await app.wait_no_calls(self.began + plan.closing_lines_at - loop.time()):
            log.warning("drain timeout: %d call(s) get a closing line", len(app.calls))
            self.close_all(app.calls)
            if not await app.wait_no_calls(self.began + plan.stop_at - loop.time()):
                log.error(
                    "%d call(s) still open at the end of SHUTDOWN_TIMEOUT_S: stopping anyway",
                    len(app.calls),
                )
        log.info("drained in %.1f s: stopping", loop.time() - self.began)
