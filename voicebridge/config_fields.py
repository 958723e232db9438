"""Every setting, its default and its variable: the fields of :class:`~voicebridge.config.Settings`.

Reading them (``config.py``) and checking them together (``config_checks.py``) live apart.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from voicebridge.core.realtime import (
    DEFAULT_TRANSCRIPTION_MODEL,
)

__all__ = ["LOOPBACK_HOSTS", "STREAM_SIGNATURE_MODES", "Secret", "SettingsFields"]

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
class SettingsFields:
    """The settings' values; :class:`~voicebridge.config.Settings` reads and checks them."""

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
    local_barge_in: bool = True  # LOCAL_BARGE_IN: on or off
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
