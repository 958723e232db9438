"""``voicebridge call``: the command asks a running voicebridge's POST /calls."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.outbound import API_TOKEN, CALLEE, CALLER_ID, PUBLIC, outbound
from voicebridge.cli import main
from voicebridge.config import Settings
from voicebridge.twilio_sim.callee import busy


def env_file(tmp_path: Path, token: str = API_TOKEN) -> str:
    path = tmp_path / "call.env"
    path.write_text(
        f"API_TOKEN={token}\nOUTBOUND_CALLER_ID={CALLER_ID}\nPUBLIC_URL={PUBLIC}\n"
        "REALTIME_URL=ws://127.0.0.1:9/v1/realtime\n"
    )
    return str(path)


async def test_call_places_a_call_and_prints_its_sid(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The number, profile and context reach POST /calls; the CallSid is printed."""
    async with outbound(settings, lambda to: busy()) as (bridge, api):
        argv = ["--env-file", env_file(tmp_path), "call", CALLEE, "--url", bridge.url]
        argv += ["--profile", "default", "--context", '{"name": "Ada"}']
        status = await asyncio.to_thread(main, argv)
        [create] = api.requests
        await api.wait_done(next(iter(api.calls)))
    assert status == 0
    assert capsys.readouterr().out.strip() == next(iter(api.calls))
    assert create.get("To") == CALLEE


async def test_call_reports_a_refusal(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong token: exit 1 with the server's reason; bad --context: a configuration error."""
    async with outbound(settings, lambda to: busy()) as (bridge, api):
        argv = ["--env-file", env_file(tmp_path, "wrong-token-0123"), "call", CALLEE]
        status = await asyncio.to_thread(main, [*argv, "--url", bridge.url])
    assert status == 1 and "HTTP 401" in capsys.readouterr().err
    assert api.requests == []
    assert main(["--env-file", env_file(tmp_path), "call", CALLEE, "--context", "[1]"]) == 2
    assert "--context" in capsys.readouterr().err
