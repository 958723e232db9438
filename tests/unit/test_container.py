"""The container contract, read from the Dockerfile with Docker's own parser.

No image is built here: base images come from Docker Hub, which neither this machine nor CI
reaches, and there is no container engine. So each promise the image makes (README "Deploying
for real") is checked in the file that makes it, and the health check command is run as the
engine would run it.
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import dockerfile
import pytest

from voicebridge.config import Settings

ROOT = Path(__file__).resolve().parents[2]
# SHUTDOWN_TIMEOUT_S's default, in case Settings does not have it yet.
SHUTDOWN_TIMEOUT_S = float(getattr(Settings(), "shutdown_timeout_s", 25.0))
GRACE_S = 30  # the stop grace period the Dockerfile and README ask for


def _stages() -> list[list[dockerfile.Command]]:
    stages: list[list[dockerfile.Command]] = []
    for command in dockerfile.parse_file(str(ROOT / "Dockerfile")):
        if command.cmd == "FROM":
            stages.append([])
        assert stages, f"{command.original!r} comes before the first FROM"
        stages[-1].append(command)
    return stages


def _final(cmd: str) -> list[dockerfile.Command]:
    return [c for c in _stages()[-1] if c.cmd == cmd]


def _env() -> dict[str, str]:
    values: dict[str, str] = {}
    for command in _final("ENV"):
        pairs = command.value
        values.update(zip(pairs[::2], pairs[1::2], strict=True))
    return values


def test_every_stage_is_python_3_11_slim() -> None:
    """The base is Python 3.11 slim, the version .python-version pins for buildpacks."""
    pinned = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.11(\.\d+)?", pinned)
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"
    for stage in _stages():
        image = stage[0].value[0]
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image), image


def test_runs_as_a_numeric_non_root_user() -> None:
    """A numeric user (Kubernetes' runAsNonRoot checks it) that is not root."""
    [user] = _final("USER")
    uid, _, gid = user.value[0].partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    [run] = [c for c in _final("RUN") if "useradd" in c.value[0]]
    assert f"--uid {uid}" in run.value[0]


def test_runs_the_procfiles_command_as_pid_1() -> None:
    """CMD is the Procfile's web command in exec form: voicebridge itself gets SIGTERM."""
    procfile = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    [cmd] = _final("CMD")
    assert cmd.json, "a shell-form CMD puts /bin/sh between the engine's signal and voicebridge"
    assert list(cmd.value) == procfile["web"].split()
    assert not _final("ENTRYPOINT")


def test_stops_with_sigterm_and_documents_a_longer_grace() -> None:
    """SIGTERM starts the drain; the grace asked for outlasts SHUTDOWN_TIMEOUT_S."""
    [stop] = _final("STOPSIGNAL")
    assert stop.value == ("SIGTERM",)
    assert GRACE_S > SHUTDOWN_TIMEOUT_S
    text = (ROOT / "Dockerfile").read_text()
    readme = (ROOT / "README.md").read_text()
    for phrase in (
        f"--stop-timeout {GRACE_S}",
        f"stop_grace_period: {GRACE_S}s",
        f"terminationGracePeriodSeconds: {GRACE_S}",
    ):
        assert phrase in text and phrase in readme, phrase


def test_port_is_settings_port() -> None:
    """PORT is set to voicebridge's default and exposed; a platform may set another."""
    assert _env()["PORT"] == str(Settings().port)
    [expose] = _final("EXPOSE")
    assert expose.value == (str(Settings().port),)


def test_health_check_is_stdlib_python_on_healthz() -> None:
    [check] = _final("HEALTHCHECK")
    assert check.json and check.value[0] == "CMD"
    assert check.value[1:3] == ("python", "-c")  # slim images have no curl or wget
    assert "/healthz" in check.value[3] and "PORT" in check.value[3]
    flags = dict(flag.removeprefix("--").split("=", 1) for flag in check.flags)
    assert set(flags) >= {"interval", "timeout", "retries"}


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _run_health_check(port: int) -> int:
    [check] = _final("HEALTHCHECK")
    argv = [sys.executable, *check.value[2:]]  # the image's `python`
    env = {**os.environ, "PORT": str(port)}
    return subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode


def test_health_check_passes_on_200_and_fails_otherwise(health_server: int) -> None:
    """Run as the engine runs it: exit 0 while /healthz answers on $PORT, 1 when nothing does."""
    assert _run_health_check(health_server) == 0
    with socket.socket() as unused:  # bound, never listening: connections are refused
        unused.bind(("127.0.0.1", 0))
        assert _run_health_check(unused.getsockname()[1]) == 1  # Docker reserves other codes


# -- .dockerignore ----------------------------------------------------------------------


def _pattern(glob: str) -> re.Pattern[str]:
    """Docker's .dockerignore pattern as a regex: ``*`` within a segment, ``**`` across them."""
    assert "[" not in glob, "character classes are not handled here"
    out = ""
    for part in re.split(r"(\*\*/?|\*|\?)", glob.strip("/")):
        if part in ("**/", "**"):
            out += "(?:.*/)?" if part == "**/" else ".*"
        elif part == "*":
            out += "[^/]*"
        elif part == "?":
            out += "[^/]"
        else:
            out += re.escape(part)
    return re.compile(out)


def _ignored(path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context (last matching line wins; a
    line matching a parent directory counts for everything under it)."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for rule in rules:
        negated = rule.startswith("!")
        regex = _pattern(rule.removeprefix("!"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        "tests/fixtures/real_call.jsonl",
        ".pytest_cache/v/cache/nodeids",
        ".mypy_cache/3.11/cache.db",
        ".ruff_cache/CACHEDIR.TAG",
        ".hypothesis/examples/x",
        "bench/results.json",
        "demo-call.wav",
        "voicebridge.egg-info/PKG-INFO",
        "voicebridge/__pycache__/cli.cpython-311.pyc",
        "voicebridge/server/__pycache__/app.cpython-311.pyc",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert _ignored(path)


def test_dockerignore_sends_what_the_build_copies() -> None:
    """pyproject.toml, README.md (its readme) and the whole package with its data files."""
    package = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "voicebridge").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert any(p.startswith("voicebridge/twilio_sim/calls/") for p in package)
    for path in ["pyproject.toml", "README.md", *package]:
        assert not _ignored(path), path
