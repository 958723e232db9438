"""What a per-call media-gap watch costs: a sleeping task against a re-armed timer (bench only).

    taskset -c 0 .venv/bin/python bench/watch_cost.py --calls 150

N calls' "last media" times are refreshed every 20 ms, as Twilio's frames would; each call is
watched for a 100 ms gap either by a task that sleeps until the gap could next be reached
(what ``media-watch`` was) or by a timer callback re-armed the same way (what it is). Prints
the process's CPU per second of each, and of the frames alone.
"""

# ruff: noqa: T201  (a command-line tool: it prints)

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

from voicebridge.server.serve import event_loop_factory

GAP_S = 0.1  # MEDIA_GAP_MS's default


class _Call:
    def __init__(self) -> None:
        self.last_media = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None


async def _frames(calls: list[_Call]) -> None:
    while True:
        await asyncio.sleep(0.02)
        now = time.monotonic()
        for call in calls:
            call.last_media = now


async def _task_watch(call: _Call) -> None:
    while True:
        quiet = time.monotonic() - call.last_media
        await asyncio.sleep(GAP_S - quiet if quiet < GAP_S else 0.02)


def _timer_watch(call: _Call, loop: asyncio.AbstractEventLoop) -> None:
    def check() -> None:
        quiet = time.monotonic() - call.last_media
        call.timer = loop.call_later(GAP_S - quiet if quiet < GAP_S else 0.02, check)

    check()


async def _measure(mode: str, n: int, seconds: float) -> float:
    loop = asyncio.get_running_loop()
    calls = [_Call() for _ in range(n)]
    tasks = [asyncio.create_task(_frames(calls))]
    if mode == "task":
        tasks += [asyncio.create_task(_task_watch(c)) for c in calls]
    elif mode == "timer":
        for c in calls:
            _timer_watch(c, loop)
    try:
        await asyncio.sleep(1.0)
        cpu = time.process_time()
        await asyncio.sleep(seconds)
        return (time.process_time() - cpu) / seconds * 1000.0
    finally:
        for c in calls:
            if c.timer is not None:
                c.timer.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    factory: Callable[[], asyncio.AbstractEventLoop] | None = event_loop_factory()
    for mode in ("frames only", "task", "timer"):
        with asyncio.Runner(loop_factory=factory) as runner:
            ms = runner.run(_measure(mode, args.calls, args.seconds))
        print(f"{mode:12s} {ms:6.1f} ms CPU per second ({args.calls} calls)")


if __name__ == "__main__":
    main()
