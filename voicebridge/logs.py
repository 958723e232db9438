"""Logging set-up: human-readable lines, or one JSON object per line (LOG_FORMAT=json)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["JsonFormatter", "mask_number", "setup_logging"]


def mask_number(number: str) -> str:
    """+14155550123 -> +1415***0123: enough to recognise a number, not to dial it.

    Every phone number voicebridge writes (log lines, recorded ``start`` messages) goes
    through here; a short one is hidden whole, and an absent one stays empty.
    """
    if len(number) <= 6:
        return "***" if number else ""
    return number[:5] + "***" + number[-4:]


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


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # websockets logs every connection at INFO and every frame at DEBUG: too chatty.
    logging.getLogger("websockets").setLevel(logging.WARNING)
