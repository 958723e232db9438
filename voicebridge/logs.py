"""Logging set-up: human-readable lines, or one JSON object per line (LOG_FORMAT=json)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

__all__ = [
    "JsonFormatter",
    "TextFormatter",
    "escape_controls",
    "mask_number",
    "mask_url",
    "setup_logging",
]

# Query parameters known to carry no secret; every other value is masked when a URL is logged
# (Azure and proxies take keys in the query: `api-key=`, `sig=`, `token=`, ...).
_PLAIN_QUERY_KEYS = frozenset({"model", "api-version", "deployment", "intent"})

# C0 controls, DEL and C1 controls (NEL, CSI, ...): anything that could end a line, move the
# cursor or start a terminal escape. Each is written as a visible escape instead.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_CONTROLS.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"})
_CONTROLS.update({0x2028: "\\u2028", 0x2029: "\\u2029"})  # line separators


def escape_controls(text: str) -> str:
    """``text`` on one line: a client cannot forge a log line with a newline and a timestamp."""
    return text.translate(_CONTROLS) if not text.isprintable() else text


def mask_number(number: str) -> str:
    """+14155550123 -> +1415***0123: enough to recognise a number, not to dial it.

    Every phone number voicebridge writes (log lines, recorded ``start`` messages) goes
    through here; a short one is hidden whole, and an absent one stays empty.
    """
    if len(number) <= 6:
        return "***" if number else ""
    return number[:5] + "***" + number[-4:]


def mask_url(url: str) -> str:
    """``url`` fit for a log line: a password and every query value that may be a secret masked."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "***@" + netloc.rpartition("@")[2]
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return "<unparseable URL>"
    query = "&".join(
        f"{key}={value if key.lower() in _PLAIN_QUERY_KEYS else '***'}" for key, value in pairs
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=""))


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ...fields}``; call lines carry their totals.

    Structured fields come from ``extra={"fields": {...}}``; no audio and no secrets are
    ever put there.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """One record, one line: the message's control characters are escaped.

    Values in messages often come from a client (a StreamSid, an event name, a parameter); an
    exception's text follows on indented lines, so nothing in it starts a line of its own.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        text = super().formatException(ei)
        return "\n".join("    | " + escape_controls(line) for line in text.splitlines())

    def formatStack(self, stack_info: str) -> str:
        return "\n".join("    | " + escape_controls(line) for line in stack_info.splitlines())


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = TextFormatter()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # websockets logs every connection at INFO and every frame at DEBUG: too chatty.
    logging.getLogger("websockets").setLevel(logging.WARNING)
