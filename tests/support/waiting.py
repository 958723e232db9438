"""Waiting for a condition that another thread or task makes true, with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["wait_until"]


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Return once ``predicate()`` is true; fail after ``timeout`` seconds.

    Awaits between polls, so the test's own loop (an emulated caller, a client socket)
    keeps running while the bridge and the fake work in their threads.
    """
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"condition not met in {timeout} s") from None
