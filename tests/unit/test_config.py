"""Settings: defaults, environment variables, validation, derived URLs and secret masking."""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from voicebridge.config import (
    DEFAULT_FAILURE_SAY,
    DEFAULT_INSTRUCTIONS,
    Secret,
    Settings,
    load_environ,
)
from voicebridge.errors import ConfigError

KEY = "sk-proj-THIS-MUST-NEVER-BE-PRINTED-1234"

# Every variable Settings.from_env reads: (value to set, attribute, expected attribute value).
ENV_VARS: dict[str, tuple[str, str, Any]] = {
    "OPENAI_API_KEY": (f"  {KEY} ", "openai_api_key", Secret(KEY)),
    "REALTIME_URL": (
        "ws://127.0.0.1:9000/v1/realtime",
        "realtime_url",
        "ws://127.0.0.1:9000/v1/realtime",
    ),
    "REALTIME_MODEL": ("gpt-realtime-2", "realtime_model", "gpt-realtime-2"),
    "VOICE": ("cedar", "voice", "cedar"),
    "INSTRUCTIONS": ("Talk like a pirate.", "instructions", "Talk like a pirate."),
    "PUBLIC_URL": ("https://voice.example.com/", "public_url", "https://voice.example.com"),
    "WELCOME_SAY": ("Hello!", "welcome_say", "Hello!"),
    "FAILURE_SAY": ("Oops.", "failure_say", "Oops."),
    "HOST": ("127.0.0.1", "host", "127.0.0.1"),
    "PORT": ("9001", "port", 9001),
    "FORWARDED_ALLOW_IPS": ("*", "forwarded_allow_ips", "*"),
    "LOG_LEVEL": ("debug", "log_level", "DEBUG"),
    "START_TIMEOUT_S": ("2.5", "start_timeout_s", 2.5),
    "UPSTREAM_CONNECT_TIMEOUT_S": ("1.25", "upstream_connect_timeout_s", 1.25),
    "CALLER_QUEUE_FRAMES": ("17", "caller_queue_frames", 17),
    "PLAYBACK_QUEUE_CHUNKS": ("33", "playback_queue_chunks", 33),
    "BUSY_SAY": ("Busy.", "busy_say", "Busy."),
    "TWILIO_AUTH_TOKEN": ("tw-token", "twilio_auth_token", Secret("tw-token")),
    "STREAM_TOKEN_SECRET": ("s" * 32, "stream_token_secret", Secret("s" * 32)),
    "STREAM_TOKEN_TTL_S": ("30", "stream_token_ttl_s", 30.0),
    "MAX_CALLS": ("7", "max_calls", 7),
    "MAX_MESSAGE_BYTES": ("4096", "max_message_bytes", 4096),
    "HTTP_MAX_HEADER_BYTES": ("32768", "http_max_header_bytes", 32768),
    "HTTP_MAX_HEADER_LINE_BYTES": ("8192", "http_max_header_line_bytes", 8192),
    "HTTP_MAX_REQUEST_LINE_BYTES": ("4096", "http_max_request_line_bytes", 4096),
    "HTTP_HEADER_TIMEOUT_S": ("2.5", "http_header_timeout_s", 2.5),
    "HTTP_BODY_TIMEOUT_S": ("3", "http_body_timeout_s", 3.0),
    "HTTP_KEEP_ALIVE_TIMEOUT_S": ("75", "http_keep_alive_timeout_s", 75),
    "HTTP_MAX_CONNECTIONS": ("200", "http_max_connections", 200),
    "UPSTREAM_AUDIO": ("PCM24K", "upstream_audio", "pcm24k"),
    "TURN_DETECTION": ("semantic_vad", "turn_detection", "semantic_vad"),
    "VAD_THRESHOLD": ("0.7", "vad_threshold", 0.7),
    "VAD_PREFIX_PADDING_MS": ("200", "vad_prefix_padding_ms", 200),
    "VAD_SILENCE_MS": ("800", "vad_silence_ms", 800),
    "VAD_EAGERNESS": ("high", "vad_eagerness", "high"),
    "INTERRUPT_RESPONSE": ("false", "interrupt_response", False),
    "CREATE_RESPONSE": ("no", "create_response", False),
    "NOISE_REDUCTION": ("far_field", "noise_reduction", "far_field"),
    "TRANSCRIPTION_MODEL": ("gpt-live-transcribe", "transcription_model", "gpt-live-transcribe"),
    "GREETING_INSTRUCTIONS": ("Say hello.", "greeting_instructions", "Say hello."),
    "IDLE_TIMEOUT_MS": ("8000", "idle_timeout_ms", 8000),
    "IDLE_REPROMPTS": ("1", "idle_reprompts", 1),
    "IDLE_GOODBYE_INSTRUCTIONS": ("Bye now.", "idle_goodbye_instructions", "Bye now."),
    "APOLOGY_INSTRUCTIONS": ("Sorry!", "apology_instructions", "Sorry!"),
    "MEDIA_GAP_MS": ("250", "media_gap_ms", 250),
    "LOCAL_BARGE_IN": ("off", "local_barge_in", False),
    "LOCAL_BARGE_IN_MIN_SPEECH_MS": ("80", "local_barge_in_min_speech_ms", 80),
    "LOCAL_BARGE_IN_WINDOW_MS": ("900", "local_barge_in_window_ms", 900),
    "LOCAL_BARGE_IN_REWIND_MS": ("0", "local_barge_in_rewind_ms", 0),
    "REALTIME_AUTH": ("API-KEY", "realtime_auth", "api-key"),
    "UPSTREAM_STALL_TIMEOUT_S": ("4", "upstream_stall_timeout_s", 4.0),
    "UPSTREAM_RECONNECT": ("false", "upstream_reconnect", False),
    "RECONNECT_TIMEOUT_S": ("2.5", "reconnect_timeout_s", 2.5),
    "SESSION_LIMIT_S": ("600", "session_limit_s", 600.0),
    "SESSION_LIMIT_ACTION": ("renew", "session_limit_action", "renew"),
    "CLOSING_INSTRUCTIONS": ("Bye.", "closing_instructions", "Bye."),
    "CLOSING_TIMEOUT_S": ("3", "closing_timeout_s", 3.0),
    "DRAIN_TIMEOUT_S": ("5", "drain_timeout_s", 5.0),
    "SHUTDOWN_TIMEOUT_S": ("30", "shutdown_timeout_s", 30.0),
    "LOG_FORMAT": ("JSON", "log_format", "json"),
    "LOG_WIRE": ("on", "log_wire", True),
    "METRICS_TOKEN": ("m-token", "metrics_token", Secret("m-token")),
    "TWILIO_ACCOUNT_SID": ("AC" + "a" * 32, "twilio_account_sid", "AC" + "a" * 32),
    "TWILIO_API_BASE": ("http://127.0.0.1:9/", "twilio_api_base", "http://127.0.0.1:9"),
    "RECORD_DIR": ("/tmp/calls", "record_dir", "/tmp/calls"),
    "END_CALL_TOOL": ("off", "end_call_tool", False),
    "TRANSFER_DESTINATIONS": ("sales=+14155550100", "transfer_destinations", "sales=+14155550100"),
    "CUSTOM_TOOLS": ("my.tools:TOOLS", "custom_tools", "my.tools:TOOLS"),
    "TOOL_TIMEOUT_S": ("2", "tool_timeout_s", 2.0),
    "GOODBYE_INSTRUCTIONS": ("Bye!", "goodbye_instructions", "Bye!"),
    "TRANSFER_INSTRUCTIONS": ("Hold on.", "transfer_instructions", "Hold on."),
    "TWILIO_STREAM_SIGNATURE": ("REQUIRE", "twilio_stream_signature", "require"),
    "CALL_SID_MEMORY_S": ("0", "call_sid_memory_s", 0.0),
    "CALLER_BURST_MS": ("500", "caller_burst_ms", 500),
    "REDIS_URL": ("redis://cache:6379/0", "redis_url", "redis://cache:6379/0"),
    "MAX_CALLS_TOTAL": ("9", "max_calls_total", 9),
    "WEB_CONCURRENCY": ("2", "workers", 2),
    "REALTIME_CA_FILE": (__file__, "realtime_ca_file", __file__),
    "SAY_LANGUAGE": ("de-DE", "say_language", "de-DE"),
    "TWILIO_API_KEY_SID": ("SK" + "b" * 32, "twilio_api_key_sid", "SK" + "b" * 32),
    "TWILIO_API_KEY_SECRET": ("k-secret", "twilio_api_key_secret", Secret("k-secret")),
    "PROFILES_FILE": (__file__, "profiles_file", __file__),
    "TOOLS_FILE": (__file__, "tools_file", __file__),
    "SIGNING_SECRET": ("s" * 32, "signing_secret", Secret("s" * 32)),
    "TOOL_HOLDING_DELAY_S": ("0", "tool_holding_delay_s", 0.0),
    "TOOL_HOLDING_INSTRUCTIONS": ("Hold on.", "tool_holding_instructions", "Hold on."),
    "TOOL_LOG_ARGUMENTS": ("yes", "tool_log_arguments", True),
    "CALL_EVENTS_URL": ("https://b.example/ev", "call_events_url", "https://b.example/ev"),
    "CALL_EVENTS_QUEUE": ("10", "call_events_queue", 10),
    "CALL_EVENTS_RETRY_S": ("30", "call_events_retry_s", 30.0),
    "API_TOKEN": ("api-token", "api_token", Secret("api-token")),
    "OUTBOUND_CALLER_ID": ("+14155550100", "outbound_caller_id", "+14155550100"),
    "OUTBOUND_ALLOW": ("+1415,+44", "outbound_allow", "+1415,+44"),
    "OUTBOUND_CALLS_PER_S": ("5", "outbound_calls_per_s", 5.0),
    "VOICEMAIL_MESSAGE": ("Call us back.", "voicemail_message", "Call us back."),
}
# Variables that are only valid together with another one.
# (IDLE_TIMEOUT_MS needs server_vad, the default.)
REQUIRES = {
    "TWILIO_AUTH_TOKEN": {"PUBLIC_URL": "https://voice.example.com"},
    "TWILIO_ACCOUNT_SID": {"TWILIO_AUTH_TOKEN": "tw-token", "PUBLIC_URL": "https://x.example"},
    "IDLE_GOODBYE_INSTRUCTIONS": {"IDLE_TIMEOUT_MS": "8000"},
    "MAX_CALLS_TOTAL": {"REDIS_URL": "redis://cache:6379/0"},
    "TWILIO_API_KEY_SID": {"TWILIO_API_KEY_SECRET": "k", "TWILIO_ACCOUNT_SID": "AC" + "a" * 32},
    "TWILIO_API_KEY_SECRET": {
        "TWILIO_API_KEY_SID": "SK" + "b" * 32,
        "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
    },
    "CALL_EVENTS_URL": {"SIGNING_SECRET": "s" * 32},
    "API_TOKEN": {"OUTBOUND_CALLER_ID": "+14155550100", "PUBLIC_URL": "https://x.example"},
}


