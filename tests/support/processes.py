"""Running ``python -m voicebridge`` as its own process, on a free port, as an operator does."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = [
    "clean_env",
    "free_port",
    "healthy",
    "run_voicebridge",
    "serve",
    "serve_env",
    "wait_healthy",
]

# Settings a developer's shell may hold that would change what the process under test does.
ENV_KEYS = ("OPENAI_API_KEY", "REALTIME_URL", "PUBLIC_URL", "PORT", "HOST")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update(extra)
    return env


def serve_env(port: int, realtime_url: str, **extra: str) -> dict[str, str]:
    """A clean environment for ``voicebridge serve`` on 127.0.0.1:``port``, upstream at
    ``realtime_url`` (the fake: any key will do); caller audio unpaced, since the emulator
    plays calls faster than real time."""
    return (
        clean_env(
            PORT=str(port),
            HOST="127.0.0.1",
            REALTIME_URL=realtime_url,
            OPENAI_API_KEY="sk-unused",
            CALLER_BURST_MS="0",
        )
        | extra
    )


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_voicebridge(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``voicebridge *args`` to its end, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "voicebridge", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def serve(env: dict[str, str], cwd: Path, *args: str, quiet: bool = False) -> subprocess.Popen[str]:
    """``voicebridge serve *args``; its output (stdout and stderr) is piped unless ``quiet``."""
    return subprocess.Popen(
        [sys.executable, "-m", "voicebridge", "serve", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL if quiet else subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )


async def wait_healthy(proc: subprocess.Popen[str], base: str, timeout: float = 15.0) -> None:
    """Return once ``base``/healthz answers 200; fail if the process exits first or too late."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(healthy, base + "/healthz"):
        assert proc.poll() is None, f"voicebridge exited with {proc.returncode}"
        assert time.monotonic() < deadline, "voicebridge did not become healthy"
        await asyncio.sleep(0.1)
