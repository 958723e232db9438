"""Check 4: the stream path through the public URL, as Twilio opens it after the webhook.

The WebSocket upgrade of ``wss://HOST/realtime`` (signed with ``TWILIO_AUTH_TOKEN`` over that
URL, as Twilio signs it), ``connected`` and ``start`` for the webhook's CallSid with a
``StreamToken`` minted as the service mints it (with ``STREAM_TOKEN_SECRET`` here, so a
secret that differs from the service's is caught; without one, the webhook's own token), a
keypad digit, which the service's upstream must answer with audio (so the service opened its
upstream for the call), then ``stop``. Each failure names the setting to fix.

This is one real call on the service: a short answer from the model.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from voicebridge.core.admission import TOKEN_PARAMETER, mint_token
from voicebridge.core.signature import compute_signature
from voicebridge.core.twiml import stream_url
from voicebridge.doctor.report import Report
from voicebridge.server.twilio_side import DTMF_PAUSE_S
from voicebridge.twilio_sim.recordings import Recording
from voicebridge.twilio_sim.script import SILENCE_PAYLOAD, CallScript, TwilioWriter
from voicebridge.twilio_sim.webhook_client import LocalProxy, new_sid

__all__ = ["StreamTarget", "check_stream"]

FRAME_S = 0.02  # Twilio sends a 20 ms media frame at a time
DIGIT = {"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": "1"}}


@dataclass(frozen=True)
class StreamTarget:
    """What the webhook check learnt: the call it answered, and how to stream it."""

    call_sid: str
    account_sid: str
    parameters: dict[str, str]  # the TwiML's <Parameter>s: the caller, the callee, the token


async def check_stream(
    report: Report,
    base: str,
    target: StreamTarget,
    *,
    auth_token: str,
    secret: str,
    token_ttl: float,
    proxy: LocalProxy | None,
    timeout: float,  # noqa: ASYNC109 (each wait's bound)
) -> bool:
    """Open the call's stream as Twilio would and see the model answer through it; whether
    it did."""
    url = stream_url(base)
    parameters = dict(target.parameters)
    if secret:
        now = time.time()
        parameters[TOKEN_PARAMETER] = mint_token(secret.encode(), target.call_sid, now, token_ttl)
        token_from = "minted with STREAM_TOKEN_SECRET here"
    else:
        token_from = "the webhook's"
    uri, headers, where = _target(url, proxy)
    if auth_token:
        headers["X-Twilio-Signature"] = compute_signature(auth_token, url)
    try:
        async with connect(
            uri,
            additional_headers=headers,
            open_timeout=timeout,
            close_timeout=1,
            compression=None,
            proxy=None,
            **where,
        ) as ws:
            return await _call(
                report, ws, url, target, parameters, token_from, bool(secret), timeout
            )
    except InvalidStatus as exc:
        _upgrade_refused(report, url, exc.response.status_code, auth_token)
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        report.fail(
            f"stream {url}: the WebSocket upgrade failed ({type(exc).__name__}: {exc})",
            "the proxy or router in front of the service must pass WebSocket upgrades on "
            "/realtime (Upgrade and Connection headers, no buffering)",
        )
    return False


def _target(url: str, proxy: LocalProxy | None) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(URI, headers, where to connect): the public wss:// URL, or it through ``proxy``."""
    if proxy is None:
        return url, {}, {}
    local, extra = proxy.rewrite(url)
    uri = local.replace(proxy.connect_to, extra.pop("Host"), 1)
    return uri, extra, {"host": proxy.host, "port": proxy.port}


def _upgrade_refused(report: Report, url: str, status: int, auth_token: str) -> None:
    if status == 403 and auth_token:
        report.fail(
            f"stream {url}: the service refused the upgrade's X-Twilio-Signature (HTTP 403)",
            "set the same TWILIO_AUTH_TOKEN (your account's primary Auth Token) and PUBLIC_URL "
            "here and on the service: Twilio signs the wss:// URL with it",
        )
    elif status == 403:
        report.fail(
            f"stream {url}: the service requires a signed upgrade (HTTP 403; "
            "TWILIO_STREAM_SIGNATURE=require), but TWILIO_AUTH_TOKEN is not set here",
            "run doctor with the service's TWILIO_AUTH_TOKEN",
        )
    elif status == 404:
        report.fail(
            f"stream {url}: HTTP 404: no voicebridge stream there",
            "PUBLIC_URL must be the base voicebridge is served at, and the proxy must route "
            "/realtime to it",
        )
    else:
        report.fail(
            f"stream {url}: the WebSocket upgrade was answered HTTP {status}",
            "the proxy or router in front of the service must pass WebSocket upgrades on "
            "/realtime to it",
        )