def from_env(**environ: str) -> Settings:
    return Settings.from_env(environ)


# -- defaults and variables -----------------------------------------------------------


def test_defaults() -> None:
    """An empty environment gives the documented defaults."""
    s = Settings.from_env({})
    assert s == Settings()
    assert not s.openai_api_key
    assert s.realtime_url == "wss://api.openai.com/v1/realtime"
    assert s.realtime_model == "gpt-realtime-2.1"
    assert s.voice == "marin"
    assert s.instructions == DEFAULT_INSTRUCTIONS
    assert s.public_url is None
    assert s.welcome_say == ""
    assert s.failure_say == DEFAULT_FAILURE_SAY
    assert (s.host, s.port) == ("0.0.0.0", 8000)
    assert s.forwarded_allow_ips == "127.0.0.1"
    assert s.log_level == "INFO"
    assert (s.start_timeout_s, s.upstream_connect_timeout_s) == (10.0, 5.0)
    assert (s.caller_queue_frames, s.playback_queue_chunks) == (250, 600)


def test_blank_values_mean_default() -> None:
    """Variables set to an empty or blank string fall back to their defaults; but for
    TRANSCRIPTION_MODEL, which is on by default: set empty, it is off."""
    blank = Settings.from_env({name: "  " for name in ENV_VARS})
    assert blank == Settings(transcription_model="")


