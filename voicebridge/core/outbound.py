"""Outbound calls, the pure part: the request, Twilio's Calls create, pacing, AMD. No I/O.

``POST /calls`` carries ``{"to": "+1…", "profile": …, "context": {…}, "instructions": …,
"voicemail": …}``. :func:`parse_request` validates it (E.164, ``OUTBOUND_ALLOW``, the
profile, the context's size); :func:`create_params` is the form of Twilio's Calls create
(asynchronous answering-machine detection that waits for the end of a greeting, so a
voicemail message starts after the beep); :class:`Pacer` spaces the starts
(``OUTBOUND_CALLS_PER_S``: Twilio accounts start at one call per second).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from voicebridge.core.context import MAX_PARAMS, MAX_VALUE, PARAM_PREFIX, Template, TemplateError

__all__ = [
    "CALL_STATUSES",
    "MAX_CONTEXT_BYTES",
    "OUTBOUND_PARAMETER",
    "OutboundRequest",
    "Pacer",
    "RequestError",
    "amd_verdict",
    "create_params",
    "parse_request",
]

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_CONTEXT_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")  # as the webhook's custom parameters
MAX_CONTEXT_BYTES = 2048  # the context travels as <Parameter>s (each under 500 characters)
MAX_TEXT = 4000  # instructions or a voicemail message
# The <Parameter> that marks a stream as an outbound call's (its value: the profile).
OUTBOUND_PARAMETER = "vb_outbound"
# Twilio's CallStatus values a status callback may carry (PROTOCOLS.md A.5).
CALL_STATUSES = frozenset(
    {"queued", "initiated", "ringing", "in-progress", "completed", "busy", "no-answer"}
    | {"failed", "canceled"}
)
Verdict = Literal["human", "machine", "end"]


class RequestError(ValueError):
    """A ``POST /calls`` body that is refused; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    to: str
    profile: str = "default"
    context: Mapping[str, str] = field(default_factory=dict)
    instructions: str = ""  # replaces the profile's, when given
    voicemail: str = ""  # said after the beep; empty: the profile's (VOICEMAIL_MESSAGE)

    def encode(self) -> str:
        return json.dumps(
            {
                "to": self.to,
                "profile": self.profile,
                "context": dict(self.context),
                "instructions": self.instructions,
                "voicemail": self.voicemail,
            }
        )

    @classmethod
    def decode(cls, text: str) -> OutboundRequest:
        data = json.loads(text)
        return cls(
            str(data["to"]),
            str(data["profile"]),
            {str(k): str(v) for k, v in data["context"].items()},
            str(data["instructions"]),
            str(data["voicemail"]),
        )

    def parameters(self) -> dict[str, str]:
        """The ``<Parameter>``s of the call's stream: the context as custom parameters
        (``{param.NAME}`` in templates) and the outbound mark."""
        out = {PARAM_PREFIX + k: v for k, v in self.context.items()}
        out[OUTBOUND_PARAMETER] = self.profile
        return out


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise RequestError(f"{key} must be a string")
    if len(value) > MAX_TEXT:
        raise RequestError(f"{key} is over {MAX_TEXT} characters")
    return value.strip()


def _context(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError("context must be a JSON object")
    if len(json.dumps(value)) > MAX_CONTEXT_BYTES:
        raise RequestError(f"context is over {MAX_CONTEXT_BYTES} bytes", 413)
    if len(value) > MAX_PARAMS:
        raise RequestError(f"context has over {MAX_PARAMS} keys")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not _CONTEXT_KEY.fullmatch(key):
            raise RequestError(f"context key {key!r}: use lowercase letters, digits and _")
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise RequestError(f"context[{key!r}] must be a string or a number")
        text = str(item)
        if len(text) > MAX_VALUE:
            raise RequestError(f"context[{key!r}] is over {MAX_VALUE} characters")
        out[key] = text
    return out


def parse_request(
    body: bytes, *, allow: Collection[str], profiles: Collection[str]
) -> OutboundRequest:
    """The request in a ``POST /calls`` body.

    Args:
        allow: number prefixes destinations must start with (``OUTBOUND_ALLOW``); empty: any.
        profiles: the names of the profiles this instance has.

    Raises:
        RequestError: what is wrong, in one sentence (never the body's text beyond a key).
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RequestError("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise RequestError("the body must be a JSON object")
    unknown = set(data) - {"to", "profile", "context", "instructions", "voicemail"}
    if unknown:
        raise RequestError(f"unknown field {sorted(unknown)[0]!r}")
    to = data.get("to")
    if not isinstance(to, str) or not E164.fullmatch(to):
        raise RequestError("to must be an E.164 number such as +14155550123")
    if allow and not any(to.startswith(prefix) for prefix in allow):
        raise RequestError("to is not in OUTBOUND_ALLOW", 403)
    profile = data.get("profile") or "default"
    if not isinstance(profile, str) or profile not in profiles:
        raise RequestError("profile is not one of this instance's profiles")
    instructions = _text(data, "instructions")
    try:
        Template.parse(instructions)  # {caller}, {param.NAME}, …: as a profile's
    except TemplateError as exc:
        raise RequestError(f"instructions: {exc}") from None
    context = _context(data.get("context"))
    return OutboundRequest(to, profile, context, instructions, _text(data, "voicemail"))


def create_params(request: OutboundRequest, caller_id: str, base: str) -> list[tuple[str, str]]:
    """Twilio's Calls create form for ``request``, from ``caller_id``, calling back ``base``
    (the https PUBLIC_URL): the webhook, call progress and the AMD result, all signed."""
    form = [
        ("To", request.to),
        ("From", caller_id),
        ("Url", base + "/twilio/stream"),
        ("Method", "POST"),
        ("StatusCallback", base + "/twilio/call-status"),
        ("StatusCallbackMethod", "POST"),
    ]
    # A list parameter: repeated in the form, as Twilio's own clients send it. Busy,
    # no-answer and failed arrive as the "completed" event's CallStatus.
    form += [("StatusCallbackEvent", e) for e in ("initiated", "ringing", "answered", "completed")]
    return [
        *form,
        # DetectMessageEnd: a machine's verdict comes at the end of its greeting (the beep).
        ("MachineDetection", "DetectMessageEnd"),
        ("AsyncAmd", "true"),
        ("AsyncAmdStatusCallback", base + "/twilio/amd"),
        ("AsyncAmdStatusCallbackMethod", "POST"),
    ]


def amd_verdict(answered_by: str) -> Verdict:
    """Twilio's ``AnsweredBy``: a person converses; a machine after its greeting gets the
    voicemail message; a machine still greeting, a fax or ``unknown`` ends the call."""
    if answered_by == "human":
        return "human"
    if answered_by in ("machine_end_beep", "machine_end_silence", "machine_end_other"):
        return "machine"
    return "end"


class Pacer:
    """Starts spaced at least ``1 / rate`` seconds apart (a token bucket of depth one)."""

    def __init__(self, rate_per_s: float) -> None:
        self.interval = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self._next = float("-inf")

    def reserve(self, now: float) -> float:
        """The next start's delay from ``now``, that start taken."""
        at = max(now, self._next)
        self._next = at + self.interval
        return at - now

    def backlog(self, now: float) -> float:
        """How long a request made ``now`` would wait."""
        return max(0.0, self._next - now)
