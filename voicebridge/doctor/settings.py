"""The settings as ``voicebridge serve`` loads them, minus the ones the doctor checks itself."""

from __future__ import annotations

from collections.abc import Mapping

from voicebridge.config import Settings
from voicebridge.errors import ConfigError

__all__ = ["OWN_CHECKS", "config_error", "load_settings"]

# The variables doctor checks itself, with a specific fix each; the others must load as
# `voicebridge serve` loads them.
OWN_CHECKS = ("PUBLIC_URL", "TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "STREAM_TOKEN_SECRET")


def load_settings(environ: Mapping[str, str]) -> tuple[Settings | None, str | None]:
    """(settings, None), or (None, the error) when a setting doctor does not check is wrong.

    When one of :data:`OWN_CHECKS` is wrong, the settings without it are returned: its own
    check explains the error, and the upstream can still be checked.
    """
    try:
        return Settings.from_env(environ), None
    except ConfigError:
        pass
    bad = {
        name
        for name in ("PUBLIC_URL", "TWILIO_ACCOUNT_SID", "STREAM_TOKEN_SECRET")
        if environ.get(name, "").strip() and config_error(name, environ[name])
    }
    if "PUBLIC_URL" in bad or not environ.get("PUBLIC_URL", "").strip():
        bad.add("TWILIO_AUTH_TOKEN")  # the token requires PUBLIC_URL
    error = ""
    for drop in (bad, set(OWN_CHECKS)):
        try:
            return Settings.from_env({k: v for k, v in environ.items() if k not in drop}), None
        except ConfigError as exc:
            error = str(exc)
    return None, error


# What a variable is checked beside, so only its own value is judged.
_COMPANIONS = {
    "TWILIO_ACCOUNT_SID": {"TWILIO_AUTH_TOKEN": "0" * 32, "PUBLIC_URL": "https://x.example"},
}


def config_error(name: str, value: str) -> str | None:
    """What ``voicebridge serve`` would say about this one variable, or None."""
    try:
        Settings.from_env({name: value, **_COMPANIONS.get(name, {})})
    except ConfigError as exc:
        return str(exc)
    return None
