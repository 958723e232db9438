"""``voicebridge doctor``: check a deployment end to end, then print the Twilio console settings.

Checks, in order, each printed as one line (``[ ok ]``, ``[FAIL] … — fix: …`` or ``[warn]``):

1. the settings load (as ``voicebridge serve`` reads them: the environment over ``.env``);
2. ``PUBLIC_URL`` is an ``https://`` base (not ``wss://``, not ``http://``);
3. the webhook: ``POST PUBLIC_URL/twilio/stream`` as Twilio would (signed with
   ``TWILIO_AUTH_TOKEN`` when set) answers TwiML whose ``<Stream url>`` is
   ``wss://HOST/realtime`` with a ``StreamToken``; ``PUBLIC_URL/twilio/fallback`` answers
   TwiML; with a token, an unsigned request is refused;
4. the upstream accepts the key: the handshake, then the bridge's own ``session.update``
   confirmed by ``session.updated`` with the asked audio formats;
5. ``STREAM_TOKEN_SECRET``, ``TWILIO_AUTH_TOKEN`` and ``TWILIO_ACCOUNT_SID`` are set.

Then it prints what to paste into the Twilio console. Every network wait is bounded by
``--timeout``. Exit status: 0 when every check passed, 1 when any failed, 2 for bad arguments.

The webhook check reserves a call slot on the service for a made-up CallSid
(``CAd0c7d0c7…``), held until its stream token expires (``STREAM_TOKEN_TTL_S``).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import re
import secrets
import ssl
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from voicebridge.config import Settings
from voicebridge.core.admission import TOKEN_PARAMETER
from voicebridge.core.twiml import stream_url
from voicebridge.errors import ConfigError
from voicebridge.twilio_sim.webhook_client import (
    LocalProxy,
    WebhookAnswer,
    call_params,
    post_webhook,
)

__all__ = ["add_doctor_parser", "doctor", "run_doctor"]

DEFAULT_TIMEOUT = 10.0
# The variables doctor checks itself, with a specific fix each; the others must load as
# `voicebridge serve` loads them.
OWN_CHECKS = ("PUBLIC_URL", "TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "STREAM_TOKEN_SECRET")
# A made-up call, recognisable in the service's logs: "d0c7" for doctor.
DOCTOR_SID_PREFIX = "CA" + "d0c7" * 4
DOCTOR_ACCOUNT_SID = "AC" + "d0c7" * 8
DOCTOR_FROM = "+15005550006"  # Twilio's test numbers: never a real subscriber
DOCTOR_TO = "+15005550001"
CONSOLE_PATH = "Phone Numbers → Manage → Active numbers → your number → Voice Configuration"
_LOCAL_HOSTS = ("localhost", "localhost.localdomain")


@dataclass
class Report:
    """The check lines as they are printed, and whether any failed."""

    out: TextIO
    checks: int = 0
    failed: int = 0

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def ok(self, text: str) -> None:
        self.checks += 1
        self._line(f"[ ok ] {text}")

    def fail(self, text: str, fix: str) -> None:
        self.checks += 1
        self.failed += 1
        self._line(f"[FAIL] {text} — fix: {fix}")

    def warn(self, text: str) -> None:
        self._line(f"[warn] {text}")

    def note(self, text: str) -> None:
        self._line(f"       {text}")


# -- settings -----------------------------------------------------------------------------


def load_settings(environ: Mapping[str, str]) -> tuple[Settings | None, str | None]:
    """(settings, None), or (None, the error) when a setting doctor does not check is wrong.

    When one of :data:`OWN_CHECKS` is wrong, the settings without it are returned: its own
    check explains the error, and the upstream can still be checked.
    """
    try:
        return Settings.from_env(environ), None
    except ConfigError:
        pass
    bad = {
        name
        for name in ("PUBLIC_URL", "TWILIO_ACCOUNT_SID", "STREAM_TOKEN_SECRET")
        if environ.get(name, "").strip() and _config_error(name, environ[name])
    }
    if "PUBLIC_URL" in bad or not environ.get("PUBLIC_URL", "").strip():
        bad.add("TWILIO_AUTH_TOKEN")  # the token requires PUBLIC_URL
    error = ""
    for drop in (bad, set(OWN_CHECKS)):
        try:
            return Settings.from_env({k: v for k, v in environ.items() if k not in drop}), None
        except ConfigError as exc:
            error = str(exc)
    return None, error


def _config_error(name: str, value: str) -> str | None:
    """What ``voicebridge serve`` would say about this one variable, or None."""
    try:
        Settings.from_env({name: value})
    except ConfigError as exc:
        return str(exc)
    return None


def _is_local(host: str) -> bool:
    if host in _LOCAL_HOSTS or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def check_public_url(report: Report, raw: str) -> str | None:
    """The validated https:// base, or None after a failed check line."""
    value = raw.strip().rstrip("/")
    if not value:
        report.fail(
            "PUBLIC_URL is not set: doctor cannot reach the webhook, and the service cannot "
            "check Twilio's signatures without it",
            "set PUBLIC_URL=https://YOUR-HOST, the public https:// address Twilio posts the "
            "webhook to (e.g. https://voice.example.com), here and on the service",
        )
        return None
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    rest = value.split("://", 1)[-1]
    if scheme in ("ws", "wss"):
        report.fail(
            f"PUBLIC_URL={value} is a WebSocket URL",
            f"set PUBLIC_URL=https://{rest} — the https:// base Twilio POSTs the webhook to; "
            f"voicebridge derives the wss://{rest}/realtime stream URL from it",
        )
        return None
    if scheme == "http":
        if _is_local(parts.hostname or ""):
            fix = (
                "Twilio cannot reach a local address: expose the service through an https:// "
                "tunnel (e.g. `ngrok http PORT`) and set PUBLIC_URL to its https:// address"
            )
        else:
            fix = (
                f"serve it over TLS (the PaaS router or a reverse proxy terminates it) and set "
                f"PUBLIC_URL=https://{rest}"
            )
        report.fail(
            f"PUBLIC_URL={value} is http://: Twilio streams calls only to wss://, so the "
            "service must be reached over https://",
            fix,
        )
        return None
    if scheme != "https" or not parts.hostname:
        report.fail(
            f"PUBLIC_URL={value!r} is not an https:// URL",
            "set PUBLIC_URL=https://YOUR-HOST (e.g. https://voice.example.com)",
        )
        return None
    if parts.query or parts.fragment or "?" in value or "#" in value or parts.username:
        base = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1], query=""))
        report.fail(
            f"PUBLIC_URL={value!r} has more than a base URL (a query string, fragment or user)",
            f"set PUBLIC_URL={base.split('#', 1)[0]}",
        )
        return None
    error = _config_error("PUBLIC_URL", value)
    if error:
        report.fail(error, "set PUBLIC_URL=https://YOUR-HOST (e.g. https://voice.example.com)")
        return None
    report.ok(f"PUBLIC_URL={value} is an https:// base")
    if _is_local(parts.hostname):
        report.warn(
            f"{parts.hostname} is not reachable from the internet: Twilio cannot call it "
            "(fine only when checking a service through --connect-to)"
        )
    return value


