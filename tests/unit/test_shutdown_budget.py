"""The shutdown budget's arithmetic and start-up check, and who is admitted during a drain."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from dotenv import dotenv_values

from voicebridge.config import Secret, Settings
from voicebridge.core import twilio as tw
from voicebridge.core.admission import TOKEN_PARAMETER, mint_token, minted_before
from voicebridge.core.shutdown import ENDING_S, FORCE_S, STOP_S, ShutdownPlan
from voicebridge.errors import ConfigError
from voicebridge.server.guard import Guard
from voicebridge.server.lifetime import CallResult

SECRET = "a-shared-stream-token-secret-0123456789"
ROOT = Path(__file__).resolve().parents[2]


def test_the_defaults_fit_under_the_common_30_s_kill() -> None:
    """SHUTDOWN_TIMEOUT_S=25 holds a 10 s drain, a 10 s closing line, each call's ending
    and the forced phase: exactly, with the server's stop half a second before the end."""
    plan = Settings().shutdown_plan()
    assert (plan.budget_s, plan.drain_s, plan.closing_s) == (25.0, 10.0, 10.0)
    assert plan.budget_s < 30.0
    assert plan.needed_s == 10.0 + 10.0 + ENDING_S + FORCE_S == 25.0
    assert plan.fits()
    assert (plan.closing_lines_at, plan.force_at, plan.stop_at) == (10.0, 23.0, 24.5)
    assert plan.closing_lines_at + plan.closing_s + ENDING_S <= plan.force_at
    assert plan.stop_at == plan.budget_s - STOP_S


def test_the_documented_budget_is_the_default_and_loads() -> None:
    """README's Settings table and .env.example give the defaults, which fit together."""
    readme = (ROOT / "README.md").read_text()
    example = dotenv_values(ROOT / ".env.example")
    names = {"SHUTDOWN_TIMEOUT_S": "25", "DRAIN_TIMEOUT_S": "10", "CLOSING_TIMEOUT_S": "10"}
    for name, value in names.items():
        assert f"| `{name}` | `{value}` |" in readme
        assert example[name] == value
    assert Settings.from_env({k: v for k, v in example.items() if k in names and v})


def test_the_server_gets_what_is_left_of_the_budget() -> None:
    plan = ShutdownPlan()
    assert plan.server_grace_s(0.2) == pytest.approx(24.3)
    assert plan.server_grace_s(24.5) == 0.0 and plan.server_grace_s(30.0) == 0.0


@pytest.mark.parametrize(
    ("env", "fits"),
    [
        ({}, True),
        ({"DRAIN_TIMEOUT_S": "20"}, False),  # the old default: 20 + 10 + 5 > 25
        ({"DRAIN_TIMEOUT_S": "20", "CLOSING_TIMEOUT_S": "5", "SHUTDOWN_TIMEOUT_S": "30"}, True),
        ({"SHUTDOWN_TIMEOUT_S": "8", "DRAIN_TIMEOUT_S": "1", "CLOSING_TIMEOUT_S": "2"}, True),
        ({"SHUTDOWN_TIMEOUT_S": "4"}, False),
        ({"CLOSING_TIMEOUT_S": "16"}, False),
    ],
)
def test_start_up_refuses_a_drain_that_cannot_fit(env: dict[str, str], fits: bool) -> None:
    """Values that cannot fit stop start-up with the sum, the reserve and the budget to set."""
    if fits:
        Settings.from_env(env)
        return
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    for name in ("DRAIN_TIMEOUT_S", "CLOSING_TIMEOUT_S", "SHUTDOWN_TIMEOUT_S", "5 s"):
        assert name in message


def test_shutdown_timeout_must_be_a_positive_number() -> None:
    assert Settings.from_env({"SHUTDOWN_TIMEOUT_S": "30"}).shutdown_timeout_s == 30.0
    with pytest.raises(ConfigError, match="SHUTDOWN_TIMEOUT_S"):
        Settings.from_env({"SHUTDOWN_TIMEOUT_S": "soon"})


def test_a_tokens_mint_time_is_known_to_the_second() -> None:
    """mint_token rounds the expiry up: the token says whether it predates a moment."""
    for now in (1000.0, 1000.4, 1000.999):
        expires = float(mint_token(b"k", "CA1", now, 60.0).partition(".")[0])
        assert minted_before(expires, 60.0, now + 0.1)  # answered 100 ms before the drain
        assert not minted_before(expires, 60.0, now - 1.0)  # a second after it began


def _start(call_sid: str, token: str) -> tw.Start:
    return tw.Start(
        "MZ1", call_sid, "AC1", ("inbound",), "audio/x-mulaw", 8000, 1, {TOKEN_PARAMETER: token}
    )


async def test_a_drain_admits_streams_whose_webhook_came_before_it() -> None:
    """Once the drain began, a token minted before it is admitted; one minted later (by
    another instance sharing the secret) is refused as draining, never as busy."""
    settings = Settings(stream_token_secret=Secret(SECRET), stream_token_secret_generated=False)
    guard = Guard(settings)
    before, _ = await guard.reserve("CA-before")
    assert before is not None
    await asyncio.sleep(0.1)  # the webhook was answered 100 ms before SIGTERM
    guard.begin_drain()
    assert await guard.admit(_start("CA-before", before)) is None
    later = mint_token(SECRET.encode(), "CA-later", time.time() + 2.0, 60.0)
    assert await guard.admit(_start("CA-later", later)) == "draining"


def test_forced_endings_have_their_own_label() -> None:
    """Cut by the budget after its closing line: forced, answered with a hang-up; before
    any closing line (a second signal mid-conversation): forced, with the apology."""
    after_line = CallResult("shutdown_budget", False, deliberate=True, forced=True)
    assert after_line.outcome == "forced"
    assert after_line.after_stream() is not None
    assert after_line.after_stream().kind.value == "hangup"  # type: ignore[union-attr]
    mid_call = CallResult("second_signal", False, forced=True)
    assert mid_call.outcome == "forced"
    assert mid_call.after_stream().kind.value == "failed"  # type: ignore[union-attr]
