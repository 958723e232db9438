"""Logging set-up: human-readable lines, or one JSON object per line (LOG_FORMAT=json)."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_plus, urlsplit, urlunsplit

__all__ = [
    "AccessLogFilter",
    "JsonFormatter",
    "TextFormatter",
    "escape_controls",
    "mask_number",
    "mask_query_numbers",
    "mask_url",
    "redact",
    "setup_logging",
    "url_secrets",
]

MASK = "****"
# Secrets shorter than this are not searched for in log lines (they would mask common words);
# every real key, token and secret is far longer.
MIN_SECRET = 8

# Query parameters known to carry no secret; every other value is masked when a URL is logged
# (Azure and proxies take keys in the query: `api-key=`, `sig=`, `token=`, ...).
_PLAIN_QUERY_KEYS = frozenset({"model", "api-version", "deployment", "intent"})

# Twilio's voice webhook parameters that hold a phone number (or a client/SIP address).
_NUMBER_KEYS = frozenset({"From", "To", "Caller", "Called", "ForwardedFrom"})
# Any other value that is a number by its look: an E.164 or national number.
_NUMBER_VALUE = re.compile(r"\+?[0-9]{7,15}")

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


def mask_query_numbers(target: str) -> str:
    """A request target (``path?query``) with the phone numbers in its query masked.

    Twilio's GET webhooks carry From, To, Caller and Called in the URL; everything else in the
    target is kept as it came, so an access line still shows what was asked.
    """
    path, sep, query = target.partition("?")
    if not sep:
        return target
    items = []
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        plain = unquote_plus(value)
        if unquote_plus(key) in _NUMBER_KEYS or _NUMBER_VALUE.fullmatch(plain):
            value = quote(mask_number(plain), safe="*")
        items.append(key + eq + value)
    return path + "?" + "&".join(items)


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


def url_secrets(url: str) -> set[str]:
    """The texts in ``url`` that :func:`mask_url` masks (a password, query values that may be
    secrets), decoded and as written: a line that shows them some other way is redacted."""
    try:
        parts = urlsplit(url)
        found = {parts.password or ""}
        for item in parts.query.split("&"):
            key, _, raw = item.partition("=")
            if unquote_plus(key).lower() not in _PLAIN_QUERY_KEYS:
                found |= {raw, unquote_plus(raw), quote(unquote_plus(raw), safe="")}
    except ValueError:
        return set()
    return found


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every occurrence of each secret (none empty) replaced by ``****``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ...fields}``; call lines carry their totals.

    Structured fields come from ``extra={"fields": {...}}``; no audio and no secrets are
    ever put there (and ``secrets`` are redacted from the line anyway).
    """

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return redact(self._format(record), self.secrets)

    def _format(self, record: logging.LogRecord) -> str:
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
    ``secrets`` never show: a library's debug line with a header or a URL is redacted too.
    """

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        text = super().formatException(ei)
        return "\n".join("    | " + escape_controls(line) for line in text.splitlines())

    def formatStack(self, stack_info: str) -> str:
        return "\n".join("    | " + escape_controls(line) for line in stack_info.splitlines())


class AccessLogFilter(logging.Filter):
    """uvicorn's access lines with the phone numbers in their query strings masked.

    ``uvicorn.access`` logs ``'%s - "%s %s HTTP/%s" %d'`` with the request target (path and
    query) as the third argument, so the target is masked before any handler formats it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], mask_query_numbers(args[2]), *args[3:])
        return True


# Loggers that write a line per WebSocket frame at DEBUG: uvicorn hands its own logger to the
# websockets protocol that serves Twilio's socket, and ``websockets`` logs the upstream's frames.
_WIRE_LOGGERS = {"uvicorn.error": logging.INFO, "websockets": logging.WARNING}


def setup_logging(
    level: str, fmt: str = "text", *, wire: bool = False, secrets: Iterable[str] = ()
) -> None:
    """Log to stderr at ``level``; frame-level output (LOG_WIRE) only when ``wire``.

    ``secrets`` (``Settings.secret_values()``) are replaced by ``****`` in every line, at
    every level and from every library.
    """
    hidden = tuple(sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True))
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter(hidden)
        formatter.converter = time.gmtime
    else:
        formatter = TextFormatter(hidden)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # A DEBUG level is for voicebridge's own lines; about 1,200 frame lines per 20 s call
    # would bury them. websockets also logs every connection at INFO: too chatty either way.
    for name, quiet in _WIRE_LOGGERS.items():
        # Never below the root's level: a logger's own level decides what its records pass.
        logging.getLogger(name).setLevel(logging.NOTSET if wire else max(quiet, root.level))
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogFilter) for f in access.filters):
        access.addFilter(AccessLogFilter())
