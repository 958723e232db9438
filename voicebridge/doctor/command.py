"""The ``voicebridge doctor`` command: its options, and every check in order."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from typing import TextIO

from voicebridge.config import Settings
from voicebridge.doctor.business import check_business
from voicebridge.doctor.console import print_console
from voicebridge.doctor.credentials import check_credentials
from voicebridge.doctor.public_url import check_public_url
from voicebridge.doctor.report import Report
from voicebridge.doctor.settings import config_error, load_settings
from voicebridge.doctor.stream import check_stream
from voicebridge.doctor.upstream import check_upstream
from voicebridge.doctor.webhook import check_webhook
from voicebridge.startup import read_environ
from voicebridge.twilio_sim.webhook_client import LocalProxy

__all__ = ["NAME", "add_parser", "doctor", "run"]

NAME = "doctor"
DEFAULT_TIMEOUT = 10.0


async def doctor(
    environ: Mapping[str, str],
    *,
    connect_to: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (each network wait's bound)
    out: TextIO | None = None,
) -> int:
    """Run every check and print the report; the exit status (0: all passed, 1: not)."""
    report = Report(out or sys.stdout)
    settings, error = load_settings(environ)
    if error is not None:
        report.fail(
            f"the settings do not load: {error}",
            "correct it in the environment or .env (`voicebridge serve` refuses to start too)",
        )
    raw_public_url = environ.get("PUBLIC_URL", "")
    base = check_public_url(report, raw_public_url)
    if base is not None:
        await _webhook_and_stream(
            report, base, settings or Settings(), environ, connect_to, timeout
        )
    else:
        report.note("the webhook and the stream are not checked until PUBLIC_URL is fixed")
    if settings is not None:
        await check_upstream(report, settings, timeout)
    else:
        report.note("the upstream is not checked until the settings load")
    check_credentials(report, environ)
    if settings is not None:
        check_business(report, settings)
    print_console(report, base, raw_public_url)
    if report.failed:
        report.out.write(f"\n{report.failed} of {report.checks} checks failed.\n")
        return 1
    report.out.write(f"\nAll {report.checks} checks passed.\n")
    return 0


async def _webhook_and_stream(
    report: Report,
    base: str,
    settings: Settings,
    environ: Mapping[str, str],
    connect_to: str | None,
    timeout: float,  # noqa: ASYNC109 (each network wait's bound)
) -> None:
    """Checks 3 and 4: the webhook as Twilio posts it, then the stream its answer names."""
    auth_token = environ.get("TWILIO_AUTH_TOKEN", "").strip()
    proxy = LocalProxy(connect_to) if connect_to else None
    target = await check_webhook(
        report,
        base,
        auth_token=auth_token,
        account_sid=environ.get("TWILIO_ACCOUNT_SID", "").strip(),
        proxy=proxy,
        timeout=timeout,
        failure_say=settings.failure_say,
        busy_say=settings.busy_say,
    )
    if target is None:
        report.note("the stream is not checked until the webhook answers with one")
        return
    secret = environ.get("STREAM_TOKEN_SECRET", "").strip()
    streamed = await check_stream(
        report,
        base,
        target,
        auth_token=auth_token,
        # As the service mints it; one that would not load is the credentials check's.
        secret="" if config_error("STREAM_TOKEN_SECRET", secret) else secret,
        token_ttl=settings.stream_token_ttl_s,
        proxy=proxy,
        timeout=timeout,
    )
    if not streamed:
        report.note(
            f"the webhook check holds one call slot on the service for CallSid "
            f"{target.call_sid} until its token expires (STREAM_TOKEN_TTL_S: "
            f"{settings.stream_token_ttl_s:g} s here)"
        )


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8000)")
    return value


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 600:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds (0-600]")
    return seconds


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        NAME,
        help="check PUBLIC_URL, the webhook, the upstream key and the secrets; print the "
        "Twilio console settings",
        description=(
            "Check a deployment with the same settings as `voicebridge serve` (the environment "
            "over .env): PUBLIC_URL, the webhook and fallback, the upstream key and session, "
            "the secrets. Then print what to paste into the Twilio console. Exit status: 0 "
            "when every check passed, 1 otherwise, 2 for bad arguments."
        ),
    )
    p.add_argument(
        "--connect-to",
        type=_host_port,
        metavar="HOST:PORT",
        help="reach PUBLIC_URL at this address in clear text, as a TLS-terminating proxy would",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"bound of each network wait (default {DEFAULT_TIMEOUT:g})",
    )


def run(args: argparse.Namespace) -> int:
    """The settings are read but not required to load: a bad one is a failed check."""
    environ = read_environ(args.env_file)
    return asyncio.run(doctor(environ, connect_to=args.connect_to, timeout=args.timeout))
