"""What anyone on the internet can send before (and after) admission, without sockets: the
parser raises only TwilioProtocolError, tokens parse ASCII only, caller audio is paced."""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.audio import b64
from voicebridge.config import STREAM_SIGNATURE_MODES, Secret, Settings
from voicebridge.core import realtime as rt
from voicebridge.core import twilio as tw
from voicebridge.core.actions import Ignored, SendUpstream
from voicebridge.core.admission import TokenError, mint_token, verify_token
from voicebridge.core.call import CallCore, CallPolicy
from voicebridge.core.call_sids import MemoryCallSids
from voicebridge.doctor.credentials import check_credentials
from voicebridge.doctor.report import Report
from voicebridge.errors import ConfigError, TwilioProtocolError
from voicebridge.logs import JsonFormatter, TextFormatter
from voicebridge.server.guard import REJECT_LOG_LINES, Guard
from voicebridge.server.recorder import CallRecorder

SECRET = b"a-unit-test-stream-token-secret-0123"
FRAME = b64(b"\x7f" * 160)  # 20 ms of μ-law


def nested(depth: int) -> str:
    """JSON text of an object ``depth`` levels deep (json.dumps itself would recurse)."""
    return '{"a":' * depth + '"x"' + "}" * depth


def start(**fields: str) -> str:
    """A `start` message; each keyword is a field of ``start`` as raw JSON text."""
    body = {
        "streamSid": '"MZ1"',
        "callSid": '"CA1"',
        "accountSid": '"AC1"',
        "tracks": '["inbound"]',
        "mediaFormat": '{"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}',
        "customParameters": '{"StreamToken": "1.a.b"}',
    }
    body.update(fields)
    inner = ",".join(f'"{key}":{value}' for key, value in body.items())
    return '{"event":"start","streamSid":"MZ1","start":{' + inner + "}}"


HOSTILE_STARTS = {
    "deep_parameter": {"customParameters": '{"StreamToken":' + nested(1000) + "}"},
    "nested_parameter": {"customParameters": '{"x": [[[[1]]]]}'},
    "number_parameter": {"customParameters": '{"x": 1}'},
    "65_parameters": {"customParameters": json.dumps({f"p{n}": "v" for n in range(65)})},
    "long_parameter": {"customParameters": json.dumps({"p": "v" * 1000})},
    "parameters_list": {"customParameters": '["StreamToken"]'},
    "deep_tracks": {"tracks": "[" + ",".join([nested(1000)] * 5) + "]"},
    "tracks_object": {"tracks": nested(1000)},
    "deep_sample_rate": {"mediaFormat": '{"sampleRate":' + nested(1000) + "}"},
    "media_format_list": {"mediaFormat": "[" + nested(1000) + "]"},
    "deep_call_sid": {"callSid": nested(1000)},
    "long_call_sid": {"callSid": json.dumps("CA" + "0" * 100)},
    "long_stream_sid": {"streamSid": json.dumps("MZ" + "0" * 100)},
    "deep_account_sid": {"accountSid": nested(1000)},
}


@pytest.mark.parametrize("fields", HOSTILE_STARTS.values(), ids=HOSTILE_STARTS.keys())
def test_a_hostile_start_raises_only_a_protocol_error(fields: dict[str, str]) -> None:
    """Deep, huge or mistyped `start` fields are a TwilioProtocolError, never a RecursionError."""
    with pytest.raises(TwilioProtocolError) as info:
        tw.parse_twilio(start(**fields))
    assert info.value.reason in ("bad_shape", "oversized_field")
    str(info.value)  # and its text is safe to log


def test_deep_values_elsewhere_are_never_stringified() -> None:
    """A deep `protocol`, `encoding` or track is dropped, not rendered: no RecursionError."""
    deep = nested(1000)
    connected = tw.parse_twilio('{"event":"connected","protocol":' + deep + "}")
    assert connected == tw.Connected("")
    event = tw.parse_twilio(start(mediaFormat='{"encoding":' + deep + "}", tracks=f"[{deep}]"))
    assert isinstance(event, tw.Start)
    assert event.encoding == "audio/x-mulaw" and event.tracks == ("",)
    str(event)
    unknown = tw.parse_twilio('{"event":"' + "x" * 10_000 + '","more":' + deep + "}")
    assert unknown == tw.Unknown("x" * tw.MAX_SHORT_TEXT)


def test_a_twilio_start_still_parses() -> None:
    """Twilio's own `start`, parameters at the documented limit, passes the bounds."""
    params = {"From": "+14155550123", "To": "+18005550100", "Long": "v" * 490}
    event = tw.parse_twilio(start(customParameters=json.dumps(params)))
    assert isinstance(event, tw.Start) and event.custom_parameters == params


@pytest.mark.parametrize(
    "expiry", ["²", "²³", "٣", "①", "1²", "\U0001d7e3", "1" * 13, "-1", " 1", "1.5"]
)
def test_token_expiry_in_anything_but_ascii_digits_is_malformed(expiry: str) -> None:
    """`²`.isdigit() is true but int() refuses it: the token is malformed, nothing raises."""
    with pytest.raises(TokenError) as info:
        verify_token(SECRET, f"{expiry}.nonce.mac", "CA1", time.time())
    assert info.value.reason == "malformed_token"


