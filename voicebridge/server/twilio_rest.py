"""Twilio's REST API, the one call voicebridge needs: update a live call.

``Status=completed`` hangs up; ``Twiml=…`` replaces the call's document (a transfer). Both end
the ``<Connect><Stream>`` without running the verbs after it, so the failure path's apology
never follows a deliberate ending. Sent through the app's one async HTTP client
(:class:`~voicebridge.server.http_client.OutboundHttp`), never on the audio path.

Auth is HTTP Basic with ``AccountSid:AuthToken`` or ``ApiKeySid:ApiKeySecret``; the account
SID is in the URL either way (PROTOCOLS.md A.6).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import quote, urlencode

from voicebridge.config import Settings
from voicebridge.errors import OutboundError, TwilioRestError
from voicebridge.server.http_client import OutboundHttp

__all__ = ["TwilioRestError", "rest_auth", "rest_configured", "update_call"]

log = logging.getLogger(__name__)

REST_TIMEOUT = 5.0


def rest_auth(settings: Settings) -> tuple[str, str] | None:
    """The Basic auth pair for REST calls: an API key when set, else the Auth Token."""
    if not settings.twilio_account_sid:
        return None
    if settings.twilio_api_key_sid and settings.twilio_api_key_secret:
        return settings.twilio_api_key_sid, settings.twilio_api_key_secret.reveal()
    if settings.twilio_auth_token:
        return settings.twilio_account_sid, settings.twilio_auth_token.reveal()
    return None


def rest_configured(settings: Settings) -> bool:
    return rest_auth(settings) is not None


async def update_call(
    http: OutboundHttp, settings: Settings, call_sid: str, params: Mapping[str, str]
) -> None:
    """POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json with ``params``.

    Raises:
        TwilioRestError: not configured, refused or unreachable (the message has no secret).
    """
    auth = rest_auth(settings)
    if auth is None:
        raise TwilioRestError("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or an API key) are needed")
    url = (
        f"{settings.twilio_api_base}/2010-04-01/Accounts/{quote(settings.twilio_account_sid)}"
        f"/Calls/{quote(call_sid)}.json"
    )
    try:
        answer = await http.post(
            url,
            content=urlencode(dict(params)).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout_s=REST_TIMEOUT,
            auth=auth,
        )
    except OutboundError as exc:
        raise TwilioRestError(f"Twilio REST API unreachable: {exc}") from None
    if not answer.ok:
        raise TwilioRestError(f"Twilio REST API answered HTTP {answer.status} for call {call_sid}")
