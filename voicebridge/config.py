"""Settings: read once from the environment (and an optional ``.env``), frozen, validated.

Every setting is documented in README.md ("Settings") and ``.env.example``. Functions
receive a :class:`Settings`; nothing else in voicebridge reads ``os.environ``.
"""

from __future__ import annotations

import math
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from voicebridge.core.realtime import (
    DEFAULT_TRANSCRIPTION_MODEL,
    NOISE_REDUCTION_TYPES,
    TRANSCRIPTION_MODELS,
    TURN_DETECTION_TYPES,
    VAD_EAGERNESS,
)
from voicebridge.core.shutdown import ShutdownPlan
from voicebridge.errors import ConfigError
from voicebridge.logs import MIN_SECRET, mask_url, url_secrets

__all__ = [
    "DEFAULT_ENV_FILE",
    "LOOPBACK_HOSTS",
    "STREAM_SIGNATURE_MODES",
    "Secret",
    "Settings",
    "load_environ",
]

DEFAULT_ENV_FILE = ".env"  # read when present; --env-file names another that must exist

# TWILIO_STREAM_SIGNATURE: whether the /realtime upgrade must carry X-Twilio-Signature (README
# "Security": the per-call stream token binds each socket to a signed webhook either way),
# each mode as the start-up line and `voicebridge doctor` explain it.
STREAM_SIGNATURE_MODES = {
    "require": "every /realtime upgrade must carry a valid X-Twilio-Signature",
    "if-present": "a /realtime upgrade with a wrong X-Twilio-Signature is refused; one "
    "without is left to the per-call stream token",
    "off": "the /realtime upgrade's X-Twilio-Signature is not checked; the per-call stream "
    "token is",
}

# Hosts whose http:// (and ws://) never crosses a network: local runs, tests, the demo.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

DEFAULT_INSTRUCTIONS = (
    "You are a friendly assistant answering a phone call. Speak naturally and keep "
    "answers short: one or two sentences. If you did not understand, ask again."
)
DEFAULT_FAILURE_SAY = "Sorry, we could not connect your call. Please try again later. Goodbye."
DEFAULT_BUSY_SAY = "Sorry, all our lines are busy. Please call again later. Goodbye."
DEFAULT_APOLOGY = (
    "Apologise in one short sentence that you had a technical problem, and ask the caller "
    "to say that again."
)
DEFAULT_CLOSING = (
    "You have to end the call now. Tell the caller so politely in one short sentence and "
    "say goodbye."
)
DEFAULT_HOLDING = (
    "A tool you called is still working. Tell the caller in a few words that you are "
    "checking and ask them to hold on; do not call any tool and do not guess the result."
)
DEFAULT_IDLE_GOODBYE = (
    "The caller has not answered for a while. Say in one short sentence that you will hang "
    "up now, and say goodbye."
)
# Duration settings carry their unit in the name; the old names are read for one release.
RENAMED = {
    old: old + "_S"
    for old in (
        "STREAM_TOKEN_TTL",
        "TOOL_TIMEOUT",
        "START_TIMEOUT",
        "UPSTREAM_CONNECT_TIMEOUT",
        "UPSTREAM_STALL_TIMEOUT",
        "RECONNECT_TIMEOUT",
        "CLOSING_TIMEOUT",
        "DRAIN_TIMEOUT",
    )
}
_FLAGS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


