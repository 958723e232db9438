"""What an operator meets at the edges: versions, process metrics, log hygiene, start-up
errors that name the setting, and stream URLs Twilio could not use."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

import voicebridge
from tests.support.metrics import scrape
from tests.support.processes import clean_env, free_port, run_voicebridge, wait_healthy
from tests.support.servers import running_bridge
from voicebridge.config import Settings
from voicebridge.twilio_sim.emulator import place_call
from voicebridge.twilio_sim.recordings import packaged_call
from voicebridge.twilio_sim.webhook_client import parse_twiml

CALLER = "+14155550123"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, resp.read().decode()


def post(url: str, data: dict[str, str], headers: dict[str, str] | None = None) -> str:
    req = urllib.request.Request(url, data=urlencode(data).encode(), headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return str(resp.read().decode())


# -- versions and process metrics --------------------------------------------------------


def test_health_and_metrics_carry_the_version(settings: Settings) -> None:
    """/healthz and voicebridge_build_info show pyproject's version; process_* series exist."""
    assert voicebridge.__version__ == version("voicebridge")
    with running_bridge(settings) as bridge:
        status, body = get(bridge.url + "/healthz")
        m = scrape(bridge)
    assert status == 200 and json.loads(body) == {"status": "ok", "version": version("voicebridge")}
    python = ".".join(map(str, sys.version_info[:3]))
    assert m[f"voicebridge_build_info{{python={python},version={version('voicebridge')}}}"] == 1
    assert m["process_resident_memory_bytes"] > 0 and m["process_open_fds"] > 0
    assert m["process_cpu_seconds_total"] >= 0 and "process_start_time_seconds" in m
    assert any(key.startswith("python_info{") for key in m)
    assert any(key.startswith("python_gc_collections_total{") for key in m)