# -- the webhook --------------------------------------------------------------------------


async def _post(
    report: Report,
    label: str,
    url: str,
    params: Mapping[str, str],
    *,
    auth_token: str,
    proxy: LocalProxy | None,
    timeout: float,  # noqa: ASYNC109 (passed on to post_webhook)
) -> WebhookAnswer | None:
    """POST like Twilio; the answer when it is 200 TwiML, else None after a failed check."""
    host = urlsplit(url).hostname or "the host"
    try:
        answer = await post_webhook(
            url, params, auth_token=auth_token or None, proxy=proxy, timeout=timeout
        )
    except TimeoutError:
        report.fail(
            f"{label} POST {url}: no answer within {timeout:g} s",
            "check that the service is running and answering (its logs, GET /healthz); "
            "Twilio waits 15 s at most",
        )
        return None
    except ssl.SSLCertVerificationError as exc:
        report.fail(
            f"{label} POST {url}: the TLS certificate is refused ({exc.verify_message})",
            f"serve a valid certificate for {host}: Twilio refuses invalid ones too",
        )
        return None
    except OSError as exc:
        where = f"voicebridge serving at {proxy.connect_to}" if proxy else f"DNS for {host}"
        report.fail(
            f"{label} POST {url}: unreachable ({type(exc).__name__}: {exc})",
            f"check that the service is deployed and running, and {where}",
        )
        return None
    except (ValueError, EOFError) as exc:  # EOFError: the answer was cut short
        report.fail(
            f"{label} POST {url}: the answer is not TwiML ({type(exc).__name__}: {exc})",
            "PUBLIC_URL must be the base voicebridge is served at",
        )
        return None
    if answer.status == 403:
        if auth_token:
            report.fail(
                f"{label} POST {url}: the service refused the signature (HTTP 403): "
                "TWILIO_AUTH_TOKEN differs between the service and this environment (or "
                "PUBLIC_URL does: the signature covers the URL)",
                "set the same TWILIO_AUTH_TOKEN (your account's primary Auth Token) and "
                "PUBLIC_URL here and on the service",
            )
        else:
            report.fail(
                f"{label} POST {url}: the service checks Twilio signatures (HTTP 403), but "
                "TWILIO_AUTH_TOKEN is not set here",
                "run doctor with the service's TWILIO_AUTH_TOKEN",
            )
        return None
    if answer.status in (404, 405):
        report.fail(
            f"{label} POST {url}: HTTP {answer.status}: no voicebridge webhook there",
            "set PUBLIC_URL to the base voicebridge is served at (the webhook is "
            "PUBLIC_URL/twilio/stream)",
        )
        return None
    if answer.status != 200:
        report.fail(
            f"{label} POST {url}: HTTP {answer.status}",
            "check the service's logs: Twilio needs 200 with TwiML",
        )
        return None
    if answer.twiml is None:
        report.fail(
            f"{label} POST {url}: answered {answer.content_type or 'no Content-Type'}, "
            "not TwiML (text/xml)",
            "PUBLIC_URL points at something other than voicebridge",
        )
        return None
    return answer


