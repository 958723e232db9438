"""Check 2: ``PUBLIC_URL`` is the https:// base Twilio posts the webhook to."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit

from voicebridge.doctor.report import Report
from voicebridge.doctor.settings import config_error

__all__ = ["check_public_url", "is_local"]

_LOCAL_HOSTS = ("localhost", "localhost.localdomain")


def is_local(host: str) -> bool:
    """Whether ``host`` cannot be reached from the internet (so not by Twilio either)."""
    if host in _LOCAL_HOSTS or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def check_public_url(report: Report, raw: str) -> str | None:
    """The validated https:// base, or None after a failed check line."""
    value = raw.strip().rstrip("/")
    if not value:
        report.fail(
            "PUBLIC_URL is not set: doctor cannot reach the webhook, and the service cannot "
            "check Twilio's signatures without it",
            "set PUBLIC_URL=https://YOUR-HOST, the public https:// address Twilio posts the "
            "webhook to (e.g. https://voice.example.com), here and on the service",
        )
        return None
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    rest = value.split("://", 1)[-1]
    if scheme in ("ws", "wss"):
        report.fail(
            f"PUBLIC_URL={value} is a WebSocket URL",
            f"set PUBLIC_URL=https://{rest} — the https:// base Twilio POSTs the webhook to; "
            f"voicebridge derives the wss://{rest}/realtime stream URL from it",
        )
        return None
    if scheme == "http":
        if is_local(parts.hostname or ""):
            fix = (
                "Twilio cannot reach a local address: expose the service through an https:// "
                "tunnel (e.g. `ngrok http PORT`) and set PUBLIC_URL to its https:// address"
            )
        else:
            fix = (
                f"serve it over TLS (the PaaS router or a reverse proxy terminates it) and set "
                f"PUBLIC_URL=https://{rest}"
            )
        report.fail(
            f"PUBLIC_URL={value} is http://: Twilio streams calls only to wss://, so the "
            "service must be reached over https://",
            fix,
        )
        return None
    if scheme != "https" or not parts.hostname:
        report.fail(
            f"PUBLIC_URL={value!r} is not an https:// URL",
            "set PUBLIC_URL=https://YOUR-HOST (e.g. https://voice.example.com)",
        )
        return None
    if parts.query or parts.fragment or "?" in value or "#" in value or parts.username:
        base = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1], query=""))
        report.fail(
            f"PUBLIC_URL={value!r} has more than a base URL (a query string, fragment or user)",
            f"set PUBLIC_URL={base.split('#', 1)[0]}",
        )
        return None
    error = config_error("PUBLIC_URL", value)
    if error:
        report.fail(error, "set PUBLIC_URL=https://YOUR-HOST (e.g. https://voice.example.com)")
        return None
    report.ok(f"PUBLIC_URL={value} is an https:// base")
    if is_local(parts.hostname):
        report.warn(
            f"{parts.hostname} is not reachable from the internet: Twilio cannot call it "
            "(fine only when checking a service through --connect-to)"
        )
    return value