@pytest.mark.parametrize("token", ["1.a\ud800.b", "1.é.b", "1.a.b\x00", "." * 2, "1.a.b.c"])
def test_odd_tokens_are_refused_with_a_reason(token: str) -> None:
    """A lone surrogate, non-ASCII or the wrong number of parts: a TokenError, never another."""
    with pytest.raises(TokenError):
        verify_token(SECRET, token, "CA1", time.time())


def test_a_non_ascii_call_sid_is_refused_not_raised() -> None:
    """A CallSid that cannot be encoded for the MAC is a refusal."""
    token = mint_token(SECRET, "CA1", time.time(), 60)
    with pytest.raises(TokenError):
        verify_token(SECRET, token, "CA\ud800", time.time())
    assert verify_token(SECRET, token, "CA1", time.time())


def test_client_text_logs_on_one_line() -> None:
    """A forged line in an event name stays on the line it came in (text logs)."""
    import logging

    record = logging.LogRecord(
        "t", logging.WARNING, __file__, 1, "bad %s", ("a\n2026 ERROR x",), None
    )
    assert "\n" not in TextFormatter().format(record)


# -- caller audio paced to real time --------------------------------------------------------


def streaming_core(burst_ms: float = 2000.0) -> CallCore:
    core = CallCore(
        rt.SessionConfig(instructions="hi", voice="marin"), CallPolicy(caller_burst_ms=burst_ms)
    )
    core.receive_twilio(tw.parse_twilio(start()), 0.0)
    return core


def media(n: int) -> tw.Media:
    return tw.Media("MZ1", n * 20, FRAME, n)


def forwarded(actions: list[Any]) -> int:
    return sum(isinstance(a, SendUpstream) and a.audio for a in actions)


def test_a_flood_is_held_to_real_time_plus_the_burst() -> None:
    """10 s of caller audio in 100 ms (100x): about 2.1 s go upstream, the rest is counted."""
    core = streaming_core()
    actions = [a for n in range(500) for a in core.receive_twilio(media(n), n * 0.2)]
    sent = forwarded(actions)
    assert sent * 20 <= 2000 + 100 + 20
    assert core.stats.caller_paced_dropped == 500 - sent
    assert [a for a in actions if isinstance(a, Ignored)] == [
        Ignored("caller_audio_faster_than_real_time")
    ]  # one log line per call
    # The call goes on: at real time again, every frame passes.
    later = [core.receive_twilio(media(500 + n), 5000.0 + n * 20) for n in range(100)]
    assert all(forwarded(a) == 1 for a in later)


def test_real_time_with_jitter_and_a_hiccup_never_drops() -> None:
    """A minute of Twilio's cadence, with jitter and a 1.5 s stall caught up at once: all pass."""
    core = streaming_core()
    n, sent = 0, 0
    for n in range(3000):
        at = n * 20.0 + (7.0 if n % 3 else -5.0)  # jitter
        if 1000 <= n < 1075:
            at = 1075 * 20.0  # a 1.5 s hiccup, then what was held back arrives at once
        sent += forwarded(core.receive_twilio(media(n), at))
    assert sent == 3000 and core.stats.caller_paced_dropped == 0


def test_pacing_off_forwards_everything() -> None:
    """CALLER_BURST_MS=0 (an infinite credit) forwards a flood untouched."""
    core = streaming_core(burst_ms=float("inf"))
    assert sum(forwarded(core.receive_twilio(media(n), 0.0)) for n in range(5000)) == 5000


# -- a CallSid opens one call ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_call_sid_is_claimed_once_within_its_window() -> None:
    """The first claim wins; later ones fail until the memory window has passed."""
    clock = Clock()
    sids = MemoryCallSids(4 * 3600, clock)
    assert not await sids.had_call("CA1")
    assert await sids.claim("CA1") and not await sids.claim("CA1")
    assert await sids.had_call("CA1") and not await sids.had_call("CA2")
    clock.now += 4 * 3600 - 1
    assert not await sids.claim("CA1")
    clock.now += 2
    assert not await sids.had_call("CA1") and await sids.claim("CA1")


async def test_the_memory_is_bounded_oldest_first_and_off_at_zero() -> None:
    """At the limit the oldest CallSid goes; CALL_SID_MEMORY_S=0 remembers none."""
    sids = MemoryCallSids(3600, Clock(), limit=3)
    for n in range(5):
        assert await sids.claim(f"CA{n}")
    assert len(sids) == 3 and not await sids.had_call("CA0") and await sids.had_call("CA4")
    off = MemoryCallSids(0, Clock())
    assert await off.claim("CA1") and await off.claim("CA1") and len(off) == 0


# -- refusal lines rationed ---------------------------------------------------------------------