def test_auth_token_requires_public_url() -> None:
    """With TWILIO_AUTH_TOKEN, start-up refuses without PUBLIC_URL and says why."""
    with pytest.raises(ConfigError, match="PUBLIC_URL"):
        Settings.from_env({"TWILIO_AUTH_TOKEN": "tw-token"})


def test_stream_token_secret_generated_when_absent() -> None:
    """Without STREAM_TOKEN_SECRET each process gets a random one, and says so."""
    a, b = Settings.from_env({}), Settings.from_env({})
    assert a.stream_token_secret_generated and a.stream_token_secret != b.stream_token_secret
    fixed = Settings.from_env({"STREAM_TOKEN_SECRET": "x" * 32})
    assert not fixed.stream_token_secret_generated
    with pytest.raises(ConfigError, match="STREAM_TOKEN_SECRET"):
        Settings.from_env({"STREAM_TOKEN_SECRET": "short"})


def test_the_variable_table_covers_from_env() -> None:
    """Every upper-case variable name in the Settings.from_env source is exercised by this file."""
    source = inspect.getsource(Settings.from_env)
    names = set(re.findall(r'"([A-Z][A-Z0-9_]*)"', source))
    assert names == set(ENV_VARS)


@pytest.mark.parametrize("name", sorted(ENV_VARS))
def test_each_variable_is_read(name: str) -> None:
    """Setting one variable changes exactly its setting to the parsed value."""
    raw, attr, expected = ENV_VARS[name]
    s = Settings.from_env({name: raw, **REQUIRES.get(name, {})})
    assert getattr(s, attr) == expected
    assert getattr(s, attr) != getattr(Settings(), attr)


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "http"),
        ("PORT", "80.5"),
        ("PORT", "0"),
        ("PORT", "-1"),
        ("PORT", "65536"),
        ("START_TIMEOUT_S", "-1"),
        ("START_TIMEOUT_S", "0"),
        ("START_TIMEOUT_S", "soon"),
        ("UPSTREAM_CONNECT_TIMEOUT_S", "-0.5"),
        ("CALLER_QUEUE_FRAMES", "-3"),
        ("PLAYBACK_QUEUE_CHUNKS", "1.5"),
        ("REALTIME_URL", "http://api.openai.com/v1/realtime"),
        ("REALTIME_URL", "https://api.openai.com/v1/realtime"),
        ("REALTIME_URL", "wss:///v1/realtime"),
        ("PUBLIC_URL", "wss://voice.example.com"),
        ("PUBLIC_URL", "ws://localhost:8000"),
        ("PUBLIC_URL", "http://example.com"),
        ("PUBLIC_URL", "https://voice.example.com/?token=abc"),
        ("PUBLIC_URL", "https://voice.example.com/#frag"),
        ("PUBLIC_URL", "voice.example.com"),
        ("LOG_LEVEL", "verbose"),
        ("HTTP_MAX_HEADER_BYTES", "4096"),  # below the 8 KiB floor: Twilio plus a proxy
        ("HTTP_MAX_HEADER_LINE_BYTES", "131072"),  # longer than the whole section
        ("HTTP_MAX_REQUEST_LINE_BYTES", "512"),
        ("HTTP_HEADER_TIMEOUT_S", "0"),
        ("HTTP_KEEP_ALIVE_TIMEOUT_S", "0.5"),  # whole seconds (uvicorn's timeout_keep_alive)
        ("HTTP_MAX_CONNECTIONS", "50"),  # no more than MAX_CALLS' 50 calls
        ("TWILIO_STREAM_SIGNATURE", "sometimes"),
        ("CALL_SID_MEMORY_S", "-1"),
        ("CALL_SID_MEMORY_S", "inf"),
        ("CALL_SID_MEMORY_S", "4h"),
        ("CALLER_BURST_MS", "-1"),
        ("CALLER_BURST_MS", "2.5"),
        ("REDIS_URL", "cache:6379"),
        ("MAX_CALLS_TOTAL", "4"),  # without REDIS_URL: no cluster to cap
        ("MAX_CALLS_TOTAL", "-1"),
        ("WEB_CONCURRENCY", "0"),
        ("WEB_CONCURRENCY", "51"),  # more workers than MAX_CALLS' 50 slots
        ("REALTIME_CA_FILE", "/no/such/ca.pem"),
        ("API_TOKEN", "t"),  # without OUTBOUND_CALLER_ID and PUBLIC_URL
        ("OUTBOUND_CALLER_ID", "4155550100"),
        ("OUTBOUND_CALLS_PER_S", "0"),
    ],
)
def test_invalid_value_raises_config_error_naming_the_variable(name: str, value: str) -> None:
    """An invalid value raises ConfigError whose message names the variable."""
    with pytest.raises(ConfigError, match=rf"\b{name}\b"):
        Settings.from_env({name: value})


