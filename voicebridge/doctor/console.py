"""What to paste into the Twilio console, printed after the checks."""

from __future__ import annotations

from urllib.parse import urlsplit

from voicebridge.core.twiml import stream_url
from voicebridge.doctor.report import Report

__all__ = ["CONSOLE_PATH", "print_console"]

CONSOLE_PATH = "Phone Numbers → Manage → Active numbers → your number → Voice Configuration"


def print_console(report: Report, base: str | None, raw_public_url: str) -> None:
    """What to paste into the Twilio console: the checked base, else PUBLIC_URL's own scheme.

    The webhook URLs are what the service checks Twilio's signatures against, so they keep
    PUBLIC_URL's scheme (an http:// one is never printed as https://); a ws(s):// value is
    the stream's, and its webhook base is the matching http(s)://.
    """
    say = report.out.write
    caveat = ""
    if base is None:
        base, caveat = _guess(raw_public_url)
    say(f"\nTwilio console → {CONSOLE_PATH}{caveat}:\n")
    say("  Configure with: Webhook\n")
    say(f"  A call comes in: Webhook, URL {base}/twilio/stream, HTTP POST\n")
    say(f"  Primary handler fails: URL {base}/twilio/fallback, HTTP POST\n")
    say(
        f"Paste these URLs there, never a wss:// URL: Twilio opens {stream_url(base)} itself, "
        "as the webhook's TwiML tells it.\n"
    )
    if base.startswith("http://"):
        say("Twilio streams only to wss://: serve PUBLIC_URL over https:// before going live.\n")
    report.out.flush()


def _guess(raw_public_url: str) -> tuple[str, str]:
    """(base, caveat) for a PUBLIC_URL that did not pass its check."""
    value = raw_public_url.strip().rstrip("/").split("?", 1)[0].split("#", 1)[0]
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "https", value
    scheme = {"wss": "https", "ws": "http"}.get(scheme.lower(), scheme.lower())
    if scheme not in ("http", "https") or not rest or not urlsplit(f"{scheme}://{rest}").hostname:
        return "https://YOUR-HOST", " (set PUBLIC_URL to know YOUR-HOST)"
    return f"{scheme}://{rest}", " (once PUBLIC_URL is fixed as above)"
