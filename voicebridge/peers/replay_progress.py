"""The replay's progress display: one line rewritten in place on a terminal, else log lines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

__all__ = ["Progress", "Snapshot"]

LIVE_INTERVAL_S = 0.25  # at most four redraws a second
PLAIN_INTERVAL_S = 5.0


@dataclass(frozen=True)
class Snapshot:
    active: int
    done: int
    failed: int
    frames_sent: int
    frames_received: int


class Progress:
    """Prints what the run is doing until told to stop.

    ``live``: a terminal; the line is redrawn with ``\\r`` every ``interval`` seconds and
    finished with a newline. Otherwise one plain line per ``interval``.
    """

    def __init__(self, stream: TextIO, *, live: bool, interval: float | None = None) -> None:
        self.stream = stream
        self.live = live
        self.interval = interval or (LIVE_INTERVAL_S if live else PLAIN_INTERVAL_S)
        self._width = 0

    def line(self, snap: Snapshot, elapsed: float, sent_fps: float, recv_fps: float) -> str:
        return (
            f"{elapsed:7.1f} s  active {snap.active}  done {snap.done}  failed {snap.failed}  "
            f"frames/s out {sent_fps:.0f} in {recv_fps:.0f}"
        )

    async def run(self, snapshot: Callable[[], Snapshot], stop: asyncio.Event) -> None:
        started = last_t = time.monotonic()
        last = snapshot()
        while not stop.is_set():
            try:
                async with asyncio.timeout(self.interval):
                    await stop.wait()
            except TimeoutError:
                pass
            now = time.monotonic()
            snap = snapshot()
            dt = max(now - last_t, 1e-6)
            text = self.line(
                snap,
                now - started,
                (snap.frames_sent - last.frames_sent) / dt,
                (snap.frames_received - last.frames_received) / dt,
            )
            last, last_t = snap, now
            if self.live:
                self._width = max(self._width, len(text))
                self.stream.write("\r" + text.ljust(self._width))
                if stop.is_set():
                    self.stream.write("\n")
            elif not stop.is_set():
                self.stream.write(text + "\n")
            self.stream.flush()