async def check_webhook(
    report: Report,
    base: str,
    *,
    auth_token: str,
    account_sid: str,
    token_ttl: float,
    proxy: LocalProxy | None,
    timeout: float,  # noqa: ASYNC109 (each request's bound)
) -> None:
    url = base + "/twilio/stream"
    call_sid = DOCTOR_SID_PREFIX + secrets.token_hex(8)
    params = call_params(
        call_sid, account_sid or DOCTOR_ACCOUNT_SID, from_=DOCTOR_FROM, to=DOCTOR_TO
    )
    answer = await _post(
        report, "webhook", url, params, auth_token=auth_token, proxy=proxy, timeout=timeout
    )
    if answer is None or answer.twiml is None:
        return
    twiml = answer.twiml
    expected = stream_url(base)
    if twiml.stream_url is None:
        report.fail(
            f"webhook POST {url}: TwiML without <Connect><Stream>: every call slot is taken "
            "(BUSY_SAY) or the service is shutting down",
            "check GET PUBLIC_URL/readyz; raise MAX_CALLS or add instances",
        )
        return
    if twiml.stream_url != expected:
        fix = "set PUBLIC_URL on the service to the same value as here"
        if not twiml.stream_url.startswith("wss://"):
            fix += " (without it, X-Forwarded-Proto counts only from FORWARDED_ALLOW_IPS)"
        report.fail(
            f"webhook POST {url}: the stream URL is {twiml.stream_url}, not {expected}", fix
        )
        return
    if not twiml.parameters.get(TOKEN_PARAMETER):
        report.fail(
            f"webhook POST {url}: no {TOKEN_PARAMETER} parameter: the service would refuse "
            "the stream",
            "deploy the same voicebridge version as this one",
        )
        return
    signed = "signed with TWILIO_AUTH_TOKEN" if auth_token else "unsigned"
    report.ok(
        f'webhook POST {url} ({signed}) answers TwiML <Connect><Stream url="{expected}"> '
        f"with a {TOKEN_PARAMETER}"
    )
    report.note(
        f"this check holds one call slot on the service for CallSid {call_sid} until its "
        f"token expires (STREAM_TOKEN_TTL_S: {token_ttl:g} s here)"
    )
    fallback = base + "/twilio/fallback"
    failed = {**params, "ErrorCode": "11200", "ErrorUrl": url}
    answer = await _post(
        report, "fallback", fallback, failed, auth_token=auth_token, proxy=proxy, timeout=timeout
    )
    if answer is None:
        return
    report.ok(f"fallback POST {fallback} answers TwiML")
    if auth_token:
        await check_unsigned_refused(report, fallback, failed, proxy=proxy, timeout=timeout)


