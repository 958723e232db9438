"""An event loop whose clock jumps to the next timer whenever nothing else can run.

``VirtualClockLoop.time()`` starts at 0 and moves only when the loop would otherwise wait:
when no callback is ready and no file descriptor is (its selector polled without waiting),
the clock jumps by the wait the loop asked for, straight to its next timer. An hour of
``asyncio.sleep`` then takes no wall time, while everything that is ready still runs first,
in order. This is trio's ``MockClock(autojump_threshold=0)`` for asyncio.

Real I/O still works (a thread's ``call_soon_threadsafe`` wakes the loop through its
self-pipe, which the poll sees), but a test waiting on a real socket would see time race
ahead: the tests using this loop keep their peers in memory.
"""

from __future__ import annotations

import asyncio
import math
import selectors
from typing import Any

__all__ = ["VirtualClockLoop"]

TICKS_PER_S = 1_000_000  # the clock counts whole µs: sums of waits land on the same values


class _JumpingSelector:
    """The loop's selector, polled instead of waited on: a wait becomes a jump."""

    def __init__(self, selector: selectors.BaseSelector, loop: VirtualClockLoop) -> None:
        self._selector = selector
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:
            # No timer at all (only I/O can wake the loop), or a poll: as is.
            return self._selector.select(timeout)
        ready = self._selector.select(0)
        if not ready:
            self._loop.jump(timeout)
        return ready

    def __getattr__(self, name: str) -> Any:
        return getattr(self._selector, name)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock that autojumps (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._ticks = 0
        selector: selectors.BaseSelector = self._selector  # type: ignore[has-type]
        self._selector = _JumpingSelector(selector, self)

    def time(self) -> float:
        return self._ticks / TICKS_PER_S

    def jump(self, wait: float) -> None:
        """Instead of waiting ``wait`` seconds: to the next timer (or by ``wait`` if that is
        nearer), on the µs grid, never short of the timer by more than the loop's clock
        resolution (1 ns) so that it runs, and always forward."""
        scheduled = self._scheduled  # type: ignore[attr-defined]
        target = self.time() + wait
        if scheduled:
            target = min(target, scheduled[0].when())
        self._ticks = max(self._ticks + 1, math.ceil(target * TICKS_PER_S - 1e-3))
