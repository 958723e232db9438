"""What to paste into the Twilio console, printed after the checks."""

from __future__ import annotations

from urllib.parse import urlsplit

from voicebridge.core.twiml import stream_url
from voicebridge.doctor.report import Report

__all__ = ["CONSOLE_PATH", "print_console"]

CONSOLE_PATH = "Phone Numbers → Manage → Active numbers → your number → Voice Configuration"


def print_console(report: Report, base: str | None, raw_public_url: str) -> None:
    """What to paste into the Twilio console, for the https:// base (or its best guess)."""
    say = report.out.write
    if base is None:
        rest = raw_public_url.strip().rstrip("/").split("://", 1)[-1]
        if rest and urlsplit("https://" + rest).hostname:
            base = "https://" + rest
            caveat = " (once PUBLIC_URL is fixed as above)"
        else:
            base, caveat = "https://YOUR-HOST", " (set PUBLIC_URL to know YOUR-HOST)"
    else:
        caveat = ""
    say(f"\nTwilio console → {CONSOLE_PATH}{caveat}:\n")
    say("  Configure with: Webhook\n")
    say(f"  A call comes in: Webhook, URL {base}/twilio/stream, HTTP POST\n")
    say(f"  Primary handler fails: URL {base}/twilio/fallback, HTTP POST\n")
    say(
        f"Paste https:// URLs there, never a wss:// URL: Twilio opens {stream_url(base)} "
        "itself, as the webhook's TwiML tells it.\n"
    )
    report.out.flush()