async def check_unsigned_refused(
    report: Report,
    url: str,
    params: Mapping[str, str],
    *,
    proxy: LocalProxy | None,
    timeout: float,  # noqa: ASYNC109 (passed on to post_webhook)
) -> None:
    """With an Auth Token here, the service must refuse an unsigned request (no slot taken)."""
    try:
        answer = await post_webhook(url, params, proxy=proxy, timeout=timeout)
    except (OSError, TimeoutError, ValueError, EOFError) as exc:
        report.fail(
            f"unsigned POST {url}: {type(exc).__name__}: {exc}",
            "check that the service is running and answering (its logs, GET /healthz)",
        )
        return
    if answer.status == 403:
        report.ok(f"unsigned POST {url} is refused (403): the service checks signatures")
    elif answer.status == 200:
        report.fail(
            f"unsigned POST {url} was answered: the service does not check Twilio signatures",
            "set TWILIO_AUTH_TOKEN and PUBLIC_URL on the service too",
        )
    else:
        report.fail(
            f"unsigned POST {url}: HTTP {answer.status}, expected 403",
            "check the service's logs",
        )


# -- the upstream -------------------------------------------------------------------------


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


async def check_upstream(report: Report, settings: Settings, timeout: float) -> None:  # noqa: ASYNC109
    from websockets.exceptions import ConnectionClosed

    from voicebridge.core import realtime as rt
    from voicebridge.errors import RealtimeProtocolError, UpstreamError
    from voicebridge.server.call import session_config
    from voicebridge.server.tools import Toolbox, load_custom_tools
    from voicebridge.server.upstream import close_upstream, open_upstream

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
        conn = await open_upstream(settings, deadline=timeout)
    except UpstreamError as exc:
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
        return
    asked = (config.input_format, config.output_format)
    try:
        await conn.send(rt.session_update(config, "doctor_session_update"))
        async with asyncio.timeout(timeout):
            async for message in conn:
                event = rt.parse_realtime(message)
                if isinstance(event, rt.ErrorEvent):
                    param = f" ({event.param})" if event.param else ""
                    report.fail(
                        f"upstream {where} refused the session: error {event.code}{param}: "
                        f"{event.message}",
                        _error_fix(event.code, event.param),
                    )
                    return
                if not isinstance(event, rt.SessionUpdated):
                    continue
                got = rt.session_audio_formats(event.session)
                if got != asked:
                    report.fail(
                        f"upstream {where}: session.updated has audio formats {got}, the bridge "
                        f"asks {asked}",
                        "the model refuses this UPSTREAM_AUDIO: try the other one (pcmu or pcm24k)",
                    )
                    return
                ms = (time.monotonic() - t0) * 1000
                report.ok(
                    f"upstream {where} accepted the key and the session ({asked[0]} in and "
                    f"out, voice {settings.voice}) in {ms:.0f} ms"
                )
                return
        code, reason = conn.close_code, conn.close_reason
        report.fail(
            f"upstream {where} closed the connection before session.updated "
            f"({code} {reason})".rstrip(),
            "check REALTIME_URL and REALTIME_MODEL",
        )
    except TimeoutError:
        report.fail(
            f"upstream {where}: no session.updated within {timeout:g} s",
            "the upstream is not a Realtime API (GA), or is overloaded: check REALTIME_URL",
        )
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else None
        reason = exc.rcvd.reason if exc.rcvd else ""
        fix = "check REALTIME_URL and REALTIME_MODEL"
        if code == 4000 or "beta" in reason:
            fix = _error_fix("beta_api_shape_disabled", None)
        report.fail(
            f"upstream {where} closed the connection before session.updated: {code} {reason}",
            fix,
        )
    except RealtimeProtocolError as exc:
        report.fail(
            f"upstream {where} sent something that is not a Realtime event ({exc})",
            "REALTIME_URL must point at the Realtime API (GA)",
        )
    finally:
        await close_upstream(conn)


# -- the secrets --------------------------------------------------------------------------