@pytest.mark.parametrize("name", ["START_TIMEOUT_S", "UPSTREAM_CONNECT_TIMEOUT_S"])
def test_nan_timeout_is_rejected(name: str) -> None:
    """A timeout of 'nan' is not a positive number of seconds and raises ConfigError."""
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: "nan"})


@pytest.mark.parametrize(
    "value",
    [
        "http://localhost:8000",
        "http://127.0.0.1:8000",
        "http://[::1]:8000",
        "https://voice.example.com",
        "https://example.com/prefix",
    ],
)
def test_public_url_allowed(value: str) -> None:
    """https URLs, and http only on the local host, are accepted as PUBLIC_URL."""
    assert Settings.from_env({"PUBLIC_URL": value}).public_url == value


def test_public_url_trailing_slashes_removed() -> None:
    """Trailing slashes of PUBLIC_URL are removed, the path prefix kept."""
    s = Settings.from_env({"PUBLIC_URL": " https://example.com/voice// "})
    assert s.public_url == "https://example.com/voice"


def test_validate_applies_to_direct_construction() -> None:
    """validate() checks a Settings built in code, not only from the environment."""
    with pytest.raises(ConfigError, match="PUBLIC_URL"):
        Settings(public_url="http://example.com").validate()
    Settings(public_url="https://example.com").validate()