def test_refusal_lines_are_rationed_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    """Each reason gets a few lines a minute; the rest are counted, then summed in one line."""
    guard = Guard(Settings())
    with caplog.at_level(logging.WARNING, "voicebridge.server.guard"):
        for _ in range(1000):
            guard.reject("malformed_token", "/realtime start", "10.0.0.1")
        guard.reject("missing_token", "/realtime start", "10.0.0.1")
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == REJECT_LOG_LINES + 1
        guard._window_ends = 0.0  # the minute is over
        guard.reject("missing_token", "/realtime start", "10.0.0.1")
    assert guard.rejected == {"malformed_token": 1000, "missing_token": 2}
    summary = caplog.records[-2].getMessage()
    assert summary == f"also rejected, without a line each: malformed_token: {1000 - 5}"


# -- no secret in a log line --------------------------------------------------------------------

KEY = "sk-proj-unit+KEY/never=printed-0123456789"


def test_every_log_line_is_redacted_text_and_json() -> None:
    """A key in a message, an argument or an exception's text never reaches the line."""
    url = "wss://h.example/v1/realtime?api-key=" + quote(KEY, safe="") + "&model=m"
    settings = Settings(openai_api_key=Secret(KEY), realtime_url=url)
    secrets = settings.secret_values()
    try:
        raise ValueError(f"{url} isn't a valid URI")  # as websockets' InvalidURI words it
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "websockets.client",
        logging.DEBUG,
        __file__,
        1,
        "> %s: Bearer %s",
        ("Authorization", KEY),
        exc_info,
    )
    for formatter in (TextFormatter(secrets), JsonFormatter(secrets)):
        line = formatter.format(record)
        assert "Bearer ****" in line and "sk-proj" not in line and "%2B" not in line
    assert all(len(s) >= 8 for s in secrets)


def test_config_errors_and_connect_errors_mask_the_url() -> None:
    """REALTIME_URL's query is masked in start-up errors (doctor prints them too)."""
    for url in ("http://h.example/v1?api-key=" + KEY, "ws://h.example/v1?api-key=" + KEY + "#x"):
        with pytest.raises(ConfigError) as info:
            Settings.from_env({"REALTIME_URL": url})
        assert KEY not in str(info.value) and "api-key=***" in str(info.value)


async def test_a_deep_start_is_recorded_without_its_token(tmp_path: Path) -> None:
    """A `start` nested too deeply to rewrite is recorded as a placeholder, never raw."""
    recorder = CallRecorder(str(tmp_path), "CA1")
    params = json.dumps({"StreamToken": "1.secret-nonce.mac", "From": "+14155550123"})
    recorder.inbound(start(customParameters=params, extra=nested(300)))
    recorder.inbound('{"event":"media","media":' + nested(1000) + "}")
    await recorder.finish(0.0)
    text = recorder.messages_path.read_text()
    assert "secret-nonce" not in text and "4155550123" not in text


def test_the_edge_settings_are_documented() -> None:
    """TWILIO_STREAM_SIGNATURE, CALL_SID_MEMORY_S and CALLER_BURST_MS: README's Settings table
    and .env.example give their defaults."""
    root = Path(__file__).resolve().parents[2]
    readme, example = (root / "README.md").read_text(), (root / ".env.example").read_text()
    defaults = Settings()
    for name, value in {
        "TWILIO_STREAM_SIGNATURE": defaults.twilio_stream_signature,
        "CALL_SID_MEMORY_S": defaults.call_sid_memory_s,
        "CALLER_BURST_MS": defaults.caller_burst_ms,
    }.items():
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        assert f"| `{name}` | `{shown}` |" in readme, name
        assert f"\n{name}={shown}\n" in example, name


@pytest.mark.parametrize("mode", ["", "require", "if-present", "off", "sometimes"])
def test_doctor_and_the_start_up_line_say_which_handshake_mode_is_on(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`voicebridge doctor` names TWILIO_STREAM_SIGNATURE's mode (and what `require` risks), or
    fails on a wrong one; the start-up log names it too."""
    out = io.StringIO()
    environ = {"TWILIO_AUTH_TOKEN": "0123456789abcdef0123456789abcdef"}
    check_credentials(Report(out), {**environ, "TWILIO_STREAM_SIGNATURE": mode})
    text = out.getvalue()
    if mode == "sometimes":
        assert "[FAIL] TWILIO_STREAM_SIGNATURE='sometimes'" in text
        return
    shown = mode or "if-present"
    assert f"TWILIO_STREAM_SIGNATURE={shown}: {STREAM_SIGNATURE_MODES[shown]}" in text
    assert ("every call fails" in text) == (mode == "require")
    settings = Settings(
        twilio_auth_token=Secret(environ["TWILIO_AUTH_TOKEN"]),
        public_url="https://voice.example.com",
        twilio_stream_signature=shown,
    )
    with caplog.at_level(logging.INFO, "voicebridge.server.guard"):
        Guard(settings).warn_at_startup()
    assert f"TWILIO_STREAM_SIGNATURE={shown}: " in caplog.text
