"""``voicebridge serve`` with a candidate optimisation patched in at run time (bench only).

The benchmark does not change ``voicebridge/server`` or ``voicebridge/core``; to put numbers
on a change (one to make, or one made, by restoring its former state) it runs the bridge
through this launcher instead, which does exactly what ``voicebridge serve`` does (environment
and ``.env``, settings, logging, ``serve()``) after
applying the named patches:

* ``serve``: none (a check that this launcher adds nothing to ``voicebridge serve``);
* ``asyncio``: the stdlib event loop instead of uvloop (what ``voicebridge serve`` ran on
  before it picked uvloop);
* ``stdjson``: the standard ``json.loads`` for parsing Twilio messages and Realtime events,
  instead of orjson;
* ``sendtimeout``: an ``asyncio.timeout`` around each upstream send again (a timer per
  frame, the stall check ``voicebridge serve`` used before ``upstream_watch``);
* ``nomediawatch``: no media-gap watch (per call, a timer re-armed about ten times a second
  and a task that feeds silence upstream when Twilio's media stops): an upper bound for any
  cheaper watch; without it a carrier's silence starves the model's VAD, so a measurement only;
* ``queued``: every caller frame through the upstream queue and upstream-out's wake-up, as
  before twilio-in wrote a frame with nothing ahead of it straight upstream (``_send_now``);
* ``taskwatch``: the media-gap watch as a task that sleeps until the gap could next be
  reached (about ten wake-ups a second per call), as before the timer callback;
* ``gcstats``: no change; the garbage collector's passes and their CPU time, with the
  process's, written to stderr (the bridge's log) every 5 s;
* ``nomarks``: no ``mark`` after each model audio chunk (an upper bound for mark batching:
  it breaks the barge-in bookkeeping, so it is a measurement, not a proposal).

    .venv/bin/python bench/run.py --bridge serve+stdjson --targets bridge --no-write
"""

from __future__ import annotations

import asyncio
import json
import sys
from types import SimpleNamespace
from typing import Any

KNOWN = (
    "serve",
    "asyncio",
    "stdjson",
    "sendtimeout",
    "nomediawatch",
    "nomarks",
    "queued",
    "taskwatch",
    "gcstats",
)


def patch_stdjson() -> None:
    from voicebridge.core import realtime, twilio

    # The parsers call orjson.loads and catch orjson.JSONDecodeError (a ValueError).
    shim = SimpleNamespace(loads=json.loads, JSONDecodeError=ValueError)
    setattr(twilio, "orjson", shim)  # noqa: B010
    setattr(realtime, "orjson", shim)  # noqa: B010


def patch_sendtimeout() -> None:
    from voicebridge.server.lifetime import UpstreamLost
    from voicebridge.server.upstream import UpstreamClosed, UpstreamConnection
    from voicebridge.server.upstream_side import UpstreamSide

    async def upstream_out(self: Any, conn: UpstreamConnection) -> None:
        stall = self.settings.upstream_stall_timeout_s
        self.conn = conn
        try:
            while True:
                text = await self.upstream_q.get()
                async with asyncio.timeout(stall):
                    await conn.send(text)
        except TimeoutError:
            raise UpstreamLost(f"stalled: a send blocked for {stall:g} s") from None
        except UpstreamClosed as exc:
            raise UpstreamLost(str(exc)) from None
        finally:
            self.conn = None

    UpstreamSide.upstream_out = upstream_out  # type: ignore[method-assign]


def patch_nomarks() -> None:
    from voicebridge.core import actions, call

    original = call.CallCore.render

    def render(self: Any, action: Any, now: float) -> actions.Rendered:
        out = original(self, action, now)
        if isinstance(action, actions.Playback) and len(out.messages) >= 2:
            kept = tuple(t for t in out.messages if '"event":"mark"' not in t)
            return actions.Rendered(kept, out.timings)
        return out

    call.CallCore.render = render  # type: ignore[method-assign]


def patch_nomediawatch() -> None:
    from voicebridge.server.twilio_side import TwilioSide

    async def media_watch(self: Any) -> None:
        await asyncio.sleep(3600)

    TwilioSide.media_watch = media_watch  # type: ignore[method-assign]


def patch_queued() -> None:
    from voicebridge.server.twilio_side import TwilioSide

    async def send_now(self: Any, action: Any) -> bool:
        return False

    TwilioSide._send_now = send_now  # type: ignore[method-assign]


def patch_taskwatch() -> None:
    from voicebridge.server.twilio_side import TwilioSide

    async def media_watch(self: Any) -> None:
        gap = self.settings.media_gap_ms / 1000.0
        loop = asyncio.get_running_loop()
        while True:
            quiet = loop.time() - self.last_media
            if quiet < gap:
                await asyncio.sleep(gap - quiet)
                continue
            self.apply(self.core.media_gap())
            await asyncio.sleep(0.02)

    TwilioSide.media_watch = media_watch  # type: ignore[method-assign]


def patch_gcstats() -> None:
    import gc
    import threading
    import time

    spent = [0.0, 0.0, 0.0]
    runs = [0, 0, 0]
    began = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.thread_time()
        else:
            spent[info["generation"]] += time.thread_time() - began[0]
            runs[info["generation"]] += 1

    gc.callbacks.append(callback)

    def report() -> None:
        while True:
            time.sleep(5)
            print(  # noqa: T201
                f"gcstats passes={runs} gc_cpu_s={[round(s, 3) for s in spent]} "
                f"total={sum(spent):.3f} process_cpu_s={time.process_time():.3f}",
                file=sys.stderr,
                flush=True,
            )

    threading.Thread(target=report, name="gcstats", daemon=True).start()


def main() -> int:
    names = sys.argv[1].split("+") if len(sys.argv) > 1 else ["serve"]
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        print(f"variants: unknown {unknown}; known: {KNOWN}", file=sys.stderr)  # noqa: T201
        return 2
    from voicebridge.config import Settings, load_environ
    from voicebridge.logs import setup_logging
    from voicebridge.server.serve import event_loop_factory, serve

    settings = Settings.from_env(load_environ())
    setup_logging(settings.log_level, settings.log_format)
    if "stdjson" in names:
        patch_stdjson()
    if "sendtimeout" in names:
        patch_sendtimeout()
    if "nomediawatch" in names:
        patch_nomediawatch()
    if "nomarks" in names:
        patch_nomarks()
    if "queued" in names:
        patch_queued()
    if "taskwatch" in names:
        patch_taskwatch()
    if "gcstats" in names:
        patch_gcstats()
    factory = None if "asyncio" in names else event_loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