# -- upstream URL and can-serve check -------------------------------------------------


def test_upstream_url_adds_the_model() -> None:
    """The default URL gets ?model=REALTIME_MODEL."""
    s = Settings.from_env({"REALTIME_MODEL": "gpt-realtime-2"})
    assert s.upstream_url() == "wss://api.openai.com/v1/realtime?model=gpt-realtime-2"


def test_upstream_url_keeps_other_query_parameters() -> None:
    """Existing query parameters stay, in order, and model is appended."""
    s = Settings(realtime_url="wss://res.openai.azure.com/openai/v1/realtime?foo=bar&x=1%2F2")
    url = s.upstream_url()
    assert url.startswith("wss://res.openai.azure.com/openai/v1/realtime?")
    assert url.split("?", 1)[1] == "foo=bar&x=1%2F2&model=gpt-realtime-2.1"


def test_upstream_url_with_a_model_is_left_alone() -> None:
    """A URL that already names a model is returned unchanged."""
    url = "wss://api.openai.com/v1/realtime?model=gpt-realtime-mini&x=1"
    assert Settings(realtime_url=url, realtime_model="other").upstream_url() == url


def test_check_can_serve_refuses_empty_key_for_openai() -> None:
    """With REALTIME_URL on api.openai.com, an empty (or blank) key is refused naming OPENAI_API_KEY."""
    for env in ({}, {"OPENAI_API_KEY": "   "}):
        with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
            Settings.from_env(env).check_can_serve()


def test_check_can_serve_accepts_a_key_for_openai() -> None:
    """With a key set, serving against OpenAI is allowed."""
    Settings.from_env({"OPENAI_API_KEY": KEY}).check_can_serve()


@pytest.mark.parametrize(
    "url",
    [
        "ws://127.0.0.1:9000/v1/realtime",
        "wss://realtime.example.net/v1/realtime",
        "wss://notopenai.com/v1/realtime",
    ],
)
def test_check_can_serve_allows_empty_key_elsewhere(url: str) -> None:
    """An empty key is fine when the upstream is not OpenAI (a fake or a proxy)."""
    Settings.from_env({"REALTIME_URL": url}).check_can_serve()


# -- secrets --------------------------------------------------------------------------


def test_secret_never_shows_its_value() -> None:
    """A Secret's repr, str, f-string, %-format and str.format hide the value; reveal() returns it."""
    s = Secret(KEY)
    shown = [repr(s), str(s), f"{s}", f"{s!r}", "%s" % s, "%r" % (s,), f"{s}", str([s])]  # noqa: UP031
    assert all(KEY not in text for text in shown)
    assert all("****" in text for text in shown)
    assert s.reveal() == KEY
    assert bool(s) and not Secret("")


