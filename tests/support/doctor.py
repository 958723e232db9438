"""`voicebridge doctor` run as a process against a bridge on loopback, and its settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.servers import Bridge
from voicebridge.fake_realtime.server import FakeRealtimeServer

KEY = "sk-doctor-test-key-0123456789"
AUTH = "0123456789abcdef0123456789abcdef"
ACCOUNT = "AC" + "fedcba9876543210" * 2
PUBLIC = "https://voice.example.com"
SECRET = "a-shared-stream-token-secret-0123456789"

KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")


def doctor(
    bridge: Bridge,
    upstream: FakeRealtimeServer,
    tmp_path: Path,
    *args: str,
    **changes: str | None,
) -> subprocess.CompletedProcess[str]:
    """Run `voicebridge doctor` with the bridge's settings, changed (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k in KEEP}
    env.update(
        OPENAI_API_KEY=KEY,
        REALTIME_URL=upstream.url,
        PUBLIC_URL=PUBLIC,
        TWILIO_AUTH_TOKEN=AUTH,
        TWILIO_ACCOUNT_SID=ACCOUNT,
        STREAM_TOKEN_SECRET=SECRET,
    )
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    port = bridge.url.rsplit(":", 1)[1]
    return subprocess.run(
        [sys.executable, "-m", "voicebridge", "doctor", "--connect-to", f"127.0.0.1:{port}"]
        + ["--timeout", "5", *args],
        env=env,
        cwd=tmp_path,  # no .env here
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
