"""Who is calling: the call's context, and the instruction templates that may quote it. No I/O.

The webhook knows From, To and the CallSid; Twilio's ``start`` carries only what the webhook
put in ``<Parameter>``s, so the webhook passes From and To on, with the webhook URL's own
query parameters (the operator's custom parameters: lowercase names, e.g.
``https://voice.example.com/twilio/stream?tenant=acme``; Twilio's parameters are capitalised
and never count).

Instructions may name fields in braces: ``{caller}``, ``{called}``, ``{call_sid}``,
``{profile}`` and ``{param.NAME}``. A field the template does not know is an error when the
settings load, not during a call. Values go in as data — a JSON string in quotes, control
characters escaped, cut to a bounded length — so a caller-chosen value (a SIP From, a
parameter) cannot pose as instructions.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voicebridge.core import twilio as tw

__all__ = [
    "PARAM_PREFIX",
    "CallContext",
    "Template",
    "TemplateError",
    "custom_parameters",
]

PARAM_PREFIX = "param_"  # the <Parameter> name a custom parameter travels under
_PARAM_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_PARAMS = 10
MAX_VALUE = 100  # characters of any value kept (E.164 is 16; a SIP From can be long)
FIELDS = ("caller", "called", "call_sid", "profile")
UNKNOWN = "unknown"


class TemplateError(ValueError):
    """A template names a field that does not exist, or formats one."""


def _bounded(value: str) -> str:
    return value[:MAX_VALUE]


def custom_parameters(query: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The webhook URL's custom parameters as ``<Parameter>``s (``param_NAME``): lowercase
    names only, at most :data:`MAX_PARAMS`, values cut to :data:`MAX_VALUE` characters."""
    out: dict[str, str] = {}
    for name, value in query:
        if len(out) < MAX_PARAMS and _PARAM_NAME.fullmatch(name):
            out[PARAM_PREFIX + name] = _bounded(value)
    return out


@dataclass(frozen=True, slots=True)
class CallContext:
    """What the instructions, the tools and the call events know about a call."""

    call_sid: str
    caller: str = ""  # From: E.164, "anonymous", a client or SIP identity
    called: str = ""  # To: the number the caller dialled (chooses the profile)
    params: Mapping[str, str] = field(default_factory=dict)  # the webhook's custom parameters
    profile: str = "default"

    @classmethod
    def from_start(cls, start: tw.Start, profile: str = "default") -> CallContext:
        given = start.custom_parameters
        params = {
            k.removeprefix(PARAM_PREFIX): _bounded(v)
            for k, v in given.items()
            if k.startswith(PARAM_PREFIX) and _PARAM_NAME.fullmatch(k.removeprefix(PARAM_PREFIX))
        }
        return cls(
            start.call_sid,
            _bounded(given.get("From", "")),
            _bounded(given.get("To", "")),
            dict(list(params.items())[:MAX_PARAMS]),
            profile,
        )

    def value(self, name: str) -> str:
        """A template field's value ("" when the call does not have it)."""
        if name.startswith("param."):
            return self.params.get(name.removeprefix("param."), "")
        return str(getattr(self, name))

    def as_json(self) -> dict[str, Any]:
        """The context in tool requests and call events."""
        return {
            "call_sid": self.call_sid,
            "caller": self.caller,
            "called": self.called,
            "profile": self.profile,
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class Template:
    """Instructions with ``{field}``s; ``{{`` and ``}}`` are literal braces."""

    parts: tuple[tuple[str, str | None], ...]  # (literal text, field or None)

    @classmethod
    def parse(cls, text: str) -> Template:
        """Raises:
        TemplateError: an unknown field, a format spec or conversion, unbalanced braces.
        """
        parts: list[tuple[str, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise TemplateError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
        for literal, name, spec, conversion in parsed:
            if name is None:
                parts.append((literal, None))
                continue
            if spec or conversion:
                raise TemplateError(f"{{{name}}}: fields take no format spec or conversion")
            if not (name in FIELDS or _is_param(name)):
                known = ", ".join(f"{{{f}}}" for f in FIELDS)
                raise TemplateError(
                    f"unknown field {{{name}}}: use {known} or {{param.NAME}} (a custom "
                    "parameter of the webhook URL); write {{ and }} for literal braces"
                )
            parts.append((literal, name))
        return cls(tuple(parts))

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.parts if name is not None)

    def render(self, context: CallContext) -> str:
        out = []
        for literal, name in self.parts:
            out.append(literal)
            if name is not None:
                # A JSON string: quoted, control characters and quotes escaped.
                out.append(json.dumps(context.value(name) or UNKNOWN, ensure_ascii=False))
        return "".join(out)


def _is_param(name: str) -> bool:
    head, dot, rest = name.partition(".")
    return head == "param" and bool(dot) and bool(_PARAM_NAME.fullmatch(rest))
