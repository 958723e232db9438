"""TwiML answers for "A call comes in" and for the end of the stream, built without I/O.

``<Connect><Stream>`` hands the call to our WebSocket. With ``<Connect action=URL>``, Twilio
requests that URL when the stream ends and runs the TwiML it gets back, so the bridge answers
by the call's outcome (:func:`after_stream_twiml`): a hang-up after a goodbye, a ``<Dial>``
for a transfer, the apology after a failure. The verbs after ``</Connect>`` are the failure
path for a Twilio that cannot reach the action: an apology and a hang-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import quoteattr

from voicebridge.core.outcomes import Outcome, OutcomeKind

__all__ = [
    "after_stream_twiml",
    "dial_twiml",
    "hangup_twiml",
    "say_twiml",
    "stream_twiml",
    "stream_url",
    "twiml_escape",
]

# "The combined length of each <Parameter> name and value attributes must be under 500."
MAX_PARAMETER_LENGTH = 499


def twiml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _say(text: str, language: str = "") -> str:
    """``<Say>``, in ``language`` (en-US, de-DE…) when given, else Twilio's default."""
    attr = f" language={quoteattr(language)}" if language else ""
    return f"<Say{attr}>{twiml_escape(text)}</Say>"


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
    action: str = "",
    language: str = "",
) -> str:
    """The webhook answer: optional <Say>, <Connect><Stream>, then the failure path.

    ``action`` (absolute: Twilio refuses a relative one in inline TwiML) is requested when the
    stream ends; its answer replaces the rest of this document.
    """
    if "?" in url:
        # Twilio drops or rejects a query string in the stream URL (error 31920).
        raise ValueError("a <Stream> url cannot carry a query string; use <Parameter>s")
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<Response>"]
    if welcome_say:
        lines.append(f"  {_say(welcome_say, language)}")
    lines.append(f"  <Connect action={quoteattr(action)}>" if action else "  <Connect>")
    callback = f" statusCallback={quoteattr(status_callback)}" if status_callback else ""
    lines.append(f"    <Stream url={quoteattr(url)}{callback}>")
    for name, value in parameters.items():
        if len(name) + len(value) > MAX_PARAMETER_LENGTH:
            value = value[: max(0, MAX_PARAMETER_LENGTH - len(name))]
        lines.append(f"      <Parameter name={quoteattr(name)} value={quoteattr(value)} />")
    lines.append("    </Stream>")
    lines.append("  </Connect>")
    if failure_say:
        lines.append(f"  {_say(failure_say, language)}")
    lines.append("  <Hangup />")
    lines.append("</Response>")
    return "\n".join(lines) + "\n"


def say_twiml(text: str, language: str = "") -> str:
    """Say something and hang up: the busy and fallback answers."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n'
        f"  {_say(text, language)}\n  <Hangup />\n</Response>\n"
    )


def hangup_twiml() -> str:
    """End the call without another word: the goodbye was already said."""
    return '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n  <Hangup />\n</Response>\n'


def dial_twiml(destination: str) -> str:
    """Hand the caller to ``destination`` (a number or SIP URI the settings allow)."""
    noun = twiml_escape(destination)
    if destination.startswith("sip:"):
        noun = f"<Sip>{noun}</Sip>"  # <Dial> takes a SIP URI only inside <Sip>
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n  <Dial>{noun}</Dial>\n</Response>\n'
    )


def after_stream_twiml(outcome: Outcome | None, failure_say: str, language: str = "") -> str:
    """The ``<Connect action>`` answer for a call's recorded outcome.

    ``None``: no outcome is known for the CallSid (the instance that ran the call is gone, or
    the record expired), so the caller gets the apology rather than silence.
    """
    if outcome is None or outcome.kind is OutcomeKind.FAILED:
        return say_twiml(failure_say, language) if failure_say else hangup_twiml()
    if outcome.kind is OutcomeKind.TRANSFER and outcome.destination:
        return dial_twiml(outcome.destination)
    return hangup_twiml()
