"""The HTTP edge holds against header bombs, slow and idle clients: `voicebridge serve` as the
Procfile starts it, attacked over loopback while a healthy signed call goes through."""

from __future__ import annotations

import asyncio
import http.client
import resource
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.served import Served
from tests.support.served import served as shared_served
from tests.support.servers import running_fake
from voicebridge.config import Settings
from voicebridge.fake_realtime.server import FakeRealtimeOptions, FakeRealtimeServer
from voicebridge.twilio_sim.emulator import CallReport, place_call
from voicebridge.twilio_sim.recordings import packaged_call
from voicebridge.twilio_sim.webhook_client import LocalProxy

MS = 0.001  # seconds
MIB = 1 << 20
AUTH = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://voice.example.com"
ROOT = Path(__file__).resolve().parents[2]
# Short deadlines where the claim is about the mechanism; test_defaults_* checks the real ones.
FAST = {"HTTP_HEADER_TIMEOUT_S": "1", "HTTP_BODY_TIMEOUT_S": "1", "HTTP_KEEP_ALIVE_TIMEOUT_S": "1"}


def healthz_s(port: int, timeout: float = 2.0) -> float | None:
    """Seconds for GET /healthz to answer 200; None if it did not."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        ok = conn.getresponse().status == 200
    except OSError:
        return None
    finally:
        conn.close()
    return time.monotonic() - started if ok else None


@contextmanager
def served(
    log: Path, fake: FakeRealtimeServer, fds: int | None = None, **env: str
) -> Iterator[Served]:
    """`voicebridge serve` in a subprocess, signed like production, on a free port."""
    with shared_served(
        log,
        fds,
        REALTIME_URL=fake.url,
        PUBLIC_URL=PUBLIC,
        TWILIO_AUTH_TOKEN=AUTH,
        STREAM_TOKEN_SECRET="an-edge-test-stream-token-secret-0123",
        **env,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def module_fake() -> Iterator[FakeRealtimeServer]:
    with running_fake(FakeRealtimeOptions(speed=10.0, response_delay_ms=50)) as (server, _):
        yield server


@pytest.fixture(scope="module")
def server(
    module_fake: FakeRealtimeServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    with served(tmp_path_factory.mktemp("edge") / "serve.log", module_fake, **FAST) as s:
        yield s


async def signed_call(port: int) -> CallReport:
    return await place_call(
        PUBLIC + "/twilio/stream",
        packaged_call("books_a_table"),
        speed=10.0,
        hangup_at_ms=6000,
        auth_token=AUTH,
        proxy=LocalProxy(f"127.0.0.1:{port}"),
        timeout=30,
    )


def assert_call_ok(report: CallReport) -> None:
    assert report.webhook_status == 200 and report.twiml is not None
    assert report.closed_by == "caller" and report.violations == [], report


def assert_clean(log: str) -> None:
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    assert "Invalid HTTP request" not in log  # answered by the edge, not a WARNING each


def bomb(port: int, size: int) -> tuple[int, bytes]:
    """Send an unterminated header of ``size`` bytes: (bytes the server took, its answer)."""
    chunk = b"a" * MIB
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bomb: ")
            while sent < size:
                sent += s.send(chunk[: size - sent])
        except OSError:
            pass
        try:
            answer = s.recv(200)
        except OSError:
            answer = b""
    return sent, answer


@pytest.mark.slow
def test_header_bombs_cost_little_memory_and_no_latency(server: Served) -> None:
    """4 connections sending unterminated 64 MiB headers: RSS +≤20 MB, /healthz p95 ≤ 100 ms."""
    for _ in range(5):
        healthz_s(server.port)
    rss0, peak = server.rss_bytes(), 0
    stop = threading.Event()
    answers: list[bytes] = []

    def attacker() -> None:
        while not stop.is_set():
            answers.append(bomb(server.port, 64 * MIB)[1])

    threads = [threading.Thread(target=attacker) for _ in range(4)]
    for t in threads:
        t.start()
    latencies: list[float] = []
    try:
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            latency = healthz_s(server.port)
            assert latency is not None
            latencies.append(latency)
            peak = max(peak, server.rss_bytes())
            time.sleep(10 * MS)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    p95 = statistics.quantiles(latencies, n=20)[-1]
    print(  # noqa: T201 (the figures for the report, with -s)
        f"\nheader bombs: {len(answers)} bombs, RSS +{(peak - rss0) / MIB:.1f} MiB, "
        f"/healthz p95 {p95 / MS:.1f} ms, max {max(latencies) / MS:.1f} ms ({len(latencies)})"
    )
    assert peak - rss0 <= 20 * 1000 * 1000
    assert p95 <= 100 * MS
    assert sum(a.startswith(b"HTTP/1.1 431 ") for a in answers) >= len(answers) // 2 > 0
    assert_clean(server.log_text())


@pytest.mark.slow
def test_one_96_mib_header_costs_under_a_second_of_cpu(server: Served) -> None:
    """One unterminated 96 MiB header: cut at HTTP_MAX_HEADER_BYTES, ≤ 1 s of server CPU."""
    cpu0 = server.cpu_s()
    sent, answer = bomb(server.port, 96 * MIB)
    time.sleep(100 * MS)  # let the server finish with what it read
    used = server.cpu_s() - cpu0
    print(f"\n96 MiB header: {sent} bytes sent, server CPU {used * 1000:.0f} ms")  # noqa: T201
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert used <= 1.0
    assert healthz_s(server.port) is not None


@pytest.mark.slow
def test_line_caps_and_a_twilio_sized_request(server: Served) -> None:
    """A 12 KiB header passes; a 17 KiB header line gets 431, a 9 KiB target 414."""

    def ask(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(request)
            return s.recv(200)

    ok = ask(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 12 * 1024 + b"\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ")
    line = ask(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17 * 1024 + b"\r\n\r\n")
    assert line.startswith(b"HTTP/1.1 431 ")
    target = ask(b"GET /healthz?" + b"a" * 9 * 1024 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert target.startswith(b"HTTP/1.1 414 ")


@pytest.mark.slow
async def test_a_body_that_never_arrives_gets_408_and_no_traceback(server: Served) -> None:
    """A webhook whose body stops short is answered 408 at HTTP_BODY_TIMEOUT_S, quietly."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            b"POST /twilio/stream HTTP/1.1\r\nHost: voice.example.com\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nCall"
        )
        started = time.monotonic()
        async with asyncio.timeout(5):
            answer = await reader.read()
        waited = time.monotonic() - started
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ") and 0.9 <= waited <= 2.0
    await asyncio.sleep(200 * MS)  # the app's side of the ending, logged or not
    assert_clean(server.log_text())