def check_secrets(report: Report, environ: Mapping[str, str]) -> None:
    secret = environ.get("STREAM_TOKEN_SECRET", "").strip()
    error = _config_error("STREAM_TOKEN_SECRET", secret) if secret else None
    if not secret:
        report.fail(
            "STREAM_TOKEN_SECRET is not set: each process makes a random one, so several "
            "instances (or a restart between webhook and stream) will refuse calls",
            "set the same 32+ random characters on every instance, e.g. the output of "
            'python3 -c "import secrets; print(secrets.token_urlsafe(32))"',
        )
    elif error:
        report.fail(error, "set 32+ random characters, the same on every instance")
    else:
        report.ok("STREAM_TOKEN_SECRET is set")

    token = environ.get("TWILIO_AUTH_TOKEN", "").strip()
    if not token:
        report.fail(
            "TWILIO_AUTH_TOKEN is not set: signatures are not checked, so anyone who finds "
            "the webhook URL can place calls on your upstream account",
            "set TWILIO_AUTH_TOKEN to your account's primary Auth Token (Twilio console → "
            "Account Info), with PUBLIC_URL, here and on the service",
        )
    else:
        report.ok("TWILIO_AUTH_TOKEN is set")
        if not re.fullmatch(r"[0-9a-fA-F]{32}", token):
            report.warn(
                "TWILIO_AUTH_TOKEN does not look like an Auth Token (32 hex characters): "
                "Twilio signs with the account's primary Auth Token, not an API key secret"
            )

    sid = environ.get("TWILIO_ACCOUNT_SID", "").strip()
    error = _config_error("TWILIO_ACCOUNT_SID", sid) if sid else None
    if not sid:
        report.fail(
            "TWILIO_ACCOUNT_SID is not set: it is needed to end and transfer calls through "
            "Twilio's REST API",
            "set TWILIO_ACCOUNT_SID=AC… (Twilio console → Account Info)",
        )
    elif error:
        report.fail(error, "copy the Account SID from the Twilio console → Account Info")
    else:
        report.ok(f"TWILIO_ACCOUNT_SID={sid} is set")


# -- the console --------------------------------------------------------------------------


def print_console(report: Report, base: str | None, raw_public_url: str) -> None:
    """What to paste into the Twilio console, for the https:// base (or its best guess)."""
    say = report.out.write
    if base is None:
        rest = raw_public_url.strip().rstrip("/").split("://", 1)[-1]
        if rest and urlsplit("https://" + rest).hostname:
            base = "https://" + rest
            caveat = " (once PUBLIC_URL is fixed as above)"
        else:
            base, caveat = "https://YOUR-HOST", " (set PUBLIC_URL to know YOUR-HOST)"
    else:
        caveat = ""
    say(f"\nTwilio console → {CONSOLE_PATH}{caveat}:\n")
    say("  Configure with: Webhook\n")
    say(f"  A call comes in: Webhook, URL {base}/twilio/stream, HTTP POST\n")
    say(f"  Primary handler fails: URL {base}/twilio/fallback, HTTP POST\n")
    say(
        f"Paste https:// URLs there, never a wss:// URL: Twilio opens {stream_url(base)} "
        "itself, as the webhook's TwiML tells it.\n"
    )
    report.out.flush()


# -- the command --------------------------------------------------------------------------


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
        await check_webhook(
            report,
            base,
            auth_token=environ.get("TWILIO_AUTH_TOKEN", "").strip(),
            account_sid=environ.get("TWILIO_ACCOUNT_SID", "").strip(),
            token_ttl=(settings or Settings()).stream_token_ttl_s,
            proxy=LocalProxy(connect_to) if connect_to else None,
            timeout=timeout,
        )
    else:
        report.note("the webhook is not checked until PUBLIC_URL is fixed")
    if settings is not None:
        await check_upstream(report, settings, timeout)
    else:
        report.note("the upstream is not checked until the settings load")
    check_secrets(report, environ)
    print_console(report, base, raw_public_url)
    if report.failed:
        report.out.write(f"\n{report.failed} of {report.checks} checks failed.\n")
        return 1
    report.out.write(f"\nAll {report.checks} checks passed.\n")
    return 0


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


def add_doctor_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``doctor`` to the ``voicebridge`` subcommands (``sub`` from add_subparsers)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "doctor",
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
    return p


def run_doctor(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``voicebridge doctor``: the exit status."""
    try:
        return asyncio.run(doctor(environ, connect_to=args.connect_to, timeout=args.timeout))
    except KeyboardInterrupt:
        return 130