def test_settings_repr_and_describe_hide_the_key() -> None:
    """Neither the Settings repr nor describe() (the start-up log line) shows the key."""
    s = Settings.from_env({"OPENAI_API_KEY": KEY})
    described = s.describe()
    assert KEY not in repr(s)
    assert KEY not in str(described)
    assert KEY not in json.dumps(described, default=str)
    assert described["openai_api_key"] == Secret(KEY)
    assert "instructions" not in described
    assert described["port"] == 8000


# -- .env file ------------------------------------------------------------------------


def test_load_environ_reads_a_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Values from a .env file appear in the merged environment without touching os.environ."""
    monkeypatch.delenv("VB_TEST_FROM_FILE", raising=False)
    env = tmp_path / ".env"
    env.write_text(
        'VB_TEST_FROM_FILE="hello world"\n# comment\nVB_TEST_OTHER=1\n', encoding="utf-8"
    )
    merged = load_environ(env)
    assert merged["VB_TEST_FROM_FILE"] == "hello world"
    assert merged["VB_TEST_OTHER"] == "1"
    assert "VB_TEST_FROM_FILE" not in os.environ


def test_real_environment_wins_over_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable set in the process environment overrides the same one in .env."""
    env = tmp_path / ".env"
    env.write_text("VOICE=cedar\nVB_TEST_ONLY_IN_FILE=file\n", encoding="utf-8")
    monkeypatch.setenv("VOICE", "alloy")
    monkeypatch.delenv("VB_TEST_ONLY_IN_FILE", raising=False)
    merged = load_environ(str(env))
    assert merged["VOICE"] == "alloy"
    assert merged["VB_TEST_ONLY_IN_FILE"] == "file"
    assert Settings.from_env(merged).voice == "alloy"


def test_load_environ_without_file_is_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No file named and no .env in the working directory: just the process environment."""
    monkeypatch.setenv("VB_TEST_MARKER", "present")
    monkeypatch.chdir(tmp_path)
    assert load_environ() == dict(os.environ)
    assert load_environ(None)["VB_TEST_MARKER"] == "present"


def test_load_environ_reads_the_default_dotenv_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VB_TEST_FROM_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("VB_TEST_FROM_FILE=here\n", encoding="utf-8")
    assert load_environ()["VB_TEST_FROM_FILE"] == "here"


def test_a_named_env_file_must_exist(tmp_path: Path) -> None:
    """--env-file with a typo stops start-up, naming the file, instead of running on defaults."""
    missing = tmp_path / "prod.env"
    with pytest.raises(ConfigError, match="prod.env"):
        load_environ(missing)
    with pytest.raises(ConfigError, match="no such file"):
        load_environ(tmp_path)  # a directory is not a dotenv file


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"UPSTREAM_AUDIO": "opus"}, "UPSTREAM_AUDIO"),
        ({"TURN_DETECTION": "none"}, "TURN_DETECTION"),
        ({"VAD_THRESHOLD": "1.5"}, "VAD_THRESHOLD"),
        ({"VAD_THRESHOLD": "loud"}, "VAD_THRESHOLD"),
        ({"VAD_SILENCE_MS": "-5"}, "VAD_SILENCE_MS"),
        ({"VAD_EAGERNESS": "eager"}, "VAD_EAGERNESS"),
        ({"INTERRUPT_RESPONSE": "maybe"}, "INTERRUPT_RESPONSE"),
        ({"NOISE_REDUCTION": "studio"}, "NOISE_REDUCTION"),
        ({"TRANSCRIPTION_MODEL": "my-asr"}, "TRANSCRIPTION_MODEL"),
        ({"TURN_DETECTION": "semantic_vad", "IDLE_TIMEOUT_MS": "8000"}, "IDLE_TIMEOUT_MS"),
    ],
)
def test_turn_taking_settings_are_validated(env: dict[str, str], name: str) -> None:
    """A bad turn-taking setting stops start-up with its name in the message."""
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env)


def test_old_duration_names_are_read_and_reported() -> None:
    settings = Settings.from_env(
        {"DRAIN_TIMEOUT": "7", "CLOSING_TIMEOUT_S": "4", "CLOSING_TIMEOUT": "9"}
    )
    assert settings.drain_timeout_s == 7.0
    assert settings.closing_timeout_s == 4.0  # the new name wins
    assert settings.deprecated_names == ("CLOSING_TIMEOUT", "DRAIN_TIMEOUT")
    assert Settings.from_env({"DRAIN_TIMEOUT_S": "7"}).deprecated_names == ()
