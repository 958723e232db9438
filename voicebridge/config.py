"""Settings: read once from the environment (and an optional ``.env``), frozen, validated.

Every setting is documented in README.md ("Settings") and ``.env.example``. Functions
receive a :class:`Settings`; nothing else in voicebridge reads ``os.environ``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from voicebridge.config_checks import check
from voicebridge.config_fields import (
    DEFAULT_APOLOGY,
    DEFAULT_BUSY_SAY,
    DEFAULT_CLOSING,
    DEFAULT_ENV_FILE,
    DEFAULT_FAILURE_SAY,
    DEFAULT_HOLDING,
    DEFAULT_IDLE_GOODBYE,
    DEFAULT_INSTRUCTIONS,
    LOOPBACK_HOSTS,
    STREAM_SIGNATURE_MODES,
    Secret,
    SettingsFields,
    _random_secret,
)
from voicebridge.core.shutdown import ShutdownPlan
from voicebridge.errors import ConfigError
from voicebridge.logs import MIN_SECRET, mask_url, url_secrets

__all__ = [
    "DEFAULT_APOLOGY",
    "DEFAULT_BUSY_SAY",
    "DEFAULT_CLOSING",
    "DEFAULT_ENV_FILE",
    "DEFAULT_FAILURE_SAY",
    "DEFAULT_HOLDING",
    "DEFAULT_IDLE_GOODBYE",
    "DEFAULT_INSTRUCTIONS",
    "LOOPBACK_HOSTS",
    "RENAMED",
    "STREAM_SIGNATURE_MODES",
    "Secret",
    "Settings",
    "load_environ",
]

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


@dataclass(frozen=True)
class Settings(SettingsFields):
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

        def bounded(name: str, default: float, top: float, what: str) -> float:
            raw = environ.get(name, "").strip()
            if raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not 0.0 <= value <= top or value == math.inf:
                raise ConfigError(f"{name}={raw!r} must be {what}")
            return value

        def seconds_or_off(name: str, default: float) -> float:
            return bounded(name, default, math.inf, "a number of seconds, 0 (off) or more")

        def fraction(name: str, default: float) -> float:
            return bounded(name, default, 1.0, "a number from 0 to 1")

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
        check(self)

    def shutdown_plan(self) -> ShutdownPlan:
        return ShutdownPlan(self.shutdown_timeout_s, self.drain_timeout_s, self.closing_timeout_s)

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
