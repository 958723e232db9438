"""Property-based fuzzing of a live bridge: random and mutated messages on either socket.

Bad input must never crash the process, leak a task, or touch another call: each bad
message is counted and the call goes on where it sensibly can; otherwise the call ends
through the failure path with a counted reason that is never ``internal_error``.

Each test runs one real bridge (uvicorn in its own thread) and keeps one call open across
Hypothesis examples for speed; a call that a fuzzed message ended (a valid ``stop``, a
session echo in another format, a dropped upstream...) is replaced by a fresh one. After
every example: the call is provably alive (a probe frame crosses the bridge) or ended with
a clean reason, ``/healthz`` answers, and no call ended in ``internal_error``. At the end:
no task leaked and a normal call still works.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import json
import logging
import math
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import hypothesis
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as sync_connect

from tests.support.servers import Bridge, LoopThread, running_bridge
from voicebridge.config import Settings
from voicebridge.fake_realtime.config import apply_session_update, default_session
from voicebridge.fake_realtime.server import FakeRealtimeServer
from voicebridge.server.call import CallResult
from voicebridge.twilio_sim.emulator import check_outbound, place_call
from voicebridge.twilio_sim.recordings import packaged_call
from voicebridge.twilio_sim.webhook_client import call_params, new_sid, parse_twiml

# Hypothesis flags a change of the global `random` state during a draw as a strategy using
# `random`; here it is the bridge's and the peers' threads (websockets pings use
# random.getrandbits) running beside the test. Not a strategy's doing.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)

FUZZ = hypothesis.settings(
    max_examples=500,
    deadline=None,
    database=None,
    derandomize=True,  # the same examples on every run and in CI
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)

OUTCOME_TIMEOUT = 5.0  # s for a probe to cross the bridge or the call to end: else a hang
SID = "$SID"  # placeholders, replaced when a frame is sent
CALL = "$CALL"
OTHER_SID = "$OTHER"  # the bystander call's streamSid
OTHER_CALL = "$OTHERCALL"


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, picked in proportion to its weight.

    (``st.one_of`` picks uniformly among *distinct* strategies: repeating one adds no weight.)
    """
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(pool) - 1).flatmap(lambda i: pool[i])


# -- values ------------------------------------------------------------------------------

WEIRD = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        1,
        2**31,
        2**63,
        -(2**63),
        10**40,
        0.5,
        -0.0,
        1e300,
        math.inf,
        -math.inf,
        math.nan,
        "",
        " ",
        "0",
        "-1",
        "20",
        "1e999",
        "NaN",
        "Infinity",
        "0x10",
        "٣",  # an Arabic-Indic digit
        "²",
        "①",
        "😀" * 20,
        "\u0000",
        "\u202e",
        "null",
        [],
        {},
        [1, "2", None],
        {"a": {"b": [1]}},
    ]
) | st.sampled_from([("A", 3000), ("é", 1000), ("9", 5000)]).map(lambda big: big[0] * big[1])
JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and ±Infinity too: json.dumps writes them, json.loads reads them
    | st.text(max_size=20)
)
JSON_ANY = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
VALUES = weighted((2, WEIRD), (1, JSON_ANY), (1, st.text(max_size=100)))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


B64_AUDIO = st.binary(max_size=3000).map(b64)
BAD_B64 = st.one_of(
    st.sampled_from(["", "=", "A", "AA", "AAA", "AA==A", "====", "!!!!", "AAAA\n", "A A=", "-_-_"]),
    st.text(max_size=300),
    B64_AUDIO.map(lambda s: s[:-1]),  # truncated
    B64_AUDIO.map(lambda s: s + "!"),
)
HUGE_B64 = st.integers(8_000, 12_000).map(lambda n: "A" * (n - n % 4))
PAYLOADS = weighted((3, B64_AUDIO), (2, BAD_B64), (1, HUGE_B64))


def _retype(value: Any) -> list[Any]:
    """Other shapes of the same value: numbers as strings and back, wrapped, flattened."""
    out: list[Any] = [[value], {"value": value}, None]
    if isinstance(value, str):
        out.append(value.encode("utf-8", "replace").hex())
        try:
            out.append(int(value))
        except ValueError:
            out.append(len(value))
        try:
            out.append(float(value))
        except ValueError:
            pass
    elif isinstance(value, bool):
        out.append(str(value).lower())
    elif isinstance(value, (int, float)):
        out += [str(value), float(value), value * 1000 if math.isfinite(value) else value]
    elif isinstance(value, dict):
        out += [list(value.values()), json.dumps(value)]
    elif isinstance(value, list):
        out += [dict(enumerate(value)), ",".join(map(str, value))]
    return out


def _slots(msg: Any) -> Iterator[tuple[dict[str, Any], str]]:
    """Every (object, key) in a JSON message, outermost first."""
    if isinstance(msg, dict):
        for key in list(msg):
            yield msg, key
            yield from _slots(msg[key])
    elif isinstance(msg, list):
        for item in msg:
            yield from _slots(item)


