"""Two instances sharing one real Redis, each its own ``voicebridge serve`` process: webhooks
answered by one, streams opened on the other, a cluster cap, and a Redis outage mid-call."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import free_port, serve_env, wait_healthy
from tests.support.redis_server import RedisServer, running_redis
from tests.support.waiting import wait_until
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.twilio_sim.emulator import CallReport, EmulatedCall
from voicebridge.twilio_sim.recordings import Recording, packaged_call
from voicebridge.twilio_sim.webhook_client import TwiML, call_params, new_sid, post_webhook

pytestmark = pytest.mark.slow  # every test here runs voicebridge as its own processes

SECRET = "one-stream-token-secret-for-every-instance"


class Instance:
    """``voicebridge serve`` on a free loopback port, its output in a file."""

    def __init__(self, name: str, fake: FakeRealtimeServer, tmp: Path, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"{name}.log"
        settings = {"STREAM_TOKEN_SECRET": SECRET, "MAX_CALLS": "3", **env}
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "voicebridge", "serve"],
                env=serve_env(self.port, fake.url, **settings),
                cwd=tmp,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as resp:
                body = resp.read().decode()
                status = resp.status
        except urllib.error.HTTPError as err:
            with err:
                body, status = err.read().decode(), err.code
        return status, json.loads(body) if path == "/readyz" else body

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


async def started(*instances: Instance) -> None:
    for instance in instances:
        await wait_healthy(instance.proc, instance.base)  # type: ignore[arg-type]


async def webhook(instance: Instance, call_sid: str) -> TwiML:
    params = call_params(call_sid, "AC" + "0" * 32, from_="+14155550100", to="+18005550100")
    answer = await post_webhook(instance.base + "/twilio/stream", params)
    assert answer.status == 200 and answer.twiml is not None, answer.body
    return answer.twiml


def stream(twiml: TwiML, to: Instance, call_sid: str, recording: Recording) -> EmulatedCall:
    """The call's stream opened on ``to``, whichever instance answered its webhook."""
    assert twiml.stream_url is not None
    url = to.base.replace("http://", "ws://") + "/realtime"
    return EmulatedCall(url, recording, parameters=twiml.parameters, call_sid=call_sid, loop=True)


class Running:
    """Calls in progress, each in its own task until hung up."""

    def __init__(self) -> None:
        self.calls: list[tuple[EmulatedCall, asyncio.Task[CallReport]]] = []

    def start(self, call: EmulatedCall) -> EmulatedCall:
        self.calls.append((call, asyncio.create_task(call.run(60))))
        return call

    async def hang_up(self) -> list[CallReport]:
        for call, _ in self.calls:
            call.request_hangup()
        reports = [await task for _, task in self.calls]
        self.calls.clear()
        return reports


def readyz_status(instance: Instance) -> int:
    return instance.get("/readyz")[0]


