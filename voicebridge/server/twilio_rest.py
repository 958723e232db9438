"""Twilio's REST API, the one call voicebridge needs: update a live call.

``Status=completed`` hangs up; ``Twiml=…`` replaces the call's document (a transfer). Both end
the ``<Connect><Stream>`` without running the verbs after it, so the failure path's apology
never follows a deliberate ending. Runs in a thread with a timeout: never on the audio path.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import quote, urlencode

from voicebridge.config import Settings
from voicebridge.errors import TwilioRestError

__all__ = ["TwilioRestError", "rest_configured", "update_call"]

log = logging.getLogger(__name__)

REST_TIMEOUT = 5.0


def rest_configured(settings: Settings) -> bool:
    return bool(settings.twilio_account_sid and settings.twilio_auth_token)


async def update_call(settings: Settings, call_sid: str, params: Mapping[str, str]) -> None:
    """POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json with ``params``.

    Raises:
        TwilioRestError: not configured, refused or unreachable (the message has no secret).
    """
    if not rest_configured(settings):
        raise TwilioRestError("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are needed")
    account = settings.twilio_account_sid
    url = (
        f"{settings.twilio_api_base}/2010-04-01/Accounts/{quote(account)}"
        f"/Calls/{quote(call_sid)}.json"
    )
    auth = base64.b64encode(f"{account}:{settings.twilio_auth_token.reveal()}".encode()).decode()
    request = urllib.request.Request(url, data=urlencode(dict(params)).encode(), method="POST")
    request.add_header("Authorization", f"Basic {auth}")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")

    def post() -> int:
        try:
            with urllib.request.urlopen(request, timeout=REST_TIMEOUT) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            with err:  # close the response it carries
                return int(err.code)

    try:
        status = await asyncio.to_thread(post)
    except OSError as exc:
        raise TwilioRestError(f"Twilio REST API unreachable: {exc}") from None
    if not 200 <= status < 300:
        raise TwilioRestError(f"Twilio REST API answered HTTP {status} for call {call_sid}")
