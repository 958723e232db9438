"""The call's one clock: the running event loop's ``time()``, in seconds or in the core's ms.

Every timer and timestamp of a call reads this clock, so a virtual loop clock (tests) drives
them all alike; ``now_ms`` is the one place where the shell's seconds become the core's ms.
"""

from __future__ import annotations

import asyncio

__all__ = ["now_ms", "now_s"]


def now_s() -> float:
    """Seconds on the running loop's monotonic clock: the unit of the shell's timers."""
    return asyncio.get_running_loop().time()


def now_ms() -> float:
    """The same clock in ms, the unit of everything handed to ``CallCore``."""
    return asyncio.get_running_loop().time() * 1000.0