async def eventually(check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check`` (blocking HTTP: in a thread, so the callers' loop runs on) until true."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"not within {timeout} s"
        await asyncio.sleep(0.05)


async def test_streams_elsewhere_tokens_once_and_a_cluster_cap(
    fake: FakeRealtimeServer, redis: RedisServer, tmp_path: Path
) -> None:
    """A answers three webhooks whose streams open on B: A still has room, and is ready within
    2 s of their end; B's used token is refused on A before any upstream; a replayed webhook
    opens no second call; MAX_CALLS_TOTAL=4: the fifth concurrent call hears busy."""
    env = {"REDIS_URL": redis.url, "MAX_CALLS_TOTAL": "4"}
    a, b = Instance("a", fake, tmp_path, **env), Instance("b", fake, tmp_path, **env)
    running = Running()
    try:
        await started(a, b)
        silence = packaged_call("interrupts")
        sids = [new_sid("CA") for _ in range(3)]
        answers = [await webhook(a, sid) for sid in sids]
        for sid, twiml in zip(sids, answers, strict=True):
            running.start(stream(twiml, b, sid, silence))
        await wait_until(lambda: fake.active == 3, timeout=10)
        assert readyz_status(a) == 200 and readyz_status(b) == 503  # B holds all three

        fourth = await webhook(a, new_sid("CA"))
        assert fourth.stream_url is not None  # A's reservations moved to B: room on A
        fifth = await webhook(a, new_sid("CA"))  # 3 calls + 1 reservation: the cluster's 4
        assert fifth.stream_url is None and fifth.says_before  # busy, no stream
        assert (
            'voicebridge_rejected_requests_total{reason="busy_cluster"} 1.0' in a.get("/metrics")[1]
        )

        # The first call's token, already used on B, replayed on A: refused, no upstream.
        connections = fake.connections_total
        replay = await stream(answers[0], a, sids[0], silence).run(10)
        assert replay.close_code == 1008 and fake.connections_total == connections

        reports = await running.hang_up()
        assert [r.closed_by for r in reports] == ["caller"] * 3
        await eventually(lambda: readyz_status(a) == 200 and readyz_status(b) == 200, 2.0)

        # The first call's webhook, replayed after its call: no stream, on either instance.
        for instance in (a, b):
            again = await webhook(instance, sids[0])
            assert again.stream_url is None
        assert fake.connections_total == connections
    finally:
        await running.hang_up()
        assert a.stop() == 0 and b.stop() == 0


async def test_a_redis_outage_keeps_calls_and_admits_on_local_limits(
    fake: FakeRealtimeServer, redis: RedisServer, tmp_path: Path
) -> None:
    """Redis stopped mid-call: the call streams on, a new call gets through, /readyz and
    /metrics say degraded; Redis back: a new call works and the degradation is gone."""
    a = Instance("a", fake, tmp_path, REDIS_URL=redis.url)
    running = Running()
    try:
        await started(a)
        speech = packaged_call("books_a_table")
        sid = new_sid("CA")
        call = running.start(stream(await webhook(a, sid), a, sid, speech))
        await wait_until(lambda: len(call.report.received) > 5, timeout=10)

        redis.stop()
        heard = len(call.report.received)
        short = await one_call(a)  # a new call: webhook, stream, hang-up
        assert short.closed_by == "caller" and short.close_code == 1000
        status, body = a.get("/readyz")
        assert status == 200 and "unreachable" in body["shared_state"]
        metrics = a.get("/metrics")[1]
        assert "voicebridge_redis_degraded 1.0" in metrics
        assert 'voicebridge_redis_fail_open_total{step="claim"} 1.0' in metrics
        await wait_until(lambda: len(call.report.received) > heard + 5, timeout=10)

        redis.start()
        await eventually(lambda: a.get("/readyz")[1]["shared_state"] == "redis", 3.0)
        again = await one_call(a)
        assert again.closed_by == "caller" and again.close_code == 1000
        [report] = await running.hang_up()
        assert report.closed_by == "caller" and report.close_code == 1000
        assert "voicebridge_redis_degraded 0.0" in a.get("/metrics")[1]
        log = a.log.read_text()
        assert log.count("cannot be reached") == 1 and log.count("is back after") == 1
    finally:
        await running.hang_up()
        assert a.stop() == 0


async def one_call(instance: Instance) -> CallReport:
    sid = new_sid("CA")
    call = stream(await webhook(instance, sid), instance, sid, packaged_call("interrupts"))
    call.loop = False
    call.hangup_at_ms = 300
    return await call.run(10)


async def test_workers_share_a_port_and_drain_together(
    fake: FakeRealtimeServer, tmp_path: Path
) -> None:
    """Without REDIS_URL, two workers on one port, each with half of MAX_CALLS: calls go
    through whichever worker takes them, /metrics sums both, SIGTERM drains both, exit 0."""
    a = Instance("w", fake, tmp_path, WEB_CONCURRENCY="2", MAX_CALLS="20")
    try:
        await started(a)
        reports = await asyncio.gather(*(one_call(a) for _ in range(4)))
        assert [r.close_code for r in reports] == [1000] * 4
        status, body = a.get("/readyz")
        assert status == 200 and body["shared_state"] == "memory"
        # A sibling that misses one peer scrape (1 s) on a loaded host is left out of that
        # scrape only: the next one counts it again.
        await eventually(lambda: "voicebridge_workers_scraped 2.0" in a.get("/metrics")[1], 5.0)
        # A call is counted once its server side has finished, just after the caller saw it end.
        await eventually(lambda: calls_ended(a.get("/metrics")[1]) == 4, 2.0)
        assert len(children(a.proc.pid)) == 2
    finally:
        assert a.stop() == 0
    assert "received SIGTERM: draining" in a.log.read_text()


def calls_ended(metrics: str) -> float:
    lines = [line for line in metrics.splitlines() if line.startswith("voicebridge_calls_total")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if (
                int(stat.rsplit(")", 1)[1].split()[1]) == pid
                and "spawn_main" in Path(f"/proc/{entry}/cmdline").read_text()
            ):
                found.append(int(entry))
    return found


async def test_workers_share_max_calls_through_redis(
    fake: FakeRealtimeServer, redis: RedisServer, tmp_path: Path
) -> None:
    """With REDIS_URL, two workers admit against the instance's MAX_CALLS together, wherever
    each webhook and stream lands: two calls go through, a third webhook hears busy."""
    a = Instance("w", fake, tmp_path, WEB_CONCURRENCY="2", MAX_CALLS="2", REDIS_URL=redis.url)
    running = Running()
    try:
        await started(a)
        for _ in range(2):
            sid = new_sid("CA")
            running.start(stream(await webhook(a, sid), a, sid, packaged_call("interrupts")))
        await wait_until(lambda: fake.active == 2, timeout=10)
        third = await webhook(a, new_sid("CA"))
        assert third.stream_url is None and third.says_before
        reports = await running.hang_up()
        assert [r.close_code for r in reports] == [1000, 1000]
        # Each worker gets 1 s to answer its peer's scrape: on a busy machine, scrape again.
        await eventually(lambda: "voicebridge_workers_scraped 2.0" in a.get("/metrics")[1], 5.0)
        assert "voicebridge_redis_degraded 0.0" in a.get("/metrics")[1]
    finally:
        await running.hang_up()
        assert a.stop() == 0
