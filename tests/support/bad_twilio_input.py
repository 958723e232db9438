"""Every kind of bad input Twilio's side can send, with the reason it is counted under.

The unit tests feed each one through the parser and ``CallCore``; one end-to-end call sends
them all through a real socket. Frames are written by the emulator's ``TwilioWriter``, so
the good messages around them are exactly what the emulated Twilio sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from tests.support.audio import b64
from voicebridge.twilio_sim.recordings import packaged_call
from voicebridge.twilio_sim.script import CallScript, TwilioWriter

__all__ = ["BAD_INPUTS", "FRAME", "BadInput", "writer"]

FRAME = b64(b"\x7f" * 160)  # 20 ms of quiet μ-law
OTHER_STREAM = "MZ" + "9" * 32


def writer(
    stream_sid: str, call_sid: str, parameters: dict[str, str] | None = None
) -> TwilioWriter:
    """Twilio's messages for one stream, as the emulator numbers them."""
    script = CallScript.from_recording(packaged_call("interrupts"))
    return TwilioWriter(
        script, stream_sid=stream_sid, call_sid=call_sid, account_sid="AC1", parameters=parameters
    )


def _next_media(w: TwilioWriter, payload: str) -> str:
    return w.media(payload, w.chunk * 20)


def _foreign_media(w: TwilioWriter) -> str:
    return _next_media(writer(OTHER_STREAM, w.call_sid), FRAME)


def _foreign_mark(w: TwilioWriter) -> str:
    return writer(OTHER_STREAM, w.call_sid).mark("never-sent")


@dataclass(frozen=True)
class BadInput:
    name: str
    reason: str  # the key in CallStats.ignored (the parser's reason for unparseable text)
    frame: Callable[[TwilioWriter], str | bytes]
    # Who names it: the shell's socket reader (not a text frame), the parser (the shell
    # counts the reason it raises) or CallCore.
    found_by: Literal["socket", "parser", "core"] = "core"
    before_start: bool = False  # sent before Twilio's ``start``; all others after it


BAD_INPUTS = (
    BadInput(
        "media_before_start",
        "media_before_start",
        lambda w: _next_media(w, FRAME),
        before_start=True,
    ),
    BadInput("second_start", "second_start", lambda w: w.start()),
    BadInput("binary", "binary_frame", lambda w: b"\x00\x01\x02", "socket"),
    BadInput("not_json", "not_json", lambda w: "{this is not json", "parser"),
    BadInput(
        "unknown_event",
        "unknown_event",
        lambda w: json.dumps({"event": "bogus", "streamSid": w.stream_sid}),
    ),
    BadInput("invalid_base64", "invalid_base64", lambda w: _next_media(w, "!!!not base64!!!")),
    BadInput("wrong_stream_media", "wrong_stream_sid", _foreign_media),
    BadInput("wrong_stream_mark", "wrong_stream_sid", _foreign_mark),
    BadInput("oversized_payload", "oversized_payload", lambda w: _next_media(w, "A" * 12_000)),
    BadInput("unknown_mark", "unknown_mark", lambda w: w.mark("never-sent")),
    BadInput(
        "bad_shape",
        "bad_shape",
        lambda w: json.dumps({"event": "media", "streamSid": w.stream_sid}),
        "parser",
    ),
)