def _random_secret() -> Secret:
    return Secret(secrets.token_urlsafe(32))


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('****')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    # Upstream (OpenAI Realtime API, GA)
    openai_api_key: Secret = Secret("")  # OPENAI_API_KEY: sent as Authorization: Bearer
    realtime_url: str = "wss://api.openai.com/v1/realtime"  # REALTIME_URL
    realtime_model: str = "gpt-realtime-2.1"  # REALTIME_MODEL, unless the URL has ?model=
    realtime_auth: str = "bearer"  # REALTIME_AUTH: bearer (Authorization) or api-key (Azure)
    realtime_ca_file: str = ""  # REALTIME_CA_FILE: PEM CAs trusted for wss:// (else the system's)
    voice: str = "marin"  # VOICE
    instructions: str = DEFAULT_INSTRUCTIONS  # INSTRUCTIONS
    # Conversation (README "Turn-taking")
    upstream_audio: str = "pcmu"  # UPSTREAM_AUDIO: pcmu (passthrough) or pcm24k
    turn_detection: str = "server_vad"  # TURN_DETECTION: server_vad or semantic_vad
    vad_threshold: float = 0.5  # VAD_THRESHOLD (server_vad), 0..1
    vad_prefix_padding_ms: int = 300  # VAD_PREFIX_PADDING_MS (server_vad)
    vad_silence_ms: int = 500  # VAD_SILENCE_MS (server_vad): silence that ends a turn
    vad_eagerness: str = "auto"  # VAD_EAGERNESS (semantic_vad): low, medium, high, auto
    interrupt_response: bool = True  # INTERRUPT_RESPONSE: the server cancels on barge-in
    create_response: bool = True  # CREATE_RESPONSE: false: voicebridge asks for each answer
    noise_reduction: str = "near_field"  # NOISE_REDUCTION: near_field, far_field or off
    # TRANSCRIPTION_MODEL: the caller's words as text (transcripts, re-seeding); "" turns it off
    transcription_model: str = DEFAULT_TRANSCRIPTION_MODEL
    greeting_instructions: str = ""  # GREETING_INSTRUCTIONS: the model speaks first
    idle_timeout_ms: int = 0  # IDLE_TIMEOUT_MS (server_vad): re-prompt a silent caller; 0 off
    idle_reprompts: int = 2  # IDLE_REPROMPTS: unanswered re-prompts before hanging up
    idle_goodbye_instructions: str = DEFAULT_IDLE_GOODBYE  # IDLE_GOODBYE_INSTRUCTIONS
    apology_instructions: str = DEFAULT_APOLOGY  # APOLOGY_INSTRUCTIONS: after failed replies
    media_gap_ms: int = 100  # MEDIA_GAP_MS: feed silence upstream after this media gap
    # LOCAL_BARGE_IN (README "Local barge-in"): the bridge hears the caller itself and pauses
    # the assistant at once; the upstream's speech_started confirms, else it resumes.
    local_barge_in: bool = False  # LOCAL_BARGE_IN: on or off
    local_barge_in_min_speech_ms: int = 60  # LOCAL_BARGE_IN_MIN_SPEECH_MS: shorter: ignored
    local_barge_in_window_ms: int = 600  # LOCAL_BARGE_IN_WINDOW_MS: for speech_started
    local_barge_in_rewind_ms: int = 200  # LOCAL_BARGE_IN_REWIND_MS: replayed on a resume
    # Twilio side
    public_url: str | None = None  # PUBLIC_URL: https:// base Twilio reaches us at
    welcome_say: str = ""  # WELCOME_SAY: spoken by Twilio before connecting, if set
    say_language: str = ""  # SAY_LANGUAGE: <Say language=…> (en-US, de-DE…); "": Twilio's default
    failure_say: str = DEFAULT_FAILURE_SAY  # FAILURE_SAY: heard when a call fails
    busy_say: str = DEFAULT_BUSY_SAY  # BUSY_SAY: heard when every call slot is taken
    # Security
    twilio_auth_token: Secret = Secret("")  # TWILIO_AUTH_TOKEN: checks X-Twilio-Signature
    # TWILIO_STREAM_SIGNATURE: the /realtime upgrade's signature: require, if-present or off
    twilio_stream_signature: str = "if-present"
    stream_token_secret: Secret = field(default_factory=_random_secret, compare=False)
    stream_token_secret_generated: bool = True  # no STREAM_TOKEN_SECRET: one per process
    stream_token_ttl_s: float = 60.0  # STREAM_TOKEN_TTL_S: webhook -> `start`, s (covers <Say>)
    max_calls: int = 50  # MAX_CALLS: concurrent calls (and reservations) per instance
    call_sid_memory_s: float = 14400.0  # CALL_SID_MEMORY_S: a CallSid opens one call; 0 off
    caller_burst_ms: int = 2000  # CALLER_BURST_MS: caller audio allowed beyond real time; 0 off
    max_message_bytes: int = 65536  # MAX_MESSAGE_BYTES: largest inbound WebSocket message
    # HTTP edge (server/http_edge.py): Twilio's requests carry 1-2 KB of headers, sent at once
    http_max_header_bytes: int = 65536  # HTTP_MAX_HEADER_BYTES: request line + headers
    http_max_header_line_bytes: int = 16384  # HTTP_MAX_HEADER_LINE_BYTES: one header field
    http_max_request_line_bytes: int = 8192  # HTTP_MAX_REQUEST_LINE_BYTES: method, target
    http_header_timeout_s: float = 10.0  # HTTP_HEADER_TIMEOUT_S: accept/first byte -> headers
    http_body_timeout_s: float = 10.0  # HTTP_BODY_TIMEOUT_S: headers -> whole body, s
    http_keep_alive_timeout_s: int = 5  # HTTP_KEEP_ALIVE_TIMEOUT_S: idle after a response (uvicorn)
    http_max_connections: int = 1000  # HTTP_MAX_CONNECTIONS: open sockets, within the fd limit
    # Server
    host: str = "0.0.0.0"  # HOST
    port: int = 8000  # PORT
    forwarded_allow_ips: str = "127.0.0.1"  # FORWARDED_ALLOW_IPS (uvicorn's convention)
    log_level: str = "INFO"  # LOG_LEVEL
    log_format: str = "text"  # LOG_FORMAT: text or json
    log_wire: bool = False  # LOG_WIRE: with LOG_LEVEL=DEBUG, also every WebSocket frame
    # Old setting names that were read (RENAMED): warned about at start-up.
    deprecated_names: tuple[str, ...] = field(default=(), compare=False)
    metrics_token: Secret = Secret("")  # METRICS_TOKEN: /metrics needs Bearer <token> if set
    twilio_account_sid: str = ""  # TWILIO_ACCOUNT_SID: for REST call updates (end, transfer)
    twilio_api_base: str = "https://api.twilio.com"  # TWILIO_API_BASE (tests: a local fake)
    # TWILIO_API_KEY_SID / _SECRET: REST auth by API key instead of TWILIO_AUTH_TOKEN
    twilio_api_key_sid: str = ""
    twilio_api_key_secret: Secret = Secret("")
    record_dir: str = ""  # RECORD_DIR: recordings and transcripts, off if empty
    # The assistant acts (README "Tools")
    end_call_tool: bool = True  # END_CALL_TOOL: the model may hang up after its goodbye
    transfer_destinations: str = ""  # TRANSFER_DESTINATIONS: name=+1555...,name=sip:...
    custom_tools: str = ""  # CUSTOM_TOOLS: package.module:TOOLS
    tool_timeout_s: float = 5.0  # TOOL_TIMEOUT_S: per tool call, s
    # Connect your business (README): per-number profiles, HTTP tools, call events
    profiles_file: str = ""  # PROFILES_FILE: TOML profiles per called number
    tools_file: str = ""  # TOOLS_FILE: TOML [tools.NAME] HTTP tools
    signing_secret: Secret = Secret("")  # SIGNING_SECRET: signs tool requests and call events
    tool_holding_delay_s: float = 1.5  # TOOL_HOLDING_DELAY_S: a tool this slow gets a holding line
    tool_holding_instructions: str = DEFAULT_HOLDING  # TOOL_HOLDING_INSTRUCTIONS
    tool_log_arguments: bool = False  # TOOL_LOG_ARGUMENTS: log argument values, not only names
    call_events_url: str = ""  # CALL_EVENTS_URL: receives call.started/.ended/.transferred
    call_events_queue: int = 1000  # CALL_EVENTS_QUEUE: events waiting; more are dropped
    call_events_retry_s: float = 120.0  # CALL_EVENTS_RETRY_S: retries of one event stop after
    goodbye_instructions: str = "Say a short, warm goodbye."  # GOODBYE_INSTRUCTIONS
    transfer_instructions: str = (  # TRANSFER_INSTRUCTIONS
        "Tell the caller in one short sentence that you are transferring them now."
    )
    # Limits and timeouts
    start_timeout_s: float = 10.0  # START_TIMEOUT_S: WebSocket accept -> Twilio `start`, s
    upstream_connect_timeout_s: float = 5.0  # UPSTREAM_CONNECT_TIMEOUT_S, s
    upstream_stall_timeout_s: float = 10.0  # UPSTREAM_STALL_TIMEOUT_S: an unresponsive upstream, s
    upstream_reconnect: bool = True  # UPSTREAM_RECONNECT: replace a lost upstream once per call
    reconnect_timeout_s: float = 1.5  # RECONNECT_TIMEOUT_S: to open the replacement, s
    session_limit_s: float = 3480.0  # SESSION_LIMIT_S: before the upstream's 60-minute cap
    session_limit_action: str = "end"  # SESSION_LIMIT_ACTION: end (closing line) or renew
    closing_instructions: str = DEFAULT_CLOSING  # CLOSING_INSTRUCTIONS: the last line
    closing_timeout_s: float = 10.0  # CLOSING_TIMEOUT_S: for the closing line to be heard, s
    drain_timeout_s: float = 10.0  # DRAIN_TIMEOUT_S: after SIGTERM, calls go on this long, s
    # SHUTDOWN_TIMEOUT_S: SIGTERM to exit, all of it (core/shutdown.py), under the kill timeout
    shutdown_timeout_s: float = 25.0
    caller_queue_frames: int = 250  # CALLER_QUEUE_FRAMES: 20 ms frames held for upstream
    playback_queue_chunks: int = 600  # PLAYBACK_QUEUE_CHUNKS: model deltas held for Twilio
    # Scaling (README "Scaling and deploys")
    redis_url: str = ""  # REDIS_URL: call state shared by instances; empty: per process
    max_calls_total: int = 0  # MAX_CALLS_TOTAL: concurrent calls in the cluster (Redis); 0 none
    workers: int = 1  # WEB_CONCURRENCY (or serve --workers): processes on one port
    # Outbound calls (README "Outbound calls"): POST /calls is off until API_TOKEN is set
    api_token: Secret = Secret("")  # API_TOKEN: POST /calls needs Bearer <token>
    outbound_caller_id: str = ""  # OUTBOUND_CALLER_ID: the E.164 number calls come from
    outbound_allow: str = ""  # OUTBOUND_ALLOW: comma-separated number prefixes; empty: any
    outbound_calls_per_s: float = 1.0  # OUTBOUND_CALLS_PER_S: calls started per second
    voicemail_message: str = ""  # VOICEMAIL_MESSAGE: said after a voicemail's beep; empty: hang up

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from environment variables.

        Raises:
            ConfigError: a value is malformed; the message names the variable and the fix.
        """
        defaults = cls()
        old_names = tuple(old for old in RENAMED if environ.get(old, "").strip())
        if old_names:
            environ = dict(environ)
            for old in old_names:
                environ.setdefault(RENAMED[old], environ[old])

        def text(name: str, default: str) -> str:
            value = environ.get(name)
            return default if value is None or value.strip() == "" else value.strip()

        def number(name: str, default: float, kind: type[int] | type[float]) -> float:
            raw = environ.get(name)
            if raw is None or raw.strip() == "":
                return default
            try:
                value = kind(raw.strip())
            except ValueError:
                what = "a whole number" if kind is int else "a number"
                raise ConfigError(f"{name}={raw!r} is not {what}") from None
            if not (0 < value < math.inf):
                raise ConfigError(f"{name}={raw!r} must be a number greater than 0")
            return value

        def flag(name: str, default: bool) -> bool:
            raw = environ.get(name, "").strip().lower()
            if raw == "":
                return default
            if raw not in _FLAGS:
                raise ConfigError(f"{name}={raw!r} must be true or false")
            return _FLAGS[raw]

        def count(name: str, default: int) -> int:
            raw = environ.get(name, "").strip()
            if raw == "":
                return default
            if not raw.isdigit():
                raise ConfigError(f"{name}={raw!r} must be a whole number, 0 or more")
            return int(raw)

        def seconds_or_off(name: str, default: float) -> float:
            raw = environ.get(name, "").strip()
            if raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not 0.0 <= value < math.inf:
                raise ConfigError(f"{name}={raw!r} must be a number of seconds, 0 (off) or more")
            return value

        def fraction(name: str, default: float) -> float:
            raw = environ.get(name, "").strip()
            if raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}={raw!r} must be a number from 0 to 1")
            return value

        port = int(number("PORT", defaults.port, int))
        if port > 65535:
            raise ConfigError(f"PORT={port} is not a TCP port (1-65535)")
        public_url = environ.get("PUBLIC_URL", "").strip().rstrip("/") or None
        token_secret = environ.get("STREAM_TOKEN_SECRET", "").strip()
        settings = cls(
            openai_api_key=Secret(environ.get("OPENAI_API_KEY", "").strip()),
            realtime_url=text("REALTIME_URL", defaults.realtime_url),
            realtime_model=text("REALTIME_MODEL", defaults.realtime_model),
            realtime_auth=text("REALTIME_AUTH", defaults.realtime_auth).lower(),
            voice=text("VOICE", defaults.voice),
            instructions=text("INSTRUCTIONS", defaults.instructions),
            upstream_audio=text("UPSTREAM_AUDIO", defaults.upstream_audio).lower(),
            turn_detection=text("TURN_DETECTION", defaults.turn_detection).lower(),
            vad_threshold=fraction("VAD_THRESHOLD", defaults.vad_threshold),
            vad_prefix_padding_ms=count("VAD_PREFIX_PADDING_MS", defaults.vad_prefix_padding_ms),
            vad_silence_ms=count("VAD_SILENCE_MS", defaults.vad_silence_ms),
            vad_eagerness=text("VAD_EAGERNESS", defaults.vad_eagerness).lower(),
            interrupt_response=flag("INTERRUPT_RESPONSE", defaults.interrupt_response),
            create_response=flag("CREATE_RESPONSE", defaults.create_response),
            noise_reduction=text("NOISE_REDUCTION", defaults.noise_reduction).lower(),
            # Unset: the default; set but empty: off.
            transcription_model=environ.get(
                "TRANSCRIPTION_MODEL", defaults.transcription_model
            ).strip(),
            greeting_instructions=text("GREETING_INSTRUCTIONS", ""),
            idle_timeout_ms=count("IDLE_TIMEOUT_MS", defaults.idle_timeout_ms),
            idle_reprompts=count("IDLE_REPROMPTS", defaults.idle_reprompts),
            idle_goodbye_instructions=text(
                "IDLE_GOODBYE_INSTRUCTIONS", defaults.idle_goodbye_instructions
            ),
            apology_instructions=text("APOLOGY_INSTRUCTIONS", defaults.apology_instructions),
            media_gap_ms=int(number("MEDIA_GAP_MS", defaults.media_gap_ms, int)),
            local_barge_in=flag("LOCAL_BARGE_IN", defaults.local_barge_in),
            local_barge_in_min_speech_ms=count(
                "LOCAL_BARGE_IN_MIN_SPEECH_MS", defaults.local_barge_in_min_speech_ms
            ),
            local_barge_in_window_ms=count(
                "LOCAL_BARGE_IN_WINDOW_MS", defaults.local_barge_in_window_ms
            ),
            local_barge_in_rewind_ms=count(
                "LOCAL_BARGE_IN_REWIND_MS", defaults.local_barge_in_rewind_ms
            ),
            public_url=public_url,
            welcome_say=text("WELCOME_SAY", ""),
            say_language=text("SAY_LANGUAGE", ""),
            failure_say=text("FAILURE_SAY", defaults.failure_say),
            busy_say=text("BUSY_SAY", defaults.busy_say),
            twilio_auth_token=Secret(environ.get("TWILIO_AUTH_TOKEN", "").strip()),
            twilio_stream_signature=text(
                "TWILIO_STREAM_SIGNATURE", defaults.twilio_stream_signature
            ).lower(),
            stream_token_secret=Secret(token_secret) if token_secret else _random_secret(),
            stream_token_secret_generated=not token_secret,
            stream_token_ttl_s=number("STREAM_TOKEN_TTL_S", defaults.stream_token_ttl_s, float),
            max_calls=int(number("MAX_CALLS", defaults.max_calls, int)),
            call_sid_memory_s=seconds_or_off("CALL_SID_MEMORY_S", defaults.call_sid_memory_s),
            caller_burst_ms=count("CALLER_BURST_MS", defaults.caller_burst_ms),
            max_message_bytes=int(number("MAX_MESSAGE_BYTES", defaults.max_message_bytes, int)),
            http_max_header_bytes=int(
                number("HTTP_MAX_HEADER_BYTES", defaults.http_max_header_bytes, int)
            ),
            http_max_header_line_bytes=int(
                number("HTTP_MAX_HEADER_LINE_BYTES", defaults.http_max_header_line_bytes, int)
            ),
            http_max_request_line_bytes=int(
                number("HTTP_MAX_REQUEST_LINE_BYTES", defaults.http_max_request_line_bytes, int)
            ),
            http_header_timeout_s=number(
                "HTTP_HEADER_TIMEOUT_S", defaults.http_header_timeout_s, float
            ),
            http_body_timeout_s=number("HTTP_BODY_TIMEOUT_S", defaults.http_body_timeout_s, float),
            http_keep_alive_timeout_s=int(
                number("HTTP_KEEP_ALIVE_TIMEOUT_S", defaults.http_keep_alive_timeout_s, int)
            ),
            http_max_connections=int(
                number("HTTP_MAX_CONNECTIONS", defaults.http_max_connections, int)
            ),
            host=text("HOST", defaults.host),
            port=port,
            forwarded_allow_ips=text("FORWARDED_ALLOW_IPS", defaults.forwarded_allow_ips),
            log_level=text("LOG_LEVEL", defaults.log_level).upper(),
            log_format=text("LOG_FORMAT", defaults.log_format).lower(),
            log_wire=flag("LOG_WIRE", defaults.log_wire),
            metrics_token=Secret(environ.get("METRICS_TOKEN", "").strip()),
            twilio_account_sid=text("TWILIO_ACCOUNT_SID", ""),
            twilio_api_base=text("TWILIO_API_BASE", defaults.twilio_api_base).rstrip("/"),
            twilio_api_key_sid=text("TWILIO_API_KEY_SID", ""),
            twilio_api_key_secret=Secret(environ.get("TWILIO_API_KEY_SECRET", "").strip()),
            record_dir=text("RECORD_DIR", ""),
            end_call_tool=flag("END_CALL_TOOL", defaults.end_call_tool),
            transfer_destinations=text("TRANSFER_DESTINATIONS", ""),
            custom_tools=text("CUSTOM_TOOLS", ""),
            tool_timeout_s=number("TOOL_TIMEOUT_S", defaults.tool_timeout_s, float),
            profiles_file=text("PROFILES_FILE", ""),
            tools_file=text("TOOLS_FILE", ""),
            signing_secret=Secret(environ.get("SIGNING_SECRET", "").strip()),
            tool_holding_delay_s=seconds_or_off(
                "TOOL_HOLDING_DELAY_S", defaults.tool_holding_delay_s
            ),
            tool_holding_instructions=text(
                "TOOL_HOLDING_INSTRUCTIONS", defaults.tool_holding_instructions
            ),
            tool_log_arguments=flag("TOOL_LOG_ARGUMENTS", defaults.tool_log_arguments),
            call_events_url=text("CALL_EVENTS_URL", ""),
            call_events_queue=int(number("CALL_EVENTS_QUEUE", defaults.call_events_queue, int)),
            call_events_retry_s=number("CALL_EVENTS_RETRY_S", defaults.call_events_retry_s, float),
            goodbye_instructions=text("GOODBYE_INSTRUCTIONS", defaults.goodbye_instructions),
            transfer_instructions=text("TRANSFER_INSTRUCTIONS", defaults.transfer_instructions),
            start_timeout_s=number("START_TIMEOUT_S", defaults.start_timeout_s, float),
            upstream_connect_timeout_s=number(
                "UPSTREAM_CONNECT_TIMEOUT_S", defaults.upstream_connect_timeout_s, float
            ),
            upstream_stall_timeout_s=number(
                "UPSTREAM_STALL_TIMEOUT_S", defaults.upstream_stall_timeout_s, float
            ),
            upstream_reconnect=flag("UPSTREAM_RECONNECT", defaults.upstream_reconnect),
            reconnect_timeout_s=number("RECONNECT_TIMEOUT_S", defaults.reconnect_timeout_s, float),
            session_limit_s=number("SESSION_LIMIT_S", defaults.session_limit_s, float),
            session_limit_action=text(
                "SESSION_LIMIT_ACTION", defaults.session_limit_action
            ).lower(),
            closing_instructions=text("CLOSING_INSTRUCTIONS", defaults.closing_instructions),
            closing_timeout_s=number("CLOSING_TIMEOUT_S", defaults.closing_timeout_s, float),
            drain_timeout_s=number("DRAIN_TIMEOUT_S", defaults.drain_timeout_s, float),
            shutdown_timeout_s=number("SHUTDOWN_TIMEOUT_S", defaults.shutdown_timeout_s, float),
            caller_queue_frames=int(
                number("CALLER_QUEUE_FRAMES", defaults.caller_queue_frames, int)
            ),
            playback_queue_chunks=int(
                number("PLAYBACK_QUEUE_CHUNKS", defaults.playback_queue_chunks, int)
            ),
            redis_url=text("REDIS_URL", ""),
            max_calls_total=count("MAX_CALLS_TOTAL", 0),
            workers=int(number("WEB_CONCURRENCY", defaults.workers, int)),
            realtime_ca_file=text("REALTIME_CA_FILE", ""),
            api_token=Secret(environ.get("API_TOKEN", "").strip()),
            outbound_caller_id=text("OUTBOUND_CALLER_ID", ""),
            outbound_allow=text("OUTBOUND_ALLOW", ""),
            outbound_calls_per_s=number(
                "OUTBOUND_CALLS_PER_S", defaults.outbound_calls_per_s, float
            ),
            voicemail_message=text("VOICEMAIL_MESSAGE", ""),
        )
        settings.validate()
        if environ.get("IDLE_GOODBYE_INSTRUCTIONS", "").strip() and not settings.idle_timeout_ms:
            # Never said: refused rather than dropped without a word.
            raise ConfigError(
                "IDLE_GOODBYE_INSTRUCTIONS is set but IDLE_TIMEOUT_MS is 0 (no idle timeout): "
                "set IDLE_TIMEOUT_MS, or unset IDLE_GOODBYE_INSTRUCTIONS"
            )
        return replace(settings, deprecated_names=old_names) if old_names else settings

    def validate(self) -> None:
        url = urlsplit(self.realtime_url)
        if url.scheme not in ("ws", "wss") or not url.hostname:
            raise ConfigError(
                f"REALTIME_URL={mask_url(self.realtime_url)!r} must be a ws:// or wss:// URL, "
                "e.g. wss://api.openai.com/v1/realtime"
            )
        if url.fragment or "#" in self.realtime_url:
            raise ConfigError(
                f"REALTIME_URL={mask_url(self.realtime_url)!r} must not have a #fragment"
            )
        if self.public_url is not None:
            pub = urlsplit(self.public_url)
            if pub.scheme in ("ws", "wss"):
                raise ConfigError(
                    f"PUBLIC_URL={self.public_url!r}: give the https:// base Twilio posts the "
                    "webhook to (e.g. https://voice.example.com); voicebridge derives the "
                    "wss:// stream URL from it"
                )
            local = pub.hostname in LOOPBACK_HOSTS
            if not pub.hostname or not (pub.scheme == "https" or (pub.scheme == "http" and local)):
                raise ConfigError(
                    f"PUBLIC_URL={self.public_url!r} must be an https:// URL such as "
                    "https://voice.example.com (Twilio only streams to wss://)"
                )
            if pub.query or pub.fragment or "?" in self.public_url or "#" in self.public_url:
                raise ConfigError(f"PUBLIC_URL={self.public_url!r} must not have a query string")
        choices = {
            "UPSTREAM_AUDIO": (self.upstream_audio, ("pcmu", "pcm24k")),
            "REALTIME_AUTH": (self.realtime_auth, ("bearer", "api-key")),
            "SESSION_LIMIT_ACTION": (self.session_limit_action, ("end", "renew")),
            "TWILIO_STREAM_SIGNATURE": (self.twilio_stream_signature, STREAM_SIGNATURE_MODES),
            "LOG_FORMAT": (self.log_format, ("text", "json")),
            "TURN_DETECTION": (self.turn_detection, TURN_DETECTION_TYPES),
            "VAD_EAGERNESS": (self.vad_eagerness, VAD_EAGERNESS),
            "NOISE_REDUCTION": (self.noise_reduction, (*NOISE_REDUCTION_TYPES, "off")),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{name}={value!r} must be one of: {', '.join(allowed)}")
        if self.transcription_model and self.transcription_model not in TRANSCRIPTION_MODELS:
            raise ConfigError(
                f"TRANSCRIPTION_MODEL={self.transcription_model!r} is not a known input "
                f"transcription model ({', '.join(TRANSCRIPTION_MODELS)}); leave it empty for off"
            )
        if self.idle_timeout_ms and self.turn_detection != "server_vad":
            raise ConfigError("IDLE_TIMEOUT_MS works only with TURN_DETECTION=server_vad")
        if self.twilio_account_sid and not re.fullmatch(
            r"AC[0-9a-fA-F]{32}", self.twilio_account_sid
        ):
            raise ConfigError(
                f"TWILIO_ACCOUNT_SID={self.twilio_account_sid!r} is not an account SID "
                "(AC followed by 32 hex digits; see the Twilio console)"
            )
        if self.twilio_account_sid and not (self.twilio_auth_token or self.twilio_api_key_sid):
            # REST calls authenticate with both; one alone would be dropped silently.
            raise ConfigError(
                "TWILIO_ACCOUNT_SID is set but TWILIO_AUTH_TOKEN is not: the REST API needs "
                "both (or TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET). Unset "
                "TWILIO_ACCOUNT_SID (calls end through the after-stream answer without it) or "
                "set TWILIO_AUTH_TOKEN"
            )
        api = urlsplit(self.twilio_api_base)
        if api.scheme not in ("https", "http") or not api.hostname:
            raise ConfigError(f"TWILIO_API_BASE={self.twilio_api_base!r} must be an http(s) URL")
        if self.twilio_auth_token and not self.public_url:
            raise ConfigError(
                "TWILIO_AUTH_TOKEN is set but PUBLIC_URL is not: set PUBLIC_URL to the https:// "
                "base Twilio calls (e.g. https://voice.example.com). Signatures cover the exact "
                "URL Twilio requested, which cannot be rebuilt reliably from proxy headers"
            )
        if 0 < len(self.stream_token_secret.reveal()) < 16:
            raise ConfigError("STREAM_TOKEN_SECRET must be at least 16 characters (32+ random)")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"LOG_LEVEL={self.log_level!r} must be DEBUG, INFO, WARNING or ERROR")
        self._validate_local_barge_in()
        self._validate_http_edge()
        self._validate_shutdown()
        self._validate_scaling()
        self._validate_business()

    def _validate_http_edge(self) -> None:
        # Floors that keep Twilio's requests (and a proxy's added headers) well inside.
        if self.http_max_header_bytes < 8192:
            raise ConfigError(
                f"HTTP_MAX_HEADER_BYTES={self.http_max_header_bytes} must be at least 8192"
            )
        for name, value in (
            ("HTTP_MAX_HEADER_LINE_BYTES", self.http_max_header_line_bytes),
            ("HTTP_MAX_REQUEST_LINE_BYTES", self.http_max_request_line_bytes),
        ):
            if not 1024 <= value <= self.http_max_header_bytes:
                raise ConfigError(
                    f"{name}={value} must be from 1024 to HTTP_MAX_HEADER_BYTES "
                    f"({self.http_max_header_bytes})"
                )
        if self.http_max_connections <= self.max_calls:
            raise ConfigError(
                f"HTTP_MAX_CONNECTIONS={self.http_max_connections} must exceed MAX_CALLS="
                f"{self.max_calls}: each call holds a connection, webhooks need more"
            )

    def _validate_business(self) -> None:
        key_sid, key_secret = self.twilio_api_key_sid, self.twilio_api_key_secret
        if key_sid and not re.fullmatch(r"SK[0-9a-fA-F]{32}", key_sid):
            raise ConfigError(
                f"TWILIO_API_KEY_SID={key_sid!r} is not an API key SID (SK followed by 32 hex "
                "digits; Twilio console → API keys)"
            )
        if bool(key_sid) != bool(key_secret) or (key_sid and not self.twilio_account_sid):
            raise ConfigError(
                "TWILIO_API_KEY_SID, TWILIO_API_KEY_SECRET and TWILIO_ACCOUNT_SID go together: "
                "the key authenticates, the account SID names the calls' account"
            )
        if self.say_language and not re.fullmatch(
            r"[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*", self.say_language
        ):
            raise ConfigError(
                f"SAY_LANGUAGE={self.say_language!r} is not a language tag, e.g. en-US"
            )
        for name, path in (("PROFILES_FILE", self.profiles_file), ("TOOLS_FILE", self.tools_file)):
            if path and not Path(path).is_file():
                raise ConfigError(f"{name}={path!r}: no such file")
        if self.call_events_url:
            url = urlsplit(self.call_events_url)
            local = url.hostname in LOOPBACK_HOSTS
            if not url.hostname or not (url.scheme == "https" or (url.scheme == "http" and local)):
                raise ConfigError(
                    f"CALL_EVENTS_URL={mask_url(self.call_events_url)!r} must be an https:// URL "
                    "(http:// only on this machine)"
                )
        if self.call_events_url and not self.signing_secret:
            # HTTP tools need it too: checked where their files are read (server/profiles.py).
            raise ConfigError(
                "CALL_EVENTS_URL is set but SIGNING_SECRET is not: events are signed with it "
                "(X-Voicebridge-Signature) so your backend can refuse forgeries; set 32+ random "
                "characters, the same value your backend verifies with"
            )
        if 0 < len(self.signing_secret.reveal()) < 16:
            raise ConfigError("SIGNING_SECRET must be at least 16 characters (32+ random)")

    def shutdown_plan(self) -> ShutdownPlan:
        return ShutdownPlan(self.shutdown_timeout_s, self.drain_timeout_s, self.closing_timeout_s)

    def _validate_shutdown(self) -> None:
        plan = self.shutdown_plan()
        if not plan.fits():
            reserve = plan.needed_s - plan.drain_s - plan.closing_s
            raise ConfigError(
                f"DRAIN_TIMEOUT_S={plan.drain_s:g} and CLOSING_TIMEOUT_S={plan.closing_s:g} "
                f"do not fit in SHUTDOWN_TIMEOUT_S={plan.budget_s:g}: their sum plus "
                f"{reserve:g} s (each call's ending, then the forced ending of any left) must "
                f"not exceed it; lower them, or raise SHUTDOWN_TIMEOUT_S to {plan.needed_s:g} "
                "and the platform's grace period above that"
            )

    def _validate_scaling(self) -> None:
        if self.redis_url and urlsplit(self.redis_url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"REDIS_URL={mask_url(self.redis_url)!r} must be a redis://, rediss:// or "
                "unix:// URL, e.g. redis://redis.internal:6379/0"
            )
        if self.api_token and not (self.outbound_caller_id and self.public_url):
            raise ConfigError(
                "API_TOKEN turns outbound calls on: set OUTBOUND_CALLER_ID (your Twilio number, "
                "E.164) and PUBLIC_URL too, or leave API_TOKEN empty"
            )
        if self.outbound_caller_id and not re.fullmatch(
            r"\+[1-9][0-9]{6,14}", self.outbound_caller_id
        ):
            raise ConfigError(
                f"OUTBOUND_CALLER_ID={self.outbound_caller_id!r} must be an E.164 number such "
                "as +14155550100"
            )
        if self.outbound_calls_per_s <= 0:
            raise ConfigError("OUTBOUND_CALLS_PER_S must be above 0 (e.g. 1)")
        if self.max_calls_total and not self.redis_url:
            raise ConfigError(
                "MAX_CALLS_TOTAL caps the calls of instances sharing REDIS_URL: set both"
            )
        if self.max_calls < self.workers:
            raise ConfigError(
                f"MAX_CALLS={self.max_calls} is less than the {self.workers} workers "
                "(WEB_CONCURRENCY, --workers): each worker needs at least one call slot"
            )
        if self.realtime_ca_file and not Path(self.realtime_ca_file).is_file():
            raise ConfigError(f"REALTIME_CA_FILE={self.realtime_ca_file!r}: no such file")

    def _validate_local_barge_in(self) -> None:
        ranges = {
            # Under 20 ms is one frame: a click; over 500 ms is later than the upstream.
            "LOCAL_BARGE_IN_MIN_SPEECH_MS": (self.local_barge_in_min_speech_ms, 20, 500),
            # The upstream's speech_started takes a round trip and its VAD's onset.
            "LOCAL_BARGE_IN_WINDOW_MS": (self.local_barge_in_window_ms, 100, 5000),
            "LOCAL_BARGE_IN_REWIND_MS": (self.local_barge_in_rewind_ms, 0, 2000),
        }
        for name, (value, low, high) in ranges.items():
            if not low <= value <= high:
                raise ConfigError(f"{name}={value} must be from {low} to {high} (ms)")

    @property
    def upstream_is_openai(self) -> bool:
        host = urlsplit(self.realtime_url).hostname or ""
        return host == "openai.com" or host.endswith(".openai.com")

    def upstream_url(self) -> str:
        """REALTIME_URL with ``?model=REALTIME_MODEL`` added unless it names a model."""
        url = urlsplit(self.realtime_url)
        query = parse_qs(url.query, keep_blank_values=True)
        if "model" in query:
            return self.realtime_url
        pairs = [(k, v) for k, vs in query.items() for v in vs] + [("model", self.realtime_model)]
        return urlunsplit(url._replace(query=urlencode(pairs)))

    def check_can_serve(self) -> None:
        """Refuse to serve real calls that would certainly fail upstream."""
        if self.upstream_is_openai and not self.openai_api_key:
            raise ConfigError(
                "OPENAI_API_KEY is empty and REALTIME_URL points at OpenAI: set OPENAI_API_KEY "
                "(in the environment or .env), or run `voicebridge serve --fake-upstream` to "
                "use the built-in fake Realtime server"
            )

    def secret_values(self) -> tuple[str, ...]:
        """Every secret's text, those in REALTIME_URL's query too: what no log line may show
        (longest first, so a secret holding another is masked whole)."""
        secrets = (
            self.openai_api_key,
            self.twilio_auth_token,
            self.twilio_api_key_secret,
            self.signing_secret,
            self.stream_token_secret,
            self.metrics_token,
            self.api_token,
        )
        found = {s.reveal() for s in secrets}
        found |= url_secrets(self.realtime_url) | url_secrets(self.redis_url)
        found |= url_secrets(self.call_events_url)
        return tuple(sorted((s for s in found if len(s) >= MIN_SECRET), key=len, reverse=True))

    def describe(self) -> dict[str, object]:
        """Settings for a start-up log line; secrets stay masked, in URLs too."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "instructions"}
        out["realtime_url"] = mask_url(self.realtime_url)
        out["redis_url"] = mask_url(self.redis_url) if self.redis_url else ""
        return out


def load_environ(env_file: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The process environment over the values of a dotenv file.

    Args:
        env_file: a file that must exist (``--env-file``); None reads ``.env`` in the working
            directory when there is one (a deployment sets the environment instead).

    Raises:
        ConfigError: ``env_file`` names no readable file; a typo there would otherwise start
            the service on defaults without a word.
    """
    path = Path(DEFAULT_ENV_FILE if env_file is None else env_file)
    merged: dict[str, str] = {}
    if env_file is not None and not path.is_file():
        raise ConfigError(f"--env-file {str(path)!r}: no such file")
    if path.is_file():
        from dotenv import dotenv_values

        try:
            values = dotenv_values(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"env file {str(path)!r} cannot be read: {exc}") from exc
        merged.update({k: v for k, v in values.items() if v is not None})
    merged.update(os.environ)
    return merged
