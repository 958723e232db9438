"""The ``voicebridge`` command as an operator runs it: real processes, real ports."""

from __future__ import annotations

import asyncio
import signal
import wave
from pathlib import Path

import pytest

from tests.support.processes import clean_env, free_port, run_voicebridge, serve, wait_healthy
from voicebridge.twilio_sim.emulator import place_call
from voicebridge.twilio_sim.recordings import packaged_call

pytestmark = pytest.mark.slow  # every test here runs voicebridge as its own process


def test_serve_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    """No key and an OpenAI URL: a clear refusal that says what to do."""
    result = run_voicebridge("serve", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert "OPENAI_API_KEY" in result.stderr and "--fake-upstream" in result.stderr


def test_bad_setting_is_a_clear_error(tmp_path: Path) -> None:
    """A malformed setting stops start-up with its name in the message."""
    result = run_voicebridge("serve", env=clean_env(PORT="eighty"), cwd=tmp_path)
    assert result.returncode == 2 and "PORT" in result.stderr


def test_workers_that_cannot_work_are_refused(tmp_path: Path) -> None:
    """--workers 0, more workers than MAX_CALLS, or --fake-upstream with workers: exit 2."""
    env = clean_env(OPENAI_API_KEY="sk-test-secret-value", MAX_CALLS="2")
    for args, named in (
        (["--workers", "0"], "--workers"),
        (["--workers", "3"], "MAX_CALLS"),
        (["--workers", "2", "--fake-upstream"], "--fake-upstream"),
    ):
        result = run_voicebridge("serve", *args, env=env, cwd=tmp_path)
        assert result.returncode == 2 and named in result.stderr, result.stderr


def test_dotenv_is_read(tmp_path: Path) -> None:
    """Settings in .env count; the environment wins over them."""
    (tmp_path / ".env").write_text("PUBLIC_URL=wss://wrong.example.com\n")
    result = run_voicebridge("serve", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 2 and "PUBLIC_URL" in result.stderr
    result = run_voicebridge(
        "serve", env=clean_env(PUBLIC_URL="https://ok.example.com"), cwd=tmp_path
    )
    assert "PUBLIC_URL" not in result.stderr and "OPENAI_API_KEY" in result.stderr


async def test_serve_with_fake_upstream_answers_a_call(tmp_path: Path) -> None:
    """`voicebridge serve --fake-upstream` serves a whole call, then stops on SIGTERM."""
    port = free_port()
    env = clean_env(PORT=str(port), HOST="127.0.0.1", OPENAI_API_KEY="sk-test-secret-value")
    proc = serve(env, tmp_path, "--fake-upstream")
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_healthy(proc, base)
        report = await place_call(
            base + "/twilio/stream", packaged_call("books_a_table"), speed=5.0, tail_ms=1500
        )
        assert report.closed_by == "caller" and report.violations == []
        assert report.player.heard_ms() > 500
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=15)
    assert proc.returncode == 0
    assert "call ended" in out and "outcome=caller_hangup" in out
    assert "sk-test-secret-value" not in out
    assert out.count("TWILIO_AUTH_TOKEN is not set") == 1


def test_demo_writes_a_stereo_wav_and_a_summary(tmp_path: Path) -> None:
    """The README's first command: a whole call with a barge-in, heard in a WAV."""
    result = run_voicebridge("demo", "--wav", "call.wav", env=clean_env(), cwd=tmp_path, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "barge-in" in result.stdout and "truncation" in result.stdout
    assert "0 protocol violations" in result.stdout
    with wave.open(str(tmp_path / "call.wav")) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 8000
        assert w.getnframes() > 8000 * 10