@st.composite
def mutated(draw: st.DrawFn, messages: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A valid message with 0-3 fields deleted, replaced, retyped or added."""
    msg = copy.deepcopy(draw(messages))
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        slots = list(_slots(msg))
        op = draw(st.sampled_from(["delete", "replace", "replace", "retype", "add"]))
        if not slots or op == "add":
            target = draw(
                st.sampled_from([msg, *[o[k] for o, k in slots if isinstance(o[k], dict)]])
            )
            target[draw(st.text(max_size=12))] = draw(VALUES)
            continue
        obj, key = draw(st.sampled_from(slots))
        if op == "delete":
            del obj[key]
        elif op == "replace":
            obj[key] = draw(VALUES)
        else:
            obj[key] = draw(st.sampled_from(_retype(obj[key])))
    return msg


def deep(depth: int, shape: str) -> str:
    """Nested garbage: JSON nested ``depth`` levels deep, under MAX_MESSAGE_BYTES (64 KB)."""
    if shape == "[":
        return "[" * depth + "]" * depth
    if shape == "{":
        depth = min(depth, 10_000)  # 6 bytes a level
        return '{"a":' * depth + "1" + "}" * depth
    return '{"event":"media","type":"error","media":' + "[" * depth + "]" * depth + "}"


DEEP = st.tuples(st.just("deep"), st.integers(1, 30_000), st.sampled_from(["[", "{", "field"]))


def substitute(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, list):
        return [substitute(v, names) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, names) for k, v in value.items()}
    return value


def audio_delta(response_id: str, item_id: str, nbytes: int, fill: int = 0xFF) -> str:
    """A valid ``response.output_audio.delta`` of ``nbytes`` of μ-law (8 per ms)."""
    return json.dumps(
        {
            "type": "response.output_audio.delta",
            "event_id": f"event_{item_id}",
            "response_id": response_id,
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "delta": b64(bytes([fill]) * nbytes),
        }
    )


def render(frame: tuple[Any, ...], names: dict[str, str]) -> str | bytes:
    """The wire form of a generated frame."""
    kind = frame[0]
    if kind in ("text", "bytes"):
        return frame[1]  # type: ignore[no-any-return]
    if kind == "deep":
        return deep(frame[1], frame[2])
    if kind == "audio":
        return audio_delta(*frame[1:])
    if kind == "deep_start":
        return deep_start(frame[1], frame[2], names)
    return json.dumps(substitute(frame[1], names))  # "json" and "msg"


def clearly_bad(wire: str | bytes, key: str, binary_is_bad: bool) -> bool:
    """Not a JSON object with a string ``key``: must be counted whatever else happens."""
    if isinstance(wire, bytes) and binary_is_bad:
        return True
    try:
        msg = json.loads(wire)
    except (ValueError, RecursionError):
        return True
    return not isinstance(msg, dict) or not isinstance(msg.get(key), str)


# -- Twilio messages -----------------------------------------------------------------------

SIDS = weighted(
    (8, st.just(SID)),
    (2, st.sampled_from([OTHER_SID, "", "MZ" + "0" * 32, SID + " ", SID.lower()])),
    (1, st.text(max_size=40)),
    (1, VALUES),
)
NUMBERS = st.one_of(
    st.integers(0, 10**6).map(str),  # as Twilio sends them
    st.integers(-(10**6), 10**9),
    st.floats(),  # NaN and ±Infinity too
    st.sampled_from(["1e3", "0x14", "½", "٣", " 7", "+5", "1_000"]),
    WEIRD,
)
MARK_NAMES = st.one_of(
    st.tuples(st.sampled_from("ap"), st.integers(0, 50).map(str)).map("".join),
    st.tuples(st.sampled_from("ap"), st.text(max_size=6)).map("".join),
    # Unicode digits: "٣" is a decimal digit, "²" and "①" are digits but not decimal.
    st.tuples(
        st.sampled_from("ap"),
        st.text(st.sampled_from("0123456789٣۳१²³¹①⑴⒈"), min_size=1, max_size=3),
    ).map("".join),
    st.text(max_size=40),
)


def _twilio_messages() -> st.SearchStrategy[dict[str, Any]]:
    media = st.builds(
        lambda sid, seq, chunk, ts, payload: {
            "event": "media",
            "sequenceNumber": seq,
            "streamSid": sid,
            "media": {"track": "inbound", "chunk": chunk, "timestamp": ts, "payload": payload},
        },
        SIDS,
        NUMBERS,
        NUMBERS,
        NUMBERS,
        PAYLOADS,
    )
    mark = st.builds(
        lambda sid, seq, name: {
            "event": "mark",
            "sequenceNumber": seq,
            "streamSid": sid,
            "mark": {"name": name},
        },
        SIDS,
        NUMBERS,
        MARK_NAMES,
    )
    start = st.builds(
        lambda sid, call, rate, params: {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": sid,
            "start": {
                "streamSid": sid,
                "callSid": call,
                "accountSid": "AC1",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": rate, "channels": 1},
                "customParameters": params,
            },
        },
        SIDS,
        st.sampled_from([CALL, OTHER_CALL, "CA" + "0" * 32]),
        NUMBERS,
        st.dictionaries(st.text(max_size=12), VALUES, max_size=3),
    )
    connected = st.builds(
        lambda proto: {"event": "connected", "protocol": proto, "version": "1.0.0"},
        st.sampled_from(["Call", ""]) | VALUES,
    )
    dtmf = st.builds(
        lambda sid, digit: {
            "event": "dtmf",
            "streamSid": sid,
            "sequenceNumber": "9",
            "dtmf": {"track": "inbound_track", "digit": digit},
        },
        SIDS,
        st.sampled_from("0123456789*#") | st.text(max_size=5),
    )
    stop = st.builds(
        lambda sid, call: {
            "event": "stop",
            "sequenceNumber": "99",
            "streamSid": sid,
            "stop": {"accountSid": "AC1", "callSid": call},
        },
        SIDS,
        st.sampled_from([CALL, OTHER_CALL]),
    )
    unknown = st.builds(
        lambda event, sid: {"event": event, "streamSid": sid},
        st.sampled_from(["clear", "closed", "Media", "media "]) | st.text(max_size=20),
        SIDS,
    )
    # Mostly media and marks, like a real stream; `stop` (it ends the call: a new one
    # costs time) rarely.
    return weighted(
        (6, media), (4, mark), (1, start), (1, connected), (1, dtmf), (1, unknown), (1, stop)
    )


TWILIO_FRAME = weighted(
    (2, st.tuples(st.just("text"), st.text(max_size=300))),
    (2, st.tuples(st.just("bytes"), st.binary(max_size=300))),
    (2, st.tuples(st.just("json"), JSON_ANY)),
    (1, DEEP),
    (12, st.tuples(st.just("msg"), mutated(_twilio_messages()))),
)


# -- Realtime server events ----------------------------------------------------------------

RESPONSE_IDS = st.one_of(st.sampled_from(["resp_1", "resp_2", "resp_3"]), st.text(max_size=12))
ITEM_IDS = st.one_of(st.sampled_from(["item_1", "item_2", "item_3"]), st.text(max_size=12))
FORMATS = st.one_of(
    st.sampled_from(["audio/pcmu", "audio/pcmu", "audio/pcmu", "audio/pcma", "audio/pcm"]),
    VALUES,
)
EVENT_IDS = st.integers(0, 10**6).map(lambda n: f"event_{n}")
MS = st.one_of(st.integers(0, 100_000), WEIRD)


def _server_events() -> st.SearchStrategy[dict[str, Any]]:
    delta = st.builds(
        lambda ev, resp, item, data: {
            "type": "response.output_audio.delta",
            "event_id": ev,
            "response_id": resp,
            "item_id": item,
            "output_index": 0,
            "content_index": 0,
            "delta": data,
        },
        EVENT_IDS,
        RESPONSE_IDS,
        ITEM_IDS,
        PAYLOADS,
    )
    audio_done = st.builds(
        lambda ev, resp, item: {
            "type": "response.output_audio.done",
            "event_id": ev,
            "response_id": resp,
            "item_id": item,
            "output_index": 0,
            "content_index": 0,
        },
        EVENT_IDS,
        RESPONSE_IDS,
        ITEM_IDS,
    )
    speech = st.builds(
        lambda kind, ev, item, ms: {"type": kind, "event_id": ev, "item_id": item, **ms},
        st.sampled_from(
            ["input_audio_buffer.speech_started"] * 3 + ["input_audio_buffer.speech_stopped"]
        ),
        EVENT_IDS,
        ITEM_IDS,
        st.builds(lambda a, b: {"audio_start_ms": a, "audio_end_ms": b}, MS, MS),
    )
    response = st.builds(
        lambda resp, status, details, usage, output: {
            "object": "realtime.response",
            "id": resp,
            "status": status,
            "status_details": details,
            "usage": usage,
            "output": output,
        },
        RESPONSE_IDS,
        st.sampled_from(["in_progress", "completed", "cancelled", "failed", "incomplete"]) | VALUES,
        st.one_of(
            st.none(),
            st.builds(
                lambda reason, code: {
                    "type": "failed",
                    "reason": reason,
                    "error": {"type": "server_error", "code": code},
                },
                VALUES,
                VALUES,
            ),
            VALUES,
        ),
        st.one_of(
            st.none(),
            st.builds(
                lambda t, i, o: {"total_tokens": t, "input_tokens": i, "output_tokens": o},
                NUMBERS,
                NUMBERS,
                NUMBERS,
            ),
            VALUES,
        ),
        st.one_of(st.just([]), st.lists(JSON_ANY, max_size=3), VALUES),
    )
    created = st.builds(
        lambda ev, r: {"type": "response.created", "event_id": ev, "response": r},
        EVENT_IDS,
        response,
    )
    done = st.builds(
        lambda ev, r: {"type": "response.done", "event_id": ev, "response": r},
        EVENT_IDS,
        response,
    )
    error = st.builds(
        lambda ev, kind, code, message, param, about: {
            "type": "error",
            "event_id": ev,
            "error": {
                "type": kind,
                "code": code,
                "message": message,
                "param": param,
                "event_id": about,
            },
        },
        EVENT_IDS,
        st.sampled_from(["invalid_request_error", "server_error"]) | VALUES,
        st.sampled_from(
            [
                "response_cancel_not_active",
                "conversation_already_has_active_response",
                "invalid_value",
                "session_expired",
                "rate_limit_exceeded",
            ]
        )
        | VALUES,
        st.text(max_size=200) | VALUES,
        VALUES,
        VALUES,
    )
    truncated = st.builds(
        lambda ev, item, ms: {
            "type": "conversation.item.truncated",
            "event_id": ev,
            "item_id": item,
            "content_index": 0,
            "audio_end_ms": ms,
        },
        EVENT_IDS,
        ITEM_IDS,
        MS,
    )
    session = st.builds(
        lambda kind, fin, fout, interrupt: {
            "type": kind,
            "event_id": "event_s",
            "session": {
                "type": "realtime",
                "object": "realtime.session",
                "id": "sess_1",
                "model": "gpt-realtime",
                "output_modalities": ["audio"],
                "audio": {
                    "input": {
                        "format": {"type": fin},
                        "turn_detection": {"type": "server_vad", "interrupt_response": interrupt},
                    },
                    "output": {"format": {"type": fout}, "voice": "marin"},
                },
            },
        },
        st.sampled_from(["session.updated", "session.updated", "session.created"]),
        FORMATS,
        FORMATS,
        st.booleans() | VALUES,
    )
    transcript = st.builds(
        lambda kind, item, text: {
            "type": kind,
            "event_id": "event_t",
            "item_id": item,
            "transcript": text,
        },
        st.sampled_from(
            [
                "response.output_audio_transcript.done",
                "conversation.item.input_audio_transcription.completed",
            ]
        ),
        ITEM_IDS,
        st.text(max_size=100) | VALUES,
    )
    timeout = st.builds(
        lambda item: {
            "type": "input_audio_buffer.timeout_triggered",
            "event_id": "event_i",
            "item_id": item,
            "audio_start_ms": 0,
            "audio_end_ms": 5000,
        },
        ITEM_IDS,
    )
    unknown = st.builds(
        lambda kind, body: {"type": kind, **body},
        st.sampled_from(["rate_limits.updated", "response.output_text.delta", "session.update"])
        | st.text(max_size=30),
        st.dictionaries(st.text(max_size=10), VALUES, max_size=3),
    )
    untyped = st.dictionaries(st.text(max_size=10), VALUES, max_size=4)
    return weighted(
        (6, delta),
        (1, audio_done),
        (3, speech),
        (2, created),
        (3, done),
        (2, error),
        (1, truncated),
        (1, session),
        (1, transcript),
        (1, timeout),
        (1, unknown),
        (1, untyped),
    )


UPSTREAM_FRAME = weighted(
    (2, st.tuples(st.just("text"), st.text(max_size=300))),
    (2, st.tuples(st.just("bytes"), st.binary(max_size=300))),
    (2, st.tuples(st.just("json"), JSON_ANY)),
    (1, DEEP),
    # Valid model audio, up to 2 s: keeps the caller's playback busy (barge-ins).
    (2, st.tuples(st.just("audio"), RESPONSE_IDS, ITEM_IDS, st.integers(1, 16_000))),
    # The connection drops: the bridge opens a fresh session, once per call.
    (1, st.tuples(st.just("close"), st.sampled_from([1000, 1001, 1008, 1011, 4000]))),
    (16, st.tuples(st.just("msg"), mutated(_server_events()))),
)


# -- the Twilio side, driven synchronously --------------------------------------------------


def http_get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return int(answer.status)


def webhook_parameters(bridge: Bridge, call_sid: str) -> dict[str, str]:
    """POST the voice webhook as Twilio does; the <Parameter>s of the answer."""
    body = urlencode(call_params(call_sid, "AC1", from_="+15005550006", to="+15005550001"))
    request = urllib.request.Request(bridge.webhook, data=body.encode())
    with urllib.request.urlopen(request, timeout=5) as answer:
        twiml = parse_twiml(answer.read().decode())
    assert twiml.stream_url is not None, "the webhook did not answer with a stream"
    return twiml.parameters


class TwilioSide:
    """One Media Streams connection: what Twilio would send, and all it received."""

    def __init__(self, bridge: Bridge) -> None:
        self.call_sid = new_sid("CA")
        self.stream_sid = new_sid("MZ")
        self.names = {SID: self.stream_sid, CALL: self.call_sid}
        parameters = webhook_parameters(bridge, self.call_sid)
        self._stack = ExitStack()  # connect() is a context manager (websockets >= 17.1)
        self.ws: ClientConnection = self._stack.enter_context(
            sync_connect(
                bridge.ws_url,
                max_size=None,
                max_queue=None,  # never push back on the bridge: received frames are drained
                compression=None,
                proxy=None,
                open_timeout=5,
                close_timeout=2,
                ping_interval=None,
            )
        )
        self.received: list[str | bytes] = []
        self.seq = 1
        self.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        self.send(
            json.dumps(
                {
                    "event": "start",
                    "sequenceNumber": "1",
                    "streamSid": self.stream_sid,
                    "start": {
                        "streamSid": self.stream_sid,
                        "callSid": self.call_sid,
                        "accountSid": "AC1",
                        "tracks": ["inbound"],
                        "mediaFormat": {
                            "encoding": "audio/x-mulaw",
                            "sampleRate": 8000,
                            "channels": 1,
                        },
                        "customParameters": parameters,
                    },
                }
            )
        )

    def send(self, frame: str | bytes) -> bool:
        try:
            self.ws.send(frame)
        except ConnectionClosed:
            return False
        return True

    def media(self, payload: str) -> bool:
        self.seq += 1
        return self.send(
            json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": str(self.seq),
                    "streamSid": self.stream_sid,
                    "media": {
                        "track": "inbound",
                        "chunk": str(self.seq),
                        "timestamp": str(self.seq * 20),
                        "payload": payload,
                    },
                }
            )
        )

    def stop(self) -> None:
        self.send(
            json.dumps({"event": "stop", "sequenceNumber": "999", "streamSid": self.stream_sid})
        )

    def drain(self) -> list[str | bytes]:
        """Messages received since the last drain."""
        new: list[str | bytes] = []
        while True:
            try:
                new.append(self.ws.recv(timeout=0))
            except (TimeoutError, ConnectionClosed):
                break
        self.received += new
        return new

    def close(self) -> None:
        self._stack.close()

    def violations(self, messages: list[str | bytes]) -> list[str]:
        """Messages to Twilio that break its documented shapes (check_outbound)."""
        out: list[str] = []
        for text in messages:
            try:
                msg = json.loads(text)
            except ValueError:
                msg = text
            problem = check_outbound(msg, self.stream_sid)
            if problem:
                out.append(f"{problem}: {str(text)[:200]}")
        return out


_probe_counter = itertools.count(1)


def probe_payload() -> str:
    """A unique 20 ms frame of μ-law (near) silence: proof that a frame crossed the bridge."""
    return b64(next(_probe_counter).to_bytes(4, "big") + b"\xff" * 156)


# -- watching the bridge ---------------------------------------------------------------------


class CrashLog(logging.Handler):
    """Keeps the bridge's "call failed" records: the traceback behind an internal_error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)

    def crash_of(self, call_sid: str) -> BaseException | None:
        for record in reversed(self.records):
            if getattr(record, "call_sid", None) == call_sid and record.exc_info:
                return record.exc_info[1]
        return None


@contextmanager
def crash_log() -> Iterator[CrashLog]:
    handler = CrashLog()
    logger = logging.getLogger("voicebridge")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@dataclass
class Watch:
    """What the bridge did: its results, seen once each, and its crashes."""

    bridge: Bridge
    crashes: CrashLog
    seen: list[CallResult] = field(default_factory=list)

    def results(self) -> list[CallResult]:
        return self.bridge.thread.call(lambda: list(self.bridge.state.last_results))

    def new_results(self) -> list[CallResult]:
        new = [r for r in self.results() if not any(r is s for s in self.seen)]
        self.seen += new
        return new

    def result_of(self, call_sid: str) -> CallResult | None:
        for result in reversed(self.results()):
            if result.call_sid == call_sid:
                return result
        return None

    def stats(self, call_sid: str, kind: str) -> int | None:
        """Sum of a running call's counters (``ignored`` or ``upstream_errors``), or None."""

        def read() -> int | None:
            for call in self.bridge.state.calls:
                if call.core.start is not None and call.core.start.call_sid == call_sid:
                    counts = getattr(call.core.stats, kind)
                    if kind == "upstream_errors":
                        return sum(n for k, n in counts.items() if k.startswith("bad_event:"))
                    return sum(counts.values())
            return None

        return self.bridge.thread.call(read)

    def check_clean(self, results: list[CallResult], context: str) -> None:
        """No call may end in internal_error; raise with the bridge's own traceback."""
        for result in results:
            if result.reason != "internal_error":
                continue
            crash = self.crashes.crash_of(result.call_sid)
            where = "".join(traceback.format_exception(crash)) if crash else "(no traceback)"
            message = f"call {result.call_sid} ended in internal_error after {context}\n{where}"
            if crash is None:
                raise AssertionError(message)
            try:
                raise crash  # as the cause: distinct crashes are distinct Hypothesis failures
            except BaseException as exc:
                raise AssertionError(message) from exc

    def healthy(self) -> None:
        assert http_get(self.bridge.url + "/healthz") == 200


def wait_for(
    arrived: Callable[[], bool], ended: Callable[[], CallResult | None], what: str
) -> CallResult | None:
    """None once ``arrived()``; the call's result if it ended first; fails on a hang."""
    deadline = time.monotonic() + OUTCOME_TIMEOUT
    while True:
        if arrived():
            return None
        result = ended()
        if result is not None:
            return result
        assert time.monotonic() < deadline, f"hang: {what} neither arrived nor did the call end"
        time.sleep(0.002)


def settle(bridge: Bridge, baseline: int, clients: list[TwilioSide]) -> list[str]:
    """Hang up every call; what is wrong once they have ended (tasks left over)."""
    for client in clients:
        client.stop()
        client.close()
    problems: list[str] = []
    deadline = time.monotonic() + 5
    while bridge.thread.call(lambda: bridge.state.active_calls) and time.monotonic() < deadline:
        time.sleep(0.02)
    if bridge.thread.call(lambda: bridge.state.active_calls):
        problems.append("calls still active 5 s after every caller hung up")
    while bridge.task_count() != baseline and time.monotonic() < deadline + 5:
        time.sleep(0.02)
    tasks = bridge.thread.call(lambda: sorted(t.get_name() for t in asyncio.all_tasks()))
    if len(tasks) != baseline:
        problems.append(f"tasks leaked: {len(tasks)} running, {baseline} before ({tasks})")
    return problems


def final_call(bridge: Bridge) -> list[str]:
    report = asyncio.run(place_call(bridge.webhook, packaged_call("books_a_table"), speed=8.0))
    if report.closed_by != "caller" or report.violations:
        return [f"a normal call after the fuzzing failed: {report.closed_by} {report.violations}"]
    return []


def run_fuzz(fuzz: Callable[[], None], after: Callable[[bool], list[str]]) -> None:
    """Run the Hypothesis test, then the end-of-test checks even when the fuzzing failed."""
    failure: BaseException | None = None
    try:
        fuzz()
    except BaseException as exc:
        failure = exc
    problems = after(failure is not None)
    if failure is not None:
        for problem in problems:
            failure.add_note(f"also after the fuzzing: {problem}")
        raise failure
    assert problems == []


# -- 1. Twilio side --------------------------------------------------------------------------


def test_fuzz_twilio_side(fake: FakeRealtimeServer, settings: Settings) -> None:
    """500 examples of 1-5 random or mutated Twilio frames on one live call."""
    with running_bridge(settings) as bridge, crash_log() as crashes:
        watch = Watch(bridge, crashes)
        baseline = bridge.task_count()
        opened: list[TwilioSide] = []

        def open_call() -> tuple[TwilioSide, int]:
            """A new call, once its first probe reached the fake: (client, first session)."""
            first = len(fake.sessions)
            client = TwilioSide(bridge)
            opened.append(client)
            probe = probe_payload()
            client.media(probe)
            ended = wait_for(
                lambda: any(probe in s.appended for s in fake.sessions[first:]),
                lambda: watch.result_of(client.call_sid),
                "a new call's first frame",
            )
            assert ended is None, f"a fresh call ended at once: {ended}"
            return client, first

        bystander, _ = open_call()  # never fuzzed: bad input must not touch it
        current: list[tuple[TwilioSide, int]] = [open_call()]

        @FUZZ
        @given(frames=st.lists(TWILIO_FRAME, min_size=1, max_size=5))
        # Minimal failing inputs found by this test, kept as explicit examples until fixed:
        # RecursionError from json.loads in core/twilio.py parse_twilio.
        @example(frames=[("deep", 20_000, "[")])
        # OverflowError from int(inf) in core/twilio.py _int ("timestamp": Infinity).
        @example(
            frames=[
                (
                    "msg",
                    {
                        "event": "media",
                        "sequenceNumber": "0",
                        "streamSid": SID,
                        "media": {"track": "inbound", "chunk": "0", "timestamp": math.inf},
                    },
                )
            ]
        )
        # ValueError from int("²") in core/playback.py PlaybackTracker.mark_echoed:
        # "²".isdigit() is true, but int() refuses it.
        @example(frames=[("msg", {"event": "mark", "streamSid": SID, "mark": {"name": "a²"}})])
        def fuzz(frames: list[tuple[Any, ...]]) -> None:
            if watch.result_of(current[0][0].call_sid) is not None:  # ended since
                current[0] = open_call()
            client, first = current[0]
            names = {
                **client.names,
                OTHER_SID: bystander.stream_sid,
                OTHER_CALL: bystander.call_sid,
            }
            counted_before = watch.stats(client.call_sid, "ignored")
            wires = [render(f, names) for f in frames]
            bad = sum(clearly_bad(w, "event", binary_is_bad=True) for w in wires)
            for wire in wires:
                if not client.send(wire):
                    break
            probe = probe_payload()
            client.media(probe)
            ended = wait_for(
                lambda: any(probe in s.appended for s in fake.sessions[first:]),
                lambda: watch.result_of(client.call_sid),
                "the probe frame after the fuzzed frames",
            )
            watch.check_clean(watch.new_results(), f"Twilio frames {frames!r}")
            assert client.violations(client.drain()) == []
            watch.healthy()
            if ended is None:
                counted = watch.stats(client.call_sid, "ignored")
                if counted is not None and counted_before is not None:
                    assert counted - counted_before >= bad, "bad frames were not all counted"
            else:
                assert ended.reason != "internal_error"
                current[0] = open_call()

        def after(failed: bool) -> list[str]:
            problems: list[str] = []
            # The bystander saw nothing of the fuzzing and is still alive.
            if watch.result_of(bystander.call_sid) is not None:
                problems.append(f"the bystander call ended: {watch.result_of(bystander.call_sid)}")
            else:
                probe = probe_payload()
                bystander.media(probe)
                try:
                    wait_for(
                        lambda: any(probe in s.appended for s in fake.sessions),
                        lambda: watch.result_of(bystander.call_sid),
                        "the bystander's probe",
                    )
                except AssertionError as exc:
                    problems.append(str(exc))
            problems += settle(bridge, baseline, opened)
            other = watch.result_of(bystander.call_sid)
            if other is None or other.reason != "caller_hangup" or other.stats.ignored:
                problems.append(f"the bystander call was touched: {other}")
            problems += final_call(bridge)
            if not failed:  # else the failure already shows them, each with its traceback
                crashed = [r for r in watch.results() if r.reason == "internal_error"]
                problems += [f"internal_error: {r}" for r in crashed]
            return problems

        run_fuzz(fuzz, after)


# -- 1b. Before `start` is admitted -----------------------------------------------------------

TOKEN = "$TOKEN"  # the stream token the webhook minted for this socket's CallSid
# What is counted when a socket ends before admission: each a refusal, never a call.
REFUSALS = frozenset(
    {
        "missing_token",
        "malformed_token",
        "forged_token",
        "expired_token",
        "reused_token",
        "call_sid_reused",
        "bad_message_before_start",
        "messages_before_start",
        "closed_before_start",
        "stop_before_start",
        "message_too_big",
        "no_start",
    }
)
TOKENS = weighted(
    (4, st.just(TOKEN)),
    (
        2,
        st.sampled_from(
            ["²³⁴⁵⁶⁷⁸⁹⁰.n.m", "١٧٠٠٠٠٠٠٠٠.n.m", "①.n.m", "", ".", "..", "1.a", "9" * 30 + ".n.m"]
        ),
    ),
    (1, st.text(st.sampled_from("0123456789٣۳१²³¹①⑴⒈.-"), max_size=20)),
    (1, st.text(max_size=40)),
    (1, VALUES),
)


def deep_start(depth: int, where: str, names: dict[str, str]) -> str:
    """A `start` with something ``depth`` levels deep (as text: json.dumps would recurse)."""
    nested = '{"a":' * depth + "1" + "}" * depth
    token = json.dumps(names[TOKEN])
    params = {
        "parameter": '{"StreamToken":' + nested + "}",
        "value": '{"StreamToken":' + token + ',"x":' + nested + "}",
    }.get(where, '{"StreamToken":' + token + "}")
    tracks = "[" + nested + "]" if where == "tracks" else '["inbound"]'
    extra = ',"extra":' + nested if where == "extra" else ""
    sid, call = json.dumps(names[SID]), json.dumps(names[CALL])
    return (
        f'{{"event":"start","streamSid":{sid},"start":{{"streamSid":{sid},"callSid":{call},'
        f'"accountSid":"AC1","tracks":{tracks},"customParameters":{params}{extra}}}}}'
    )


def _start_messages() -> st.SearchStrategy[dict[str, Any]]:
    parameters = st.one_of(
        st.builds(lambda token: {"StreamToken": token}, TOKENS),
        st.dictionaries(st.text(max_size=12), VALUES, max_size=3).map(
            lambda extra: {**extra, "StreamToken": TOKEN}
        ),
        st.dictionaries(st.text(max_size=12), st.text(max_size=20), max_size=70),
    )
    return st.builds(
        lambda sid, call, params, tracks: {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": sid,
            "start": {
                "streamSid": sid,
                "callSid": call,
                "accountSid": "AC1",
                "tracks": tracks,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": params,
            },
        },
        SIDS,
        weighted(
            (3, st.just(CALL)), (1, st.sampled_from([OTHER_CALL, "CA" + "0" * 32])), (1, VALUES)
        ),
        parameters,
        weighted((3, st.just(["inbound"])), (1, VALUES)),
    )


PRE_START_FRAME = weighted(
    (3, TWILIO_FRAME),
    (4, st.tuples(st.just("msg"), mutated(_start_messages()))),
    (
        1,
        st.tuples(
            st.just("deep_start"),
            st.integers(1, 1100),
            st.sampled_from(["parameter", "value", "tracks", "extra"]),
        ),
    ),
)


class ErrorLog(logging.Handler):
    """Every ERROR record of the bridge's loggers (a refusal must never write one)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_fuzz_before_start(fake: FakeRealtimeServer, settings: Settings) -> None:
    """300 examples of 0-5 random frames, `start`s with odd tokens and nesting, on a fresh
    socket before admission (then maybe a genuine `start`): admitted, or refused under a known
    reason; never a traceback, an ERROR line or a counted call."""
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    # Unused reservations live STREAM_TOKEN_TTL_S: room for the examples' webhooks.
    with running_bridge(settings, max_calls=400) as bridge, crash_log() as crashes:
        watch = Watch(bridge, crashes)
        baseline = bridge.task_count()
        admitted = [0]

        def counted_calls() -> int:
            return bridge.thread.call(lambda: sum(bridge.state.metrics.outcomes.values()))

        @hypothesis.settings(FUZZ, max_examples=300)
        @given(frames=st.lists(PRE_START_FRAME, max_size=5), then_start=st.booleans())
        # The attacks of issue 15: a `²` expiry, 1000-deep customParameters (each an ERROR
        # traceback, a 1011 and a failed call before).
        @example(
            frames=[
                (
                    "msg",
                    {
                        "event": "start",
                        "start": {
                            "streamSid": SID,
                            "callSid": CALL,
                            "customParameters": {"StreamToken": "²³⁴.n.m"},
                        },
                    },
                )
            ],
            then_start=False,
        )
        @example(frames=[("deep_start", 1000, "parameter")], then_start=True)
        def fuzz(frames: list[tuple[Any, ...]], then_start: bool) -> None:
            call_sid, stream_sid = new_sid("CA"), new_sid("MZ")
            token = webhook_parameters(bridge, call_sid)["StreamToken"]
            names = {SID: stream_sid, CALL: call_sid, TOKEN: token}
            names |= {OTHER_SID: new_sid("MZ"), OTHER_CALL: new_sid("CA")}
            wires = [render(f, names) for f in frames]
            if then_start:
                wires.append(deep_start(1, "none", names))  # Twilio's own `start`, genuine
            with sync_connect(bridge.ws_url, open_timeout=5, close_timeout=2, proxy=None) as ws:
                for wire in wires:
                    try:
                        ws.send(wire)
                    except ConnectionClosed:
                        break
            [result] = wait_results(watch)
            watch.check_clean([result], f"frames before start {frames!r}")
            if result.admitted:
                admitted[0] += 1
                assert result.refused is None
            else:
                assert result.refused in REFUSALS, result
            assert counted_calls() == admitted[0], "a socket refused before admission was counted"
            assert errors.messages == []
            watch.healthy()

        def after(failed: bool) -> list[str]:
            problems = settle(bridge, baseline, [])
            problems += final_call(bridge)
            return problems

        try:
            run_fuzz(fuzz, after)
        finally:
            logging.getLogger().removeHandler(errors)


def wait_results(watch: Watch) -> list[CallResult]:
    """The result of the socket just closed (one), within OUTCOME_TIMEOUT."""
    deadline = time.monotonic() + OUTCOME_TIMEOUT
    while True:
        new = watch.new_results()
        if new:
            return new
        assert time.monotonic() < deadline, "hang: a socket's ending was never reported"
        time.sleep(0.002)


# -- 2. Upstream side ----------------------------------------------------------------------


@dataclass
class UpstreamConn:
    ws: ServerConnection
    received: list[dict[str, Any]] = field(default_factory=list)
    appended: list[str] = field(default_factory=list)
    ready: bool = False  # session.updated sent


class FuzzUpstream:
    """A Realtime API stand-in that answers ``session.update`` and sends what it is told.

    Every connection gets ``session.created``, and a valid GA ``session.updated`` echoing
    the requested session for each ``session.update``; everything else it sends is pushed
    by the test. What it receives is recorded.
    """

    def __init__(self, thread: LoopThread) -> None:
        self.thread = thread
        self.conns: list[UpstreamConn] = []
        self.url = ""
        self._server: Any = None

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            max_size=None,
            compression=None,
            close_timeout=1,
            ping_interval=None,
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/v1/realtime"

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        conn = UpstreamConn(ws)
        self.conns.append(conn)
        session = default_session("gpt-realtime")
        try:
            await ws.send(
                json.dumps({"type": "session.created", "event_id": "ev_c", "session": session})
            )
            async for message in ws:
                event = json.loads(message)
                conn.received.append(event)
                if event.get("type") == "input_audio_buffer.append":
                    conn.appended.append(event.get("audio"))
                elif event.get("type") == "session.update":
                    try:
                        session = apply_session_update(session, event.get("session"))
                    except Exception:  # still echo the formats asked for
                        session = copy.deepcopy(session)
                        session["audio"] = event["session"]["audio"]
                    updated = {"type": "session.updated", "event_id": "ev_u", "session": session}
                    await ws.send(json.dumps(updated))
                    conn.ready = True
        except ConnectionClosed:
            pass

    async def _send(self, frames: list[str | bytes]) -> None:
        ws = self.conns[-1].ws
        for frame in frames:
            try:
                await ws.send(frame)
            except ConnectionClosed:
                return

    async def _close(self, code: int) -> None:
        await self.conns[-1].ws.close(code)

    def send(self, frames: list[str | bytes]) -> None:
        self.thread.run(self._send(frames))

    def close_current(self, code: int) -> None:
        self.thread.run(self._close(code))

    def appended_since(self, first: int) -> Iterator[str]:
        for conn in self.conns[first:]:
            yield from conn.appended


@contextmanager
def running_fuzz_upstream() -> Iterator[FuzzUpstream]:
    thread = LoopThread("fuzz-upstream")
    upstream = FuzzUpstream(thread)
    try:
        thread.run(upstream.start())
        yield upstream
    finally:
        try:
            thread.run(upstream.stop())
        finally:
            thread.stop()


DELTA = {
    "type": "response.output_audio.delta",
    "event_id": "event_0",
    "response_id": "resp_1",
    "item_id": "item_1",
    "output_index": 0,
    "content_index": 0,
    "delta": "",
}
SPEECH_STARTED = {
    "type": "input_audio_buffer.speech_started",
    "event_id": "event_0",
    "item_id": "item_1",
    "audio_start_ms": 0,
}


def sentinel_delta(payload: str) -> str:
    """Model audio that must reach Twilio after everything pushed before it."""
    n = next(_probe_counter)
    return json.dumps(
        {
            "type": "response.output_audio.delta",
            "event_id": f"event_sentinel_{n}",
            "response_id": f"resp_sentinel_{n}",
            "item_id": f"item_sentinel_{n}",
            "output_index": 0,
            "content_index": 0,
            "delta": payload,
        }
    )


def media_payloads(messages: list[str | bytes]) -> set[str]:
    out: set[str] = set()
    for text in messages:
        try:
            msg = json.loads(text)
            if msg.get("event") == "media":
                out.add(msg["media"]["payload"])
        except (ValueError, AttributeError, KeyError, TypeError):
            pass
    return out


def test_fuzz_upstream_side(settings: Settings) -> None:
    """500 examples of 1-5 random or mutated Realtime server events on one live call."""
    with (
        running_fuzz_upstream() as upstream,
        running_bridge(settings, realtime_url=upstream.url) as bridge,
        crash_log() as crashes,
    ):
        watch = Watch(bridge, crashes)
        baseline = bridge.task_count()
        opened: list[TwilioSide] = []

        def open_call() -> tuple[TwilioSide, int]:
            """A new call whose session is ready: (client, index of its first connection)."""
            first = len(upstream.conns)
            client = TwilioSide(bridge)
            opened.append(client)
            probe = probe_payload()
            client.media(probe)
            ended = wait_for(
                lambda: probe in upstream.appended_since(first) and upstream.conns[-1].ready,
                lambda: watch.result_of(client.call_sid),
                "a new call's first frame",
            )
            assert ended is None, f"a fresh call ended at once: {ended}"
            return client, first

        current: list[tuple[TwilioSide, int]] = [open_call()]

        @FUZZ
        @given(frames=st.lists(UPSTREAM_FRAME, min_size=1, max_size=5))
        # Minimal failing inputs found by this test, kept as explicit examples until fixed:
        # RecursionError from json.loads in core/realtime.py parse_realtime.
        @example(frames=[("deep", 20_000, "[")])
        # An empty delta becomes a media message with an empty payload (core/call.py
        # _audio_delta passes deltas through unchecked).
        @example(frames=[("msg", {**DELTA, "delta": ""})])
        # A delta that is not base64 reaches Twilio as it is.
        @example(frames=[("msg", {**DELTA, "delta": "!!!!"})])
        # KeyError in core/call.py CallCore._barge_in: after a fresh upstream session
        # (new_session clears _items) the caller talks over audio still playing from the
        # old one; the item PlaybackTracker names is no longer in CallCore._items.
        @example(
            frames=[
                ("audio", "resp_e", "item_e", 8000),  # 1 s of model audio
                ("close", 1011),  # the upstream drops; the bridge opens a fresh session
                ("msg", {**SPEECH_STARTED, "item_id": "item_x"}),  # the caller talks
            ]
        )
        def fuzz(frames: list[tuple[Any, ...]]) -> None:
            if watch.result_of(current[0][0].call_sid) is not None:  # ended since
                current[0] = open_call()
            client, first = current[0]
            client.drain()
            client.received.clear()  # what came before belongs to the previous example
            counted_before = watch.stats(client.call_sid, "upstream_errors")
            ended: CallResult | None = None
            bad = 0
            batch: list[str | bytes] = []
            for frame in frames:
                if frame[0] != "close":
                    wire = render(frame, {})
                    bad += clearly_bad(wire, "type", binary_is_bad=False)
                    batch.append(wire)
                    continue
                upstream.send(batch)
                batch = []
                bad = 0  # a lost connection may take unread events with it: count from here
                # A dropped upstream: the bridge opens a fresh session once per call.
                conns = len(upstream.conns)
                upstream.close_current(frame[1])
                ended = wait_for(
                    lambda n=conns: len(upstream.conns) > n and upstream.conns[-1].ready,
                    lambda: watch.result_of(client.call_sid),
                    "a fresh upstream session after a dropped one",
                )
                if ended is not None:
                    break
            payload = probe_payload()  # the model's audio, to arrive at Twilio last
            if ended is None:
                upstream.send([*batch, sentinel_delta(payload)])
                probe = probe_payload()
                client.media(probe)
                received: set[str] = set()

                def arrived() -> bool:
                    received.update(media_payloads(client.drain()))
                    return payload in received and probe in upstream.appended_since(first)

                ended = wait_for(
                    arrived,
                    lambda: watch.result_of(client.call_sid),
                    "the sentinel delta at Twilio and a caller frame at the upstream",
                )
            context = f"upstream frames {frames!r}"
            watch.check_clean(watch.new_results(), context)
            client.drain()
            violations = client.violations(client.received)
            client.received.clear()
            empty = [v for v in violations if "empty payload" in v]
            assert empty == [], f"empty media sent to Twilio after {context}"
            assert violations == [], f"malformed messages to Twilio after {context}"
            watch.healthy()
            if ended is None:
                counted = watch.stats(client.call_sid, "upstream_errors")
                if counted is not None and counted_before is not None:
                    assert counted - counted_before >= bad, "bad events were not all counted"
            else:
                assert ended.reason != "internal_error"
                current[0] = open_call()

        def after(failed: bool) -> list[str]:
            problems = settle(bridge, baseline, opened)
            problems += final_call(bridge)
            if not failed:  # else the failure already shows them, each with its traceback
                crashed = [r for r in watch.results() if r.reason == "internal_error"]
                problems += [f"internal_error: {r}" for r in crashed]
            return problems

        run_fuzz(fuzz, after)


@pytest.mark.parametrize("shape", ["[", "{", "field"])
def test_deep_helper_stays_under_the_message_limit(shape: str) -> None:
    """The deepest generated frame still fits in MAX_MESSAGE_BYTES: it reaches the parser."""
    assert len(deep(30_000, shape)) < Settings().max_message_bytes
