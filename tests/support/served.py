"""`voicebridge serve` as the Procfile starts it, in a subprocess on a free port, measured
from outside (/proc): memory, descriptors, CPU time."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port, healthy


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        assert match is not None
        return int(match[1]) * 1024

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def cpu_s(self) -> float:
        # /proc/PID/stat: utime and stime are fields 14 and 15, after the "(comm)" field.
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def served(log: Path, fds: int | None = None, **env: str) -> Iterator[Served]:
    """`voicebridge serve` with ``env`` over a clean environment, its output in ``log``;
    ``fds`` sets its descriptor limit (soft and hard)."""
    port = free_port()
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HTTP_", "OPENAI_", "REALTIME_", "TWILIO_", "PUBLIC_", "LOG_"))
    }
    environ.update(PORT=str(port), HOST="127.0.0.1", **env)

    def limit_fds() -> None:
        if fds is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fds, fds))

    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voicebridge", "serve"],
            env=environ,
            cwd=log.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=limit_fds,  # only setrlimit, before exec
        )
    try:
        deadline = time.monotonic() + 15
        while not healthy(f"http://127.0.0.1:{port}/healthz"):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "voicebridge serve did not start"
            time.sleep(0.05)
        yield Served(proc, port, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
