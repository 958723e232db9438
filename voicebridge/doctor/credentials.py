"""Check 6: the secrets a production service needs are set, each with its own fix."""

from __future__ import annotations

import re
from collections.abc import Mapping

from voicebridge.config import STREAM_SIGNATURE_MODES
from voicebridge.doctor.report import Report
from voicebridge.doctor.settings import config_error

__all__ = ["check_credentials"]


def check_credentials(report: Report, environ: Mapping[str, str]) -> None:
    """``STREAM_TOKEN_SECRET``, ``TWILIO_AUTH_TOKEN`` and ``TWILIO_ACCOUNT_SID``."""
    secret = environ.get("STREAM_TOKEN_SECRET", "").strip()
    error = config_error("STREAM_TOKEN_SECRET", secret) if secret else None
    if not secret:
        report.fail(
            "STREAM_TOKEN_SECRET is not set: each process makes a random one, so several "
            "instances (or a restart between webhook and stream) will refuse calls",
            "set the same 32+ random characters on every instance, e.g. the output of "
            'python3 -c "import secrets; print(secrets.token_urlsafe(32))"',
        )
    elif error:
        report.fail(error, "set 32+ random characters, the same on every instance")
    else:
        report.ok("STREAM_TOKEN_SECRET is set")

    token = environ.get("TWILIO_AUTH_TOKEN", "").strip()
    if not token:
        report.fail(
            "TWILIO_AUTH_TOKEN is not set: signatures are not checked, so anyone who finds "
            "the webhook URL can place calls on your upstream account",
            "set TWILIO_AUTH_TOKEN to your account's primary Auth Token (Twilio console → "
            "Account Info), with PUBLIC_URL, here and on the service",
        )
    else:
        report.ok("TWILIO_AUTH_TOKEN is set")
        if not re.fullmatch(r"[0-9a-fA-F]{32}", token):
            report.warn(
                "TWILIO_AUTH_TOKEN does not look like an Auth Token (32 hex characters): "
                "Twilio signs with the account's primary Auth Token, not an API key secret"
            )
        _stream_signature(report, environ)

    sid = environ.get("TWILIO_ACCOUNT_SID", "").strip()
    error = config_error("TWILIO_ACCOUNT_SID", sid) if sid else None
    if not sid:
        # Endings and transfers are carried out by the after-stream answer (<Connect action>).
        report.ok("TWILIO_ACCOUNT_SID is not set: calls end and transfer without the REST API")
    elif error:
        report.fail(error, "copy the Account SID from the Twilio console → Account Info")
    else:
        report.ok(f"TWILIO_ACCOUNT_SID={sid} is set")


def _stream_signature(report: Report, environ: Mapping[str, str]) -> None:
    """``TWILIO_STREAM_SIGNATURE``: which /realtime upgrades the signature check refuses."""
    raw = environ.get("TWILIO_STREAM_SIGNATURE", "").strip()
    mode = raw.lower() or "if-present"
    if mode not in STREAM_SIGNATURE_MODES:
        report.fail(
            config_error("TWILIO_STREAM_SIGNATURE", raw) or f"TWILIO_STREAM_SIGNATURE={raw!r}",
            "set require, if-present (the default) or off",
        )
        return
    report.note(f"TWILIO_STREAM_SIGNATURE={mode}: {STREAM_SIGNATURE_MODES[mode]}")
    if mode == "require":
        report.note(
            "  Twilio's docs say to validate the upgrade, but should your account's streams "
            "arrive unsigned (or signed over another URL form), every call fails: if-present "
            "refuses only a wrong signature, and the stream token binds each socket to a "
            "signed webhook either way"
        )
