"""Typed field readers for parsed JSON messages, shared by the Twilio and Realtime parsers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voicebridge.errors import ProtocolError

__all__ = ["Fields"]


@dataclass(frozen=True, slots=True)
class Fields:
    """Reads a field with the type a parser needs, or raises ``error("bad_shape", …)``.

    The message names the event (``event``, else the object's own ``type``) and the field.
    ``numeric_strings`` also accepts integers sent as strings, as Twilio does
    (``"timestamp": "5"``).
    """

    error: type[ProtocolError]
    numeric_strings: bool = False

    def _bad(self, obj: dict[str, Any], key: str, event: str | None, kind: str) -> ProtocolError:
        name = obj.get("type") if event is None else event
        return self.error("bad_shape", f"{name!r} field {key!r} is not {kind}")

    def string(self, obj: dict[str, Any], key: str, event: str | None = None) -> str:
        value = obj.get(key)
        if not isinstance(value, str):
            raise self._bad(obj, key, event, "a string")
        return value

    def mapping(self, obj: dict[str, Any], key: str, event: str | None = None) -> dict[str, Any]:
        value = obj.get(key)
        if not isinstance(value, dict):
            raise self._bad(obj, key, event, "an object")
        return value

    def integer(self, obj: dict[str, Any], key: str, event: str | None = None) -> int:
        value = obj.get(key)
        if isinstance(value, int) and not isinstance(value, bool):  # bool is no count
            return value
        if self.numeric_strings and isinstance(value, str | float):
            try:
                return int(value)
            except (ValueError, OverflowError):
                pass
        raise self._bad(obj, key, event, "an integer")
