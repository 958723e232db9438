"""A thousand short calls, ten at a time: tasks, sockets and memory come back to baseline."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.processes import free_port, serve, serve_env, wait_healthy
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.emulator import place_call
from voicebridge.twilio_sim.recordings import Recording, packaged_call

pytestmark = pytest.mark.slow  # every test here runs voicebridge as its own process


def short_call(frames: int = 5) -> Recording:
    """A call of ``frames`` × 20 ms: connected, start, media, stop."""
    messages = packaged_call("books_a_table").messages
    media = [m for m in messages if m.get("event") == "media"][:frames]
    return Recording("short", (messages[0], messages[1], *media, messages[-1]))


class Process:
    """The bridge as its own process, as the Procfile runs it: measured from outside."""

    def __init__(self, pid: int, base: str) -> None:
        self.pid, self.base = pid, base

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def readyz(self) -> dict[str, int]:
        with urllib.request.urlopen(self.base + "/readyz", timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]


async def run_calls(webhook: str, count: int, concurrency: int) -> list[str]:
    recording = short_call()
    gate = asyncio.Semaphore(concurrency)
    outcomes: list[str] = []

    async def one() -> None:
        async with gate:
            report = await place_call(webhook, recording, timeout=10)
            assert report.violations == []
            outcomes.append(report.closed_by or "?")

    async with asyncio.TaskGroup() as tg:
        for _ in range(count):
            tg.create_task(one())
    return outcomes


async def settle(proc: Process, fake: FakeRealtimeServer) -> dict[str, int]:
    deadline = time.monotonic() + 10
    while True:
        status = await asyncio.to_thread(proc.readyz)
        if status["active_calls"] == 0 and fake.active == 0:
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.05)


async def test_soak_thousand_short_calls(fake: FakeRealtimeServer, tmp_path: Path) -> None:
    """1,000 calls of 100 ms, 10 at a time, leave no task, socket or memory behind."""
    port = free_port()
    env = serve_env(port, fake.url, MAX_CALLS="20", LOG_LEVEL="WARNING", STREAM_TOKEN_TTL_S="2")
    popen = serve(env, tmp_path, quiet=True)
    base = f"http://127.0.0.1:{port}"
    proc = Process(popen.pid, base)
    try:
        await wait_healthy(popen, base)
        await run_calls(base + "/twilio/stream", 300, 10)  # warm-up: imports, caches, arenas
        before = await settle(proc, fake)
        fds, rss = proc.fds(), proc.rss_kib()
        fake.sessions.clear()
        outcomes = await run_calls(base + "/twilio/stream", 1000, 10)
        after = await settle(proc, fake)
        fake.sessions.clear()
        assert outcomes.count("caller") == 1000
        assert after["tasks"] <= before["tasks"], (before, after)
        assert proc.fds() <= fds
        growth = proc.rss_kib() - rss
        # A leak of even 4 KiB per call would show as 4 MiB here.
        assert growth < 4096, f"RSS grew by {growth} KiB over 1,000 calls"
    finally:
        popen.send_signal(signal.SIGTERM)
        await asyncio.to_thread(popen.wait, 15)
    assert popen.returncode == 0
