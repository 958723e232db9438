"""What a command that runs the bridge or a peer does first: settings, logging, warnings."""

from __future__ import annotations

import logging

from voicebridge.config import RENAMED, Settings, load_environ
from voicebridge.core.realtime import DEFAULT_TRANSCRIPTION_MODEL, DEPRECATED_TRANSCRIPTION_MODELS
from voicebridge.errors import ConfigError
from voicebridge.logs import setup_logging

__all__ = ["configure", "read_environ", "setting_warnings"]

log = logging.getLogger("voicebridge")


def read_environ(env_file: str | None) -> dict[str, str]:
    """The environment over ``--env-file`` (None: ``.env`` when there is one).

    Raises:
        ConfigError: ``env_file`` names no readable file ("configuration error: ...").
    """
    try:
        return load_environ(env_file)
    except ConfigError as exc:
        raise ConfigError(f"configuration error: {exc}") from exc


def setting_warnings(settings: Settings) -> list[str]:
    """Settings that work today but will not for long: said once, at start-up."""
    model = settings.transcription_model
    if model in DEPRECATED_TRANSCRIPTION_MODELS:
        return [
            f"TRANSCRIPTION_MODEL={model} is deprecated (shut down 2027-02-26): "
            f"use {DEFAULT_TRANSCRIPTION_MODEL}"
        ]
    return []


def configure(env_file: str | None) -> Settings:
    """The settings as ``serve`` reads them (the environment over ``env_file``), with logging
    set up from them and a warning for each variable read by its old name.

    Raises:
        ConfigError: ``env_file`` or a setting is wrong ("configuration error: ...").
    """
    environ = read_environ(env_file)
    try:
        settings = Settings.from_env(environ)
    except ConfigError as exc:
        raise ConfigError(f"configuration error: {exc}") from exc
    setup_logging(
        settings.log_level,
        settings.log_format,
        wire=settings.log_wire,
        secrets=settings.secret_values(),
    )
    for warning in setting_warnings(settings):
        log.warning("%s", warning)
    for old in settings.deprecated_names:
        log.warning(
            "%s is deprecated: rename it %s (the old name is read until the next release)",
            old,
            RENAMED[old],
        )
    return settings
