"""The webhook's check that the stream URL it would serve is one Twilio can use.

Twilio opens ``<Stream url>`` only over ``wss://``. Without PUBLIC_URL the scheme comes from the
request, and a TLS-terminating router's ``X-Forwarded-Proto: https`` counts only from an
address in FORWARDED_ALLOW_IPS; otherwise the URL comes out ``ws://`` and every caller would
hear the apology with nothing logged.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from voicebridge.config import LOOPBACK_HOSTS

__all__ = ["InsecureStreamUrls", "usable_stream_url"]

log = logging.getLogger(__name__)


def usable_stream_url(url: str) -> bool:
    """``wss://``, or ``ws://`` to a loopback host (local runs, the tests, ``voicebridge demo``).

    PUBLIC_URL's own check allows ``http://`` for the same hosts, and nothing but a local
    emulator ever connects to them.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme == "wss" or (parts.scheme == "ws" and host in LOOPBACK_HOSTS)


class InsecureStreamUrls:
    """Webhooks answered with the failure TwiML because the stream URL was not ``wss://``.

    The first of an episode is logged as an ERROR naming the fix (the metric counts them
    all); the episode ends with the next webhook served a usable URL, so a fault that comes
    back is logged again. Only the event loop calls it.
    """

    def __init__(self) -> None:
        self._failing = False

    def refused(self, url: str, peer: str, forwarded_proto: str | None) -> None:
        if self._failing:
            return
        self._failing = True
        if forwarded_proto:
            why = (
                f"the X-Forwarded-Proto: {forwarded_proto} header came from {peer}, "
                "which is not in FORWARDED_ALLOW_IPS"
            )
        else:
            why = f"the request from {peer} came without X-Forwarded-Proto"
        log.error(
            "webhook answered with the failure TwiML: its stream URL would be %s and Twilio "
            "only streams to wss:// (%s). Set PUBLIC_URL to the https:// address Twilio calls, "
            "or add the TLS router's address to FORWARDED_ALLOW_IPS (* where it varies); "
            "logged once until a webhook gets a wss:// URL again",
            url,
            why,
        )

    def served(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("webhook serves a wss:// stream URL again")
