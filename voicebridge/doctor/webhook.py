"""Check 3: the webhook and the fallback answer a Twilio-like POST with the right TwiML."""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from voicebridge.core.admission import TOKEN_PARAMETER
from voicebridge.core.twiml import stream_url
from voicebridge.doctor.report import Report
from voicebridge.doctor.stream import StreamTarget
from voicebridge.twilio_sim.webhook_client import (
    LocalProxy,
    WebhookAnswer,
    call_params,
    post_webhook,
)

__all__ = ["DOCTOR_SID_PREFIX", "check_unsigned_refused", "check_webhook"]

# A made-up call, recognisable in the service's logs: "d0c7" for doctor.
DOCTOR_SID_PREFIX = "CA" + "d0c7" * 4
DOCTOR_ACCOUNT_SID = "AC" + "d0c7" * 8
DOCTOR_FROM = "+15005550006"  # Twilio's test numbers: never a real subscriber
DOCTOR_TO = "+15005550001"


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
    proxy: LocalProxy | None,
    timeout: float,  # noqa: ASYNC109 (each request's bound)
    failure_say: str,
    busy_say: str,
) -> StreamTarget | None:
    """The webhook's TwiML streams to ``wss://HOST/realtime`` with a token; then the fallback.

    Returns the call to stream (check 4), when the webhook answered with one.
    """
    url = base + "/twilio/stream"
    call_sid = DOCTOR_SID_PREFIX + secrets.token_hex(8)
    params = call_params(
        call_sid, account_sid or DOCTOR_ACCOUNT_SID, from_=DOCTOR_FROM, to=DOCTOR_TO
    )
    answer = await _post(
        report, "webhook", url, params, auth_token=auth_token, proxy=proxy, timeout=timeout
    )
    if answer is None or answer.twiml is None:
        return None
    twiml = answer.twiml
    expected = stream_url(base)
    if twiml.stream_url is None:
        _no_stream(report, url, base, twiml.says_before, failure_say, busy_say)
        return None
    if twiml.stream_url != expected:
        fix = "set PUBLIC_URL on the service to the same value as here"
        if not twiml.stream_url.startswith("wss://"):
            fix += " (without it, X-Forwarded-Proto counts only from FORWARDED_ALLOW_IPS)"
        report.fail(
            f"webhook POST {url}: the stream URL is {twiml.stream_url}, not {expected}", fix
        )
        return None
    if not twiml.parameters.get(TOKEN_PARAMETER):
        report.fail(
            f"webhook POST {url}: no {TOKEN_PARAMETER} parameter: the service would refuse "
            "the stream",
            "deploy the same voicebridge version as this one",
        )
        return None
    signed = "signed with TWILIO_AUTH_TOKEN" if auth_token else "unsigned"
    report.ok(
        f'webhook POST {url} ({signed}) answers TwiML <Connect><Stream url="{expected}"> '
        f"with a {TOKEN_PARAMETER}"
    )
    target = StreamTarget(call_sid, params["AccountSid"], dict(twiml.parameters))
    fallback = base + "/twilio/fallback"
    failed = {**params, "ErrorCode": "11200", "ErrorUrl": url}
    answer = await _post(
        report, "fallback", fallback, failed, auth_token=auth_token, proxy=proxy, timeout=timeout
    )
    if answer is not None:
        report.ok(f"fallback POST {fallback} answers TwiML")
        if auth_token:
            await check_unsigned_refused(report, fallback, failed, proxy=proxy, timeout=timeout)
    return target


def _no_stream(
    report: Report,
    url: str,
    base: str,
    says: tuple[str, ...],
    failure_say: str,
    busy_say: str,
) -> None:
    """The webhook answered TwiML without a stream: which of the service's answers it is."""
    if failure_say in says:
        report.fail(
            f"webhook POST {url}: the service answered the failure TwiML (FAILURE_SAY): the "
            "stream URL it would serve is not wss://, and Twilio streams only to wss://",
            f"set PUBLIC_URL={base} on the service, or list the TLS router's address in its "
            "FORWARDED_ALLOW_IPS (* where it varies) so its X-Forwarded-Proto: https counts",
        )
    elif busy_say in says:
        report.fail(
            f"webhook POST {url}: the service answered busy (BUSY_SAY): every call slot is "
            "taken, or it is shutting down",
            "check GET PUBLIC_URL/readyz; raise MAX_CALLS or add instances",
        )
    else:
        report.fail(
            f"webhook POST {url}: TwiML without <Connect><Stream> ({' '.join(says)[:80]!r}): "
            "busy, shutting down, or a stream URL that is not wss://",
            "check GET PUBLIC_URL/readyz and the service's log (an ERROR names the setting)",
        )


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
