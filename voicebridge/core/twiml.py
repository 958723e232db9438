"""TwiML answers for "A call comes in", built without I/O.

``<Connect><Stream>`` hands the call to our WebSocket. Twilio runs the verbs after
``</Connect>`` only when the stream ends because *our server* closed the socket (or the
connection failed), so those verbs are the failure path: an apology and a hang-up. A
deliberate ending replaces the whole document through the REST API, so the apology never
follows a normal goodbye.
"""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import quoteattr

__all__ = ["say_twiml", "stream_twiml", "stream_url", "twiml_escape"]

# "The combined length of each <Parameter> name and value attributes must be under 500."
MAX_PARAMETER_LENGTH = 499


def twiml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def stream_url(public_base: str, path: str = "/realtime") -> str:
    """``wss://host[/prefix]/realtime`` from the public https base (``ws://`` for http)."""
    base = public_base.rstrip("/")
    scheme, sep, rest = base.partition("://")
    if sep and scheme.lower() in ("https", "http"):
        base = ("wss" if scheme.lower() == "https" else "ws") + "://" + rest
    return base + path


def stream_twiml(
    url: str,
    parameters: Mapping[str, str],
    *,
    welcome_say: str = "",
    failure_say: str = "",
    status_callback: str = "",
) -> str:
    """The webhook answer: optional <Say>, <Connect><Stream>, then the failure path."""
    if "?" in url:
        # Twilio drops or rejects a query string in the stream URL (error 31920).
        raise ValueError("a <Stream> url cannot carry a query string; use <Parameter>s")
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<Response>"]
    if welcome_say:
        lines.append(f"  <Say>{twiml_escape(welcome_say)}</Say>")
    lines.append("  <Connect>")
    callback = f" statusCallback={quoteattr(status_callback)}" if status_callback else ""
    lines.append(f"    <Stream url={quoteattr(url)}{callback}>")
    for name, value in parameters.items():
        if len(name) + len(value) > MAX_PARAMETER_LENGTH:
            value = value[: max(0, MAX_PARAMETER_LENGTH - len(name))]
        lines.append(f"      <Parameter name={quoteattr(name)} value={quoteattr(value)} />")
    lines.append("    </Stream>")
    lines.append("  </Connect>")
    if failure_say:
        lines.append(f"  <Say>{twiml_escape(failure_say)}</Say>")
    lines.append("  <Hangup />")
    lines.append("</Response>")
    return "\n".join(lines) + "\n"


def say_twiml(text: str) -> str:
    """Say something and hang up: the busy and fallback answers."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n'
        f"  <Say>{twiml_escape(text)}</Say>\n  <Hangup />\n</Response>\n"
    )
