"""Settings behind issue 16's endings and continuity: caller transcription on by default
(empty turns it off; deprecated models warned about), the idle goodbye, and REST settings
that could not take effect refused at start-up."""

from __future__ import annotations

import pytest

from voicebridge.config import Settings
from voicebridge.core.realtime import (
    DEFAULT_TRANSCRIPTION_MODEL,
    DEPRECATED_TRANSCRIPTION_MODELS,
    TRANSCRIPTION_MODELS,
)
from voicebridge.errors import ConfigError
from voicebridge.server.session import call_policy, session_config
from voicebridge.startup import setting_warnings


def test_caller_transcription_is_on_by_default_with_a_current_model() -> None:
    settings = Settings.from_env({})
    assert settings.transcription_model == DEFAULT_TRANSCRIPTION_MODEL
    assert DEFAULT_TRANSCRIPTION_MODEL in TRANSCRIPTION_MODELS
    assert DEFAULT_TRANSCRIPTION_MODEL not in DEPRECATED_TRANSCRIPTION_MODELS
    assert session_config(settings).transcription_model == DEFAULT_TRANSCRIPTION_MODEL


def test_an_empty_transcription_model_turns_it_off() -> None:
    settings = Settings.from_env({"TRANSCRIPTION_MODEL": ""})
    assert settings.transcription_model == ""
    assert session_config(settings).transcription_model is None


def test_the_sdks_deprecated_transcription_models_are_known() -> None:
    """PROTOCOLS.md B.2: whisper-1 and the gpt-4o-*transcribe* models shut down 2027-02-26."""
    assert DEPRECATED_TRANSCRIPTION_MODELS == {
        "whisper-1",
        "gpt-4o-mini-transcribe",
        "gpt-4o-mini-transcribe-2025-12-15",
        "gpt-4o-transcribe",
        "gpt-4o-transcribe-diarize",
    }


@pytest.mark.parametrize("model", ["whisper-1", "gpt-4o-mini-transcribe"])
def test_a_deprecated_transcription_model_is_warned_about_at_start_up(model: str) -> None:
    settings = Settings.from_env({"TRANSCRIPTION_MODEL": model})
    assert settings.transcription_model == model  # still works until its shutdown
    [warning] = setting_warnings(settings)
    assert warning.startswith(f"TRANSCRIPTION_MODEL={model} is deprecated")
    assert DEFAULT_TRANSCRIPTION_MODEL in warning
    assert setting_warnings(Settings()) == []


def test_the_idle_goodbye_has_its_own_instructions() -> None:
    settings = Settings.from_env(
        {"IDLE_GOODBYE_INSTRUCTIONS": "Hang up kindly.", "IDLE_TIMEOUT_MS": "8000"}
    )
    assert call_policy(settings).idle_goodbye_instructions == "Hang up kindly."
    assert call_policy(Settings()).idle_goodbye_instructions == Settings().idle_goodbye_instructions


def test_an_account_sid_without_rest_credentials_is_refused_at_start_up() -> None:
    """TWILIO_ACCOUNT_SID alone could never reach the REST API: refused, never dropped."""
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID.*TWILIO_AUTH_TOKEN"):
        Settings.from_env({"TWILIO_ACCOUNT_SID": "AC" + "a" * 32})


def test_transfer_destinations_need_no_rest_credentials() -> None:
    from voicebridge.server.tools import Toolbox

    toolbox = Toolbox(Settings(transfer_destinations="sales=+14155550100"), [])
    assert toolbox.can_transfer
    assert "transfer_call" in [t["name"] for t in toolbox.declarations()]


def test_an_idle_goodbye_without_an_idle_timeout_is_refused() -> None:
    """It could never be said: refused at start-up rather than dropped silently."""
    with pytest.raises(ConfigError, match="IDLE_GOODBYE_INSTRUCTIONS.*IDLE_TIMEOUT_MS"):
        Settings.from_env({"IDLE_GOODBYE_INSTRUCTIONS": "Bye."})