@pytest.mark.slow  # runs voicebridge as its own process
def test_version_flag(tmp_path: Path) -> None:
    """`voicebridge --version` prints the installed version and needs no settings."""
    result = run_voicebridge("--version", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"voicebridge {version('voicebridge')}"


# -- stream URLs Twilio cannot use -------------------------------------------------------


def test_a_ws_stream_url_is_never_served(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """An untrusted router's https: the failure TwiML, counted, one ERROR per episode."""
    behind_router = {"Host": "voice.example.com", "X-Forwarded-Proto": "https"}
    form = {"CallSid": "CA" + "1" * 32, "From": CALLER}
    local_form = {"CallSid": "CA" + "2" * 32, "From": CALLER}
    with (
        caplog.at_level(logging.WARNING, "voicebridge.server.stream_url"),
        running_bridge(settings, forwarded_allow_ips="10.9.9.9") as bridge,
    ):
        answers = [parse_twiml(post(bridge.webhook, form, behind_router)) for _ in range(3)]
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
        # A loopback request (an operator's curl on the box) is fine and ends the episode ...
        local = parse_twiml(post(bridge.webhook, local_form))
        # ... so the next bad one is logged again.
        parse_twiml(post(bridge.webhook, form, behind_router))
        m = scrape(bridge)
        reserved = bridge.state.guard.admission.load(time.monotonic())
    for twiml in answers:
        assert twiml.stream_url is None
        assert twiml.says_before == (settings.failure_say,)
    assert local.stream_url == bridge.ws_url
    assert m["voicebridge_webhook_errors_total{reason=insecure_stream_url}"] == 4
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "ws://voice.example.com/realtime" in errors[0] and "PUBLIC_URL" in errors[0]
    assert "FORWARDED_ALLOW_IPS" in errors[0] and "127.0.0.1" in errors[0]
    assert reserved == 1  # only the loopback answer holds a call slot


def test_trusted_router_gets_wss(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """With the router in FORWARDED_ALLOW_IPS the stream URL is wss:// and nothing is logged."""
    headers = {"Host": "voice.example.com", "X-Forwarded-Proto": "https"}
    with (
        caplog.at_level(logging.WARNING, "voicebridge.server.stream_url"),
        running_bridge(settings, forwarded_allow_ips="127.0.0.1") as bridge,
    ):
        twiml = parse_twiml(post(bridge.webhook, {"CallSid": "CA1"}, headers))
        m = scrape(bridge)
    assert twiml.stream_url == "wss://voice.example.com/realtime"
    assert not caplog.records
    assert "voicebridge_webhook_errors_total{reason=insecure_stream_url}" not in m


# -- start-up errors that name the setting -----------------------------------------------


@pytest.mark.slow  # runs voicebridge as its own process
def test_a_missing_env_file_is_an_error(tmp_path: Path) -> None:
    """--env-file with a typo stops start-up naming the file; a missing default .env does not."""
    result = run_voicebridge("--env-file", "prod.env", "serve", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert "prod.env" in result.stderr and "Traceback" not in result.stderr
    result = run_voicebridge("serve", env=clean_env(PORT="eighty"), cwd=tmp_path)
    assert result.returncode == 2 and "PORT" in result.stderr  # read the settings, no .env


@pytest.mark.slow  # runs voicebridge as its own process
def test_a_busy_port_names_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        env = clean_env(HOST="127.0.0.1", PORT=port, OPENAI_API_KEY="sk-test")
        result = run_voicebridge("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"PORT={port}" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # runs voicebridge as its own process
@pytest.mark.parametrize("host", ["no-such-host.invalid", "192.0.2.1"])
def test_a_bad_host_names_host(tmp_path: Path, host: str) -> None:
    """An unresolvable name, or an address this machine does not have."""
    env = clean_env(HOST=host, PORT=str(free_port()), OPENAI_API_KEY="sk-test")
    result = run_voicebridge("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"HOST={host!r}" in result.stderr and "Traceback" not in result.stderr


# -- what the logs hold --------------------------------------------------------------------


async def _serve_one_call(tmp_path: Path, **settings: str) -> list[dict[str, Any]]:
    """Run `voicebridge serve --fake-upstream` with JSON logs for a GET webhook, a call and a
    stream-status callback; its log records."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(PORT=str(port), HOST="127.0.0.1", LOG_FORMAT="json", **settings)
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:  # a file: a pipe nobody reads would stall a busy log
        proc = subprocess.Popen(  # noqa: ASYNC220 (started once, before the call)
            [sys.executable, "-m", "voicebridge", "serve", "--fake-upstream"],
            env=env,
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        await wait_healthy(proc, base)
        query = {"CallSid": "CA" + "2" * 32, "From": CALLER, "Caller": CALLER, "To": "+18005550100"}
        status, _ = await asyncio.to_thread(get, base + "/twilio/stream?" + urlencode(query))
        assert status == 200
        report = await place_call(
            base + "/twilio/stream",
            packaged_call("books_a_table"),
            speed=5.0,
            hangup_at_ms=2000,
            from_=CALLER,
        )
        assert report.twiml is not None and report.twiml.stream_url
        status_form = {
            "CallSid": report.call_sid,
            "StreamSid": "MZ1",
            "StreamEvent": "stream-stopped",
        }
        await asyncio.to_thread(post, base + "/twilio/stream-status", status_form)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, timeout=30)
    out = log_path.read_text()
    assert proc.returncode == 0, out[-2000:]
    assert CALLER not in out and "14155550123" not in out  # in no line, query or body
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.slow  # runs voicebridge as its own process
async def test_json_logs_mask_query_numbers_and_leave_frames_out(tmp_path: Path) -> None:
    """LOG_LEVEL=DEBUG: masked access lines, snake_case keys, and no line per frame."""
    records = await _serve_one_call(tmp_path, LOG_LEVEL="DEBUG")
    access = [r["message"] for r in records if r["logger"] == "uvicorn.access"]
    assert any("GET /twilio/stream?" in line and "From=%2B1415***0123" in line for line in access)
    assert any("Caller=%2B1415***0123" in line for line in access)
    wire = [r for r in records if r["logger"].startswith(("uvicorn.error", "websockets"))]
    assert not [r for r in wire if r["level"] == "DEBUG"]
    assert [r for r in records if r["level"] == "DEBUG" and r["logger"].startswith("voicebridge")]
    assert len(records) < 100  # a frame-level log writes about 60 lines a second of call
    status = [r for r in records if r.get("stream_event") == "stream-stopped"]
    assert status and status[0]["call_sid"].startswith("CA")
    keys = {key for r in records for key in r}
    assert not {key for key in keys if key[:1].isupper()}  # no CallSid, StreamSid, ...


@pytest.mark.slow  # runs voicebridge as its own process
async def test_log_wire_shows_the_frames(tmp_path: Path) -> None:
    """LOG_WIRE=true with LOG_LEVEL=DEBUG: the frames are there for whoever asks."""
    records = await _serve_one_call(tmp_path, LOG_LEVEL="DEBUG", LOG_WIRE="true")
    frames = [r for r in records if r["logger"] == "uvicorn.error" and r["level"] == "DEBUG"]
    assert len(frames) > 50
