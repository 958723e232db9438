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
    finished with a newline. Otherwise one plain line per ``interval``. Either way the last
    line, written when told to stop (so a run shorter than ``interval`` has one too), gives
    the rates over the whole run.
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
        first = last = snapshot()
        while True:  # at least once: even a run that ends at once gets its last line
            try:
                async with asyncio.timeout(self.interval):
                    await stop.wait()
            except TimeoutError:
                pass
            now, snap, final = time.monotonic(), snapshot(), stop.is_set()
            # The last line sums the run up: its rates are over the whole run.
            since, since_t = (first, started) if final else (last, last_t)
            dt = max(now - since_t, 1e-6)
            text = self.line(
                snap,
                now - started,
                (snap.frames_sent - since.frames_sent) / dt,
                (snap.frames_received - since.frames_received) / dt,
            )
            self._write(text, final)
            if final:
                return
            last, last_t = snap, now

    def _write(self, text: str, final: bool) -> None:
        if self.live:
            self._width = max(self._width, len(text))
            self.stream.write("\r" + text.ljust(self._width) + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