async def hold(port: int, kind: str, started: float) -> float:
    """One attacking connection: seconds from ``started`` until the server closed it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if kind == "trickle":  # a header byte every 200 ms, never the blank line
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow")
        elif kind == "keep-alive":  # one request, then silence on the open connection
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        while True:
            try:
                async with asyncio.timeout(200 * MS if kind == "trickle" else None):
                    if not await reader.read(4096):
                        break  # closed by the server
            except TimeoutError:
                writer.write(b"w")
            except OSError:
                break
    finally:
        writer.close()
    return time.monotonic() - started


@pytest.mark.slow
async def test_trickling_and_idle_connections_are_closed_while_a_call_succeeds(
    server: Served, module_fake: FakeRealtimeServer
) -> None:
    """200 trickling + 200 idle connections all closed within 15 s; a signed call meanwhile."""
    kinds = ["trickle"] * 200 + ["idle"] * 150 + ["keep-alive"] * 50
    started = time.monotonic()
    upstreams = module_fake.connections_total
    async with asyncio.timeout(15):
        async with asyncio.TaskGroup() as tg:
            held = [tg.create_task(hold(server.port, kind, started)) for kind in kinds]
            call = tg.create_task(signed_call(server.port))
    closed = [t.result() for t in held]
    print(  # noqa: T201
        f"\n400 slow/idle connections: all closed by {max(closed):.2f} s "
        f"(median {statistics.median(closed):.2f} s)"
    )
    assert max(closed) < 15
    assert_call_ok(call.result())
    assert module_fake.connections_total == upstreams + 1
    assert_clean(server.log_text())


@pytest.mark.slow
async def test_1010_trickling_connections_under_1024_descriptors(
    module_fake: FakeRealtimeServer, tmp_path: Path
) -> None:
    """1,010 trickling connections, 1024 descriptors: /healthz and a call still get through."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip("the test process itself needs 2048 descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        with served(tmp_path / "serve.log", module_fake, fds=1024) as server:
            log = server.log_text()
            assert "soft limit 1024" in log and "HTTP connections capped at 810" in log
            for _ in range(1010):  # default deadlines: none passes during the test
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow")
                conns.append((reader, writer))
            started = time.monotonic()
            latency, peak_fds = None, 0
            while latency is None and time.monotonic() - started < 20:
                for reader, writer in conns:
                    if not reader.at_eof() and reader.exception() is None:
                        writer.write(b"w")  # keep trickling
                peak_fds = max(peak_fds, server.fds())
                latency = await asyncio.to_thread(healthz_s, server.port)
            answered = time.monotonic() - started
            report = await signed_call(server.port)
            peak_fds = max(peak_fds, server.fds())
            shed = sum(r.at_eof() or r.exception() is not None for r, _ in conns)
            print(  # noqa: T201
                f"\n1010 trickling under 1024 fds: /healthz answered after {answered:.2f} s "
                f"({(latency or 0) / MS:.1f} ms), {shed} attackers shed, server fds "
                f"<= {peak_fds}; call closed by {report.closed_by}"
            )
            assert latency is not None and answered < 20
            assert_call_ok(report)
            assert shed >= 1010 - 810 and peak_fds < 1024
            assert_clean(server.log_text())
    finally:
        for _, writer in conns:
            writer.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_defaults_are_what_the_readme_and_env_example_say() -> None:
    """The HTTP edge's defaults appear in README's Settings table and in .env.example."""
    defaults = Settings()
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    names = {
        "HTTP_MAX_HEADER_BYTES": defaults.http_max_header_bytes,
        "HTTP_MAX_HEADER_LINE_BYTES": defaults.http_max_header_line_bytes,
        "HTTP_MAX_REQUEST_LINE_BYTES": defaults.http_max_request_line_bytes,
        "HTTP_HEADER_TIMEOUT_S": defaults.http_header_timeout_s,
        "HTTP_BODY_TIMEOUT_S": defaults.http_body_timeout_s,
        "HTTP_KEEP_ALIVE_TIMEOUT_S": defaults.http_keep_alive_timeout_s,
        "HTTP_MAX_CONNECTIONS": defaults.http_max_connections,
    }
    for name, value in names.items():
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        assert f"| `{name}` | `{shown}` |" in readme, name
        assert f"\n{name}={shown}\n" in example, name
    # Slow and idle connections end within 15 s with the defaults, as README promises.
    assert max(defaults.http_header_timeout_s, defaults.http_body_timeout_s) < 15
    assert defaults.http_keep_alive_timeout_s < 15
    assert defaults.http_max_header_bytes == 64 * 1024
