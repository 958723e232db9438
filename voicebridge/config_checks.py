"""Settings checked together at start-up: each refusal names the variable and the fix."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from voicebridge.config_fields import LOOPBACK_HOSTS, STREAM_SIGNATURE_MODES, SettingsFields
from voicebridge.core.realtime import (
    NOISE_REDUCTION_TYPES,
    TRANSCRIPTION_MODELS,
    TURN_DETECTION_TYPES,
    VAD_EAGERNESS,
)
from voicebridge.core.shutdown import ShutdownPlan
from voicebridge.errors import ConfigError
from voicebridge.logs import mask_url

__all__ = ["check"]


def check(s: SettingsFields) -> None:
    """Refuse settings that cannot work together; each error names the variable and the fix."""
    url = urlsplit(s.realtime_url)
    if url.scheme not in ("ws", "wss") or not url.hostname:
        raise ConfigError(
            f"REALTIME_URL={mask_url(s.realtime_url)!r} must be a ws:// or wss:// URL, "
            "e.g. wss://api.openai.com/v1/realtime"
        )
    if url.fragment or "#" in s.realtime_url:
        raise ConfigError(f"REALTIME_URL={mask_url(s.realtime_url)!r} must not have a #fragment")
    if s.public_url is not None:
        pub = urlsplit(s.public_url)
        if pub.scheme in ("ws", "wss"):
            raise ConfigError(
                f"PUBLIC_URL={s.public_url!r}: give the https:// base Twilio posts the "
                "webhook to (e.g. https://voice.example.com); voicebridge derives the "
                "wss:// stream URL from it"
            )
        local = pub.hostname in LOOPBACK_HOSTS
        if not pub.hostname or not (pub.scheme == "https" or (pub.scheme == "http" and local)):
            raise ConfigError(
                f"PUBLIC_URL={s.public_url!r} must be an https:// URL such as "
                "https://voice.example.com (Twilio only streams to wss://)"
            )
        if pub.query or pub.fragment or "?" in s.public_url or "#" in s.public_url:
            raise ConfigError(f"PUBLIC_URL={s.public_url!r} must not have a query string")
    choices = {
        "UPSTREAM_AUDIO": (s.upstream_audio, ("pcmu", "pcm24k")),
        "REALTIME_AUTH": (s.realtime_auth, ("bearer", "api-key")),
        "SESSION_LIMIT_ACTION": (s.session_limit_action, ("end", "renew")),
        "TWILIO_STREAM_SIGNATURE": (s.twilio_stream_signature, STREAM_SIGNATURE_MODES),
        "LOG_FORMAT": (s.log_format, ("text", "json")),
        "TURN_DETECTION": (s.turn_detection, TURN_DETECTION_TYPES),
        "VAD_EAGERNESS": (s.vad_eagerness, VAD_EAGERNESS),
        "NOISE_REDUCTION": (s.noise_reduction, (*NOISE_REDUCTION_TYPES, "off")),
    }
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{name}={value!r} must be one of: {', '.join(allowed)}")
    if s.transcription_model and s.transcription_model not in TRANSCRIPTION_MODELS:
        raise ConfigError(
            f"TRANSCRIPTION_MODEL={s.transcription_model!r} is not a known input "
            f"transcription model ({', '.join(TRANSCRIPTION_MODELS)}); leave it empty for off"
        )
    if s.idle_timeout_ms and s.turn_detection != "server_vad":
        raise ConfigError("IDLE_TIMEOUT_MS works only with TURN_DETECTION=server_vad")
    if s.twilio_account_sid and not re.fullmatch(r"AC[0-9a-fA-F]{32}", s.twilio_account_sid):
        raise ConfigError(
            f"TWILIO_ACCOUNT_SID={s.twilio_account_sid!r} is not an account SID "
            "(AC followed by 32 hex digits; see the Twilio console)"
        )
    if s.twilio_account_sid and not (s.twilio_auth_token or s.twilio_api_key_sid):
        # REST calls authenticate with both; one alone would be dropped silently.
        raise ConfigError(
            "TWILIO_ACCOUNT_SID is set but TWILIO_AUTH_TOKEN is not: the REST API needs "
            "both (or TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET). Unset "
            "TWILIO_ACCOUNT_SID (calls end through the after-stream answer without it) or "
            "set TWILIO_AUTH_TOKEN"
        )
    api = urlsplit(s.twilio_api_base)
    if api.scheme not in ("https", "http") or not api.hostname:
        raise ConfigError(f"TWILIO_API_BASE={s.twilio_api_base!r} must be an http(s) URL")
    if s.twilio_auth_token and not s.public_url:
        raise ConfigError(
            "TWILIO_AUTH_TOKEN is set but PUBLIC_URL is not: set PUBLIC_URL to the https:// "
            "base Twilio calls (e.g. https://voice.example.com). Signatures cover the exact "
            "URL Twilio requested, which cannot be rebuilt reliably from proxy headers"
        )
    if 0 < len(s.stream_token_secret.reveal()) < 16:
        raise ConfigError("STREAM_TOKEN_SECRET must be at least 16 characters (32+ random)")
    if s.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"LOG_LEVEL={s.log_level!r} must be DEBUG, INFO, WARNING or ERROR")
    _local_barge_in(s)
    _http_edge(s)
    _scaling(s)
    _shutdown(s)
    _business(s)


def _http_edge(s: SettingsFields) -> None:
    # Floors that keep Twilio's requests (and a proxy's added headers) well inside.
    if s.http_max_header_bytes < 8192:
        raise ConfigError(f"HTTP_MAX_HEADER_BYTES={s.http_max_header_bytes} must be at least 8192")
    for name, value in (
        ("HTTP_MAX_HEADER_LINE_BYTES", s.http_max_header_line_bytes),
        ("HTTP_MAX_REQUEST_LINE_BYTES", s.http_max_request_line_bytes),
    ):
        if not 1024 <= value <= s.http_max_header_bytes:
            raise ConfigError(
                f"{name}={value} must be from 1024 to HTTP_MAX_HEADER_BYTES "
                f"({s.http_max_header_bytes})"
            )
    if s.http_max_connections <= s.max_calls:
        raise ConfigError(
            f"HTTP_MAX_CONNECTIONS={s.http_max_connections} must exceed MAX_CALLS="
            f"{s.max_calls}: each call holds a connection, webhooks need more"
        )


def _business(s: SettingsFields) -> None:
    key_sid, key_secret = s.twilio_api_key_sid, s.twilio_api_key_secret
    if key_sid and not re.fullmatch(r"SK[0-9a-fA-F]{32}", key_sid):
        raise ConfigError(
            f"TWILIO_API_KEY_SID={key_sid!r} is not an API key SID (SK followed by 32 hex "
            "digits; Twilio console → API keys)"
        )
    if bool(key_sid) != bool(key_secret) or (key_sid and not s.twilio_account_sid):
        raise ConfigError(
            "TWILIO_API_KEY_SID, TWILIO_API_KEY_SECRET and TWILIO_ACCOUNT_SID go together: "
            "the key authenticates, the account SID names the calls' account"
        )
    if s.say_language and not re.fullmatch(r"[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*", s.say_language):
        raise ConfigError(f"SAY_LANGUAGE={s.say_language!r} is not a language tag, e.g. en-US")
    for name, path in (("PROFILES_FILE", s.profiles_file), ("TOOLS_FILE", s.tools_file)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{name}={path!r}: no such file")
    if s.call_events_url:
        url = urlsplit(s.call_events_url)
        local = url.hostname in LOOPBACK_HOSTS
        if not url.hostname or not (url.scheme == "https" or (url.scheme == "http" and local)):
            raise ConfigError(
                f"CALL_EVENTS_URL={mask_url(s.call_events_url)!r} must be an https:// URL "
                "(http:// only on this machine)"
            )
    if s.call_events_url and not s.signing_secret:
        # HTTP tools need it too: checked where their files are read (server/profiles.py).
        raise ConfigError(
            "CALL_EVENTS_URL is set but SIGNING_SECRET is not: events are signed with it "
            "(X-Voicebridge-Signature) so your backend can refuse forgeries; set 32+ random "
            "characters, the same value your backend verifies with"
        )
    if 0 < len(s.signing_secret.reveal()) < 16:
        raise ConfigError("SIGNING_SECRET must be at least 16 characters (32+ random)")


def _scaling(s: SettingsFields) -> None:
    if s.redis_url and urlsplit(s.redis_url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"REDIS_URL={mask_url(s.redis_url)!r} must be a redis://, rediss:// or "
            "unix:// URL, e.g. redis://redis.internal:6379/0"
        )
    if s.api_token and not (s.outbound_caller_id and s.public_url):
        raise ConfigError(
            "API_TOKEN turns outbound calls on: set OUTBOUND_CALLER_ID (your Twilio number, "
            "E.164) and PUBLIC_URL too, or leave API_TOKEN empty"
        )
    if s.outbound_caller_id and not re.fullmatch(r"\+[1-9][0-9]{6,14}", s.outbound_caller_id):
        raise ConfigError(
            f"OUTBOUND_CALLER_ID={s.outbound_caller_id!r} must be an E.164 number such "
            "as +14155550100"
        )
    if s.outbound_calls_per_s <= 0:
        raise ConfigError("OUTBOUND_CALLS_PER_S must be above 0 (e.g. 1)")
    if s.max_calls_total and not s.redis_url:
        raise ConfigError("MAX_CALLS_TOTAL caps the calls of instances sharing REDIS_URL: set both")
    if s.max_calls < s.workers:
        raise ConfigError(
            f"MAX_CALLS={s.max_calls} is less than the {s.workers} workers "
            "(WEB_CONCURRENCY, --workers): each worker needs at least one call slot"
        )
    if s.realtime_ca_file and not Path(s.realtime_ca_file).is_file():
        raise ConfigError(f"REALTIME_CA_FILE={s.realtime_ca_file!r}: no such file")


def _shutdown(s: SettingsFields) -> None:
    plan = ShutdownPlan(s.shutdown_timeout_s, s.drain_timeout_s, s.closing_timeout_s)
    if not plan.fits():
        reserve = plan.needed_s - plan.drain_s - plan.closing_s
        raise ConfigError(
            f"DRAIN_TIMEOUT_S={plan.drain_s:g} and CLOSING_TIMEOUT_S={plan.closing_s:g} "
            f"do not fit in SHUTDOWN_TIMEOUT_S={plan.budget_s:g}: their sum plus "
            f"{reserve:g} s (each call's ending, then the forced ending of any left) must "
            f"not exceed it; lower them, or raise SHUTDOWN_TIMEOUT_S to {plan.needed_s:g} "
            "and the platform's grace period above that"
        )


def _local_barge_in(s: SettingsFields) -> None:
    ranges = {
        # Under 20 ms is one frame: a click; over 500 ms is later than the upstream.
        "LOCAL_BARGE_IN_MIN_SPEECH_MS": (s.local_barge_in_min_speech_ms, 20, 500),
        # The upstream's speech_started takes a round trip and its VAD's onset.
        "LOCAL_BARGE_IN_WINDOW_MS": (s.local_barge_in_window_ms, 100, 5000),
        "LOCAL_BARGE_IN_REWIND_MS": (s.local_barge_in_rewind_ms, 0, 2000),
    }
    for name, (value, low, high) in ranges.items():
        if not low <= value <= high:
            raise ConfigError(f"{name}={value} must be from {low} to {high} (ms)")
