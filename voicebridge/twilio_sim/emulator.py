"""Twilio's side of a call: the webhook, the Media Streams connection, what runs after it.

:func:`place_call` places a whole inbound call as Twilio does; the stream itself is
:class:`~voicebridge.twilio_sim.stream.EmulatedCall`, and what it saw a
:class:`~voicebridge.twilio_sim.call_report.CallReport`.
"""

from __future__ import annotations

import time

from voicebridge.twilio_sim.call_report import CallReport, Network, check_outbound
from voicebridge.twilio_sim.recordings import Recording
from voicebridge.twilio_sim.stream import EmulatedCall
from voicebridge.twilio_sim.webhook_client import (
    LocalProxy,
    TwiML,
    call_params,
    new_sid,
    post_webhook,
)

__all__ = ["CallReport", "EmulatedCall", "Network", "after_stream", "check_outbound", "place_call"]


async def place_call(
    webhook_url: str,
    recording: Recording,
    *,
    network: Network = Network(),
    speed: float = 1.0,
    hangup_at_ms: float | None = None,
    tail_ms: float = 0.0,
    from_: str = "+15005550006",
    to: str = "+15005550001",
    auth_token: str | None = None,
    proxy: LocalProxy | None = None,
    timeout: float = 120.0,  # noqa: ASYNC109 (bounds the whole call)
    echo_marks: bool = True,
) -> CallReport:
    """A whole inbound call: the webhook, the TwiML, the stream, then any failure path.

    With ``auth_token`` the webhook and the handshake are signed as Twilio signs them;
    with ``proxy`` public URLs are reached at a local address; without ``echo_marks`` no
    mark is ever echoed.
    """
    call_sid, account_sid = new_sid("CA"), new_sid("AC")
    posted = time.monotonic()
    answer = await post_webhook(
        webhook_url,
        call_params(call_sid, account_sid, from_=from_, to=to),
        auth_token=auth_token,
        proxy=proxy,
    )
    webhook_ms = (time.monotonic() - posted) * 1000.0
    if answer.twiml is None or answer.twiml.stream_url is None:
        report = CallReport(call_sid, "", answer.twiml, answer.status, webhook_ms=webhook_ms)
        return report
    call = EmulatedCall(
        answer.twiml.stream_url,
        recording,
        parameters=answer.twiml.parameters,
        network=network,
        speed=speed,
        hangup_at_ms=hangup_at_ms,
        tail_ms=tail_ms,
        call_sid=call_sid,
        account_sid=account_sid,
        auth_token=auth_token,
        proxy=proxy,
        echo_marks=echo_marks,
    )
    report = await call.run(timeout)
    report.twiml, report.webhook_status = answer.twiml, answer.status
    report.webhook_ms = webhook_ms
    if report.closed_by == "server":
        report.after_stream = await after_stream(
            answer.twiml, call_sid, account_sid, from_, to, auth_token, proxy
        )
    return report


async def after_stream(
    twiml: TwiML,
    call_sid: str,
    account_sid: str,
    from_: str,
    to: str,
    auth_token: str | None,
    proxy: LocalProxy | None,
) -> tuple[tuple[str, str], ...]:
    """What Twilio runs when the server ended the stream: the action's answer, else the rest."""
    if twiml.connect_action is None:
        return twiml.after_connect
    params = call_params(call_sid, account_sid, from_=from_, to=to)
    params["CallStatus"] = "in-progress"
    try:
        answer = await post_webhook(
            twiml.connect_action, params, auth_token=auth_token, proxy=proxy
        )
    except (OSError, EOFError, TimeoutError, ValueError) as exc:
        return (("Error", type(exc).__name__),)
    if answer.twiml is None:
        return (("Error", str(answer.status)),)
    return answer.twiml.verbs
