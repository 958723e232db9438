"""Check 5: the upstream accepts the key and the session the bridge asks for."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from voicebridge.config import Settings
from voicebridge.core import realtime as rt
from voicebridge.doctor.report import Report
from voicebridge.errors import ConfigError, RealtimeProtocolError, UpstreamClosed, UpstreamError
from voicebridge.server.session import session_config
from voicebridge.server.tools import Toolbox, load_custom_tools
from voicebridge.server.upstream import UpstreamConnection, connect_upstream

__all__ = ["check_upstream", "display_upstream"]


def display_upstream(settings: Settings) -> str:
    """The upstream URL with only its ``model`` parameter: nothing secret is ever printed."""
    parts = urlsplit(settings.upstream_url())
    model = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k == "model"]
    return urlunsplit(parts._replace(query=urlencode(model), fragment=""))


def _error_fix(code: str | None, param: str | None) -> str:
    if code == "beta_api_shape_disabled":
        return "REALTIME_URL must be the GA Realtime API (no OpenAI-Beta header, no beta events)"
    if code and "model" in code:
        return "check REALTIME_MODEL (or the model in REALTIME_URL)"
    if param:
        return f"the setting behind {param} is refused: check VOICE, TRANSCRIPTION_MODEL, ..."
    return "check the settings the error names, and the model's documentation"


def _connect_failed(report: Report, where: str, exc: UpstreamError) -> None:
    if exc.status in (401, 403):
        report.fail(
            f"upstream {where}: the key is refused (HTTP {exc.status})",
            "check OPENAI_API_KEY / REALTIME_AUTH (bearer: Authorization header, OpenAI "
            "and Azure Entra; api-key: Azure's api-key header)",
        )
    elif exc.status is not None:
        report.fail(
            f"upstream {where}: {exc}",
            "check REALTIME_URL and REALTIME_MODEL (a 404 is a wrong path or model)",
        )
    else:
        report.fail(
            f"upstream {where} unreachable: {exc}",
            "check REALTIME_URL, and that this host reaches it (DNS, firewall, proxy)",
        )


async def check_upstream(report: Report, settings: Settings, timeout: float) -> None:  # noqa: ASYNC109
    """Open the upstream as a call does and send the bridge's own ``session.update``."""
    where = display_upstream(settings)
    if settings.upstream_is_openai and not settings.openai_api_key:
        report.fail(
            f"upstream {where}: OPENAI_API_KEY is empty",
            "set OPENAI_API_KEY (in the environment or .env) to a key with Realtime access",
        )
        return
    try:  # the session.update the bridge sends, its tools included
        toolbox = Toolbox(settings, load_custom_tools(settings.custom_tools))
    except ConfigError as exc:
        report.fail(
            f"upstream not checked: the tools do not load: {exc}",
            "correct CUSTOM_TOOLS / TRANSFER_DESTINATIONS (`voicebridge serve` fails too)",
        )
        return
    config = session_config(settings, toolbox.declarations())
    t0 = time.monotonic()
    try:
        conn = await connect_upstream(settings, timeout)
    except UpstreamError as exc:
        _connect_failed(report, where, exc)
        return
    try:
        got = await _session_updated(report, conn, where, config, timeout)
        ms = (time.monotonic() - t0) * 1000
    finally:
        await conn.close()
    if got is None:
        return
    asked = (config.input_format, config.output_format)
    if got != asked:
        report.fail(
            f"upstream {where}: session.updated has audio formats {got}, the bridge asks {asked}",
            "the model refuses this UPSTREAM_AUDIO: try the other one (pcmu or pcm24k)",
        )
        return
    report.ok(
        f"upstream {where} accepted the key and the session ({asked[0]} in and out, voice "
        f"{settings.voice}) in {ms:.0f} ms"
    )


async def _session_updated(
    report: Report,
    conn: UpstreamConnection,
    where: str,
    config: rt.SessionConfig,
    timeout: float,  # noqa: ASYNC109 (the wait for session.updated)
) -> tuple[str | None, str | None] | None:
    """Send ``session.update``; the audio formats ``session.updated`` confirms, or None after
    a failed check line."""
    try:
        await conn.send(rt.session_update(config, "doctor_session_update"))
        async with asyncio.timeout(timeout):
            while True:
                event = rt.parse_realtime(await conn.recv())
                if isinstance(event, rt.ErrorEvent):
                    param = f" ({event.param})" if event.param else ""
                    report.fail(
                        f"upstream {where} refused the session: error {event.code}{param}: "
                        f"{event.message}",
                        _error_fix(event.code, event.param),
                    )
                    return None
                if isinstance(event, rt.SessionUpdated):
                    return rt.session_audio_formats(event.session)
    except TimeoutError:
        report.fail(
            f"upstream {where}: no session.updated within {timeout:g} s",
            "the upstream is not a Realtime API (GA), or is overloaded: check REALTIME_URL",
        )
    except UpstreamClosed as exc:
        fix = "check REALTIME_URL and REALTIME_MODEL"
        if exc.code == 4000 or "beta" in exc.reason:
            fix = _error_fix("beta_api_shape_disabled", None)
        report.fail(
            f"upstream {where} closed the connection before session.updated: "
            f"{exc.code} {exc.reason}".rstrip(),
            fix,
        )
    except RealtimeProtocolError as exc:
        report.fail(
            f"upstream {where} sent something that is not a Realtime event ({exc})",
            "REALTIME_URL must point at the Realtime API (GA)",
        )
    return None