async def _call(
    report: Report,
    ws: ClientConnection,
    url: str,
    target: StreamTarget,
    parameters: dict[str, str],
    token_from: str,
    own_secret: bool,
    timeout: float,  # noqa: ASYNC109
) -> bool:
    writer = TwilioWriter(
        CallScript.from_recording(Recording("doctor", ())),
        stream_sid=new_sid("MZ"),
        call_sid=target.call_sid,
        account_sid=target.account_sid,
        parameters=parameters,
    )
    failure = ""
    answered_ms = 0.0
    try:
        answered_ms = await _answered(ws, writer, timeout)
    except* ConnectionClosed:
        failure = "closed"
    except* TimeoutError:
        failure = "timeout"
    if failure == "closed":
        _closed_early(report, url, ws, token_from, own_secret)
        return False
    if failure:
        report.fail(
            f"stream {url}: the service took the call but no model audio came within "
            f"{timeout + DTMF_PAUSE_S:g} s of a keypad digit",
            f"the service's upstream is not answering: see the service's log for CallSid "
            f"{target.call_sid} (REALTIME_URL, OPENAI_API_KEY, UPSTREAM_CONNECT_TIMEOUT_S there)",
        )
        return False
    try:
        await ws.send(writer.stop())
        async with asyncio.timeout(timeout):
            await ws.wait_closed()
    except (ConnectionClosed, TimeoutError):
        pass
    ended = f"closed {ws.close_code}" if ws.close_code is not None else "not closed"
    report.ok(
        f"stream {url}: the upgrade and the StreamToken ({token_from}) accepted; the "
        f"service's upstream answered a keypad digit in {answered_ms:.0f} ms; after `stop`, "
        f"{ended}"
    )
    return True


async def _answered(ws: ClientConnection, writer: TwilioWriter, timeout: float) -> float:  # noqa: ASYNC109
    """``connected``, ``start`` and a keypad digit, the line silent meanwhile: the ms until
    the model's first audio. Raises ConnectionClosed, or TimeoutError after ``timeout``."""
    began = time.monotonic()
    for text in (writer.connected(), writer.start(), writer.dtmf(DIGIT)):
        await ws.send(text)
    async with asyncio.TaskGroup() as tg:
        line = tg.create_task(_silence(ws, writer), name="doctor-media")
        try:
            # The service answers a digit after its keypad pause: not the network's wait.
            async with asyncio.timeout(timeout + DTMF_PAUSE_S):
                await _first_audio(ws)
        finally:
            line.cancel()
    return (time.monotonic() - began) * 1000


async def _silence(ws: ClientConnection, writer: TwilioWriter) -> None:
    """Twilio's media, a frame every 20 ms: a silent caller."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    while True:
        await ws.send(writer.media(SILENCE_PAYLOAD, n * 20))
        n += 1
        await asyncio.sleep(max(start + n * FRAME_S - loop.time(), 0.0))


async def _first_audio(ws: ClientConnection) -> None:
    """Until the service sends the model's first audio; ConnectionClosed if it closes."""
    while True:
        message = await ws.recv()
        if isinstance(message, str) and json.loads(message).get("event") == "media":
            return


def _closed_early(
    report: Report, url: str, ws: ClientConnection, token_from: str, own_secret: bool
) -> None:
    code = ws.close_code
    if code == 1008 and own_secret:
        report.fail(
            f"stream {url}: the service refused the call's StreamToken ({token_from}; closed 1008)",
            "set the same STREAM_TOKEN_SECRET here and on every instance of the service "
            "(the clocks must agree within STREAM_TOKEN_TTL_S too)",
        )
    elif code == 1008:
        report.fail(
            f"stream {url}: the service refused the StreamToken its own webhook minted "
            "(closed 1008): the webhook and the stream reached instances that do not share "
            "a STREAM_TOKEN_SECRET",
            "set the same STREAM_TOKEN_SECRET on every instance (unset, each process makes "
            "a random one)",
        )
    elif code == 1011:
        report.fail(
            f"stream {url}: the service failed the call (closed 1011): its upstream did not open",
            "check OPENAI_API_KEY and REALTIME_URL on the service (its log names the reason)",
        )
    elif code in (1012, 1013):
        report.fail(
            f"stream {url}: the service is shutting down (closed {code})",
            "run doctor again once the new instance is ready",
        )
    else:
        report.fail(
            f"stream {url}: the service closed the call ({code} {ws.close_reason or ''})".rstrip(),
            "check the service's log",
        )
