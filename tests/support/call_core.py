"""Driving a ``CallCore`` with parsed events and explicit times (the pure tests' helpers)."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.support.conformance import CLIENT_EVENT
from voicebridge.core import realtime as rt
from voicebridge.core import twilio as tw
from voicebridge.core.actions import Action, Playback, Probe, SendTwilio, SendUpstream
from voicebridge.core.call import CallCore, CallPolicy

__all__ = [
    "DELTA",
    "SID",
    "done",
    "echo_all",
    "play_response",
    "policy_core",
    "ready_core",
    "session",
    "start_event",
    "twilio_sent",
    "upstream",
    "write_all",
]

SID = "MZ" + "1" * 32
DELTA = base64.b64encode(b"\x55" * 800).decode()  # 100 ms μ-law


def start_event(sid: str = SID) -> tw.Start:
    return tw.Start(sid, "CA" + "2" * 32, "AC" + "3" * 32, ("inbound",), "audio/x-mulaw", 8000, 1)


def session(interrupt: bool = True, out: str = "audio/pcmu", create: bool = True) -> dict[str, Any]:
    """A ``session.updated`` session as the server confirms it."""
    return {
        "type": "realtime",
        "audio": {
            "input": {
                "format": {"type": "audio/pcmu"},
                "turn_detection": {
                    "type": "server_vad",
                    "interrupt_response": interrupt,
                    "create_response": create,
                },
            },
            "output": {"format": {"type": out}},
        },
    }


def policy_core(**policy: Any) -> CallCore:
    """A started call with this policy, its session not yet confirmed."""
    core = CallCore(rt.SessionConfig(instructions="hi", voice="marin"), CallPolicy(**policy))
    core.receive_twilio(start_event(), 0.0)
    return core


def ready_core(interrupt: bool = True, create: bool = True, **policy: Any) -> CallCore:
    """A started call whose session is confirmed (no greeting unless ``policy`` asks)."""
    core = CallCore(rt.SessionConfig(instructions="hi", voice="marin"), CallPolicy(**policy))
    assert core.receive_twilio(start_event(), 0.0) == [Probe()]
    core.receive_realtime(rt.SessionUpdated(session(interrupt, create=create)), 0.0)
    assert core.session_ready
    return core


def write_all(core: CallCore, actions: list[Action], now: float) -> list[str]:
    """The Twilio writer's part: render queued audio at ``now``."""
    out: list[str] = []
    for a in actions:
        if isinstance(a, (Playback, Probe)):
            out += core.render(a, now).messages
    return out


def play_response(
    core: CallCore, chunks: int, now: float, resp: str = "resp_1", item: str = "item_1"
) -> list[str]:
    """``response.created`` and ``chunks`` deltas of 100 ms, all written at ``now``."""
    core.receive_realtime(rt.ResponseCreated(resp), now)
    sent: list[str] = []
    for _ in range(chunks):
        sent += write_all(core, core.receive_realtime(rt.AudioDelta(resp, item, DELTA), now), now)
    return sent


def echo_all(core: CallCore, sent: list[str], now: float) -> None:
    """Twilio echoes every mark among ``sent`` at ``now``."""
    for message in map(json.loads, sent):
        if message["event"] == "mark":
            core.receive_twilio(tw.Mark(SID, message["mark"]["name"]), now)


def done(response_id: str, status: str = "completed", **kw: Any) -> rt.ResponseDone:
    return rt.ResponseDone(response_id, status, kw.pop("details", None), None, [], **kw)


def upstream(actions: list[Action]) -> list[dict[str, Any]]:
    """The Realtime client events among the actions, parsed and checked against the SDK."""
    events: list[dict[str, Any]] = []
    for a in actions:
        if isinstance(a, SendUpstream):
            CLIENT_EVENT.validate_json(a.text)
            events.append(json.loads(a.text))
    return events


def twilio_sent(actions: list[Action]) -> list[str]:
    """The Twilio events (``clear``) among the actions, by name."""
    return [json.loads(a.text)["event"] for a in actions if isinstance(a, SendTwilio)]
