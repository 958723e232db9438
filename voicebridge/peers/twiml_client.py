"""Twilio's side of the voice webhook: POST like Twilio, parse the TwiML answer."""

from __future__ import annotations

import asyncio
import secrets
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode
from xml.etree import ElementTree

__all__ = ["TwiML", "WebhookAnswer", "call_params", "new_sid", "parse_twiml", "post_webhook"]


def new_sid(prefix: str) -> str:
    """A fresh Twilio-style SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def call_params(call_sid: str, account_sid: str, *, from_: str, to: str) -> dict[str, str]:
    """The parameters Twilio always sends with "A call comes in"."""
    return {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "Called": to,
        "Caller": from_,
        "Direction": "inbound",
        "From": from_,
        "To": to,
    }


@dataclass(frozen=True)
class TwiML:
    says_before: tuple[str, ...] = ()
    stream_url: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    # Verbs after </Connect>, run only when the stream ends without a new TwiML document.
    after_connect: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    content_type: str
    body: str
    twiml: TwiML | None


def parse_twiml(text: str) -> TwiML:
    """Read the verbs Twilio would run; raises ValueError if it is not TwiML."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None
    if root.tag != "Response":
        raise ValueError(f"root element is <{root.tag}>, not <Response>")
    says: list[str] = []
    after: list[tuple[str, str]] = []
    url: str | None = None
    params: dict[str, str] = {}
    for verb in root:
        if verb.tag == "Connect":
            stream = verb.find("Stream")
            if stream is None:
                raise ValueError("<Connect> without <Stream>")
            url = stream.get("url")
            for p in stream.findall("Parameter"):
                params[p.get("name", "")] = p.get("value", "")
        elif url is None:
            if verb.tag == "Say":
                says.append((verb.text or "").strip())
        else:
            after.append((verb.tag, (verb.text or "").strip()))
    return TwiML(tuple(says), url, params, tuple(after))


async def post_webhook(
    url: str,
    params: Mapping[str, str],
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 (urllib in a thread needs its own)
) -> WebhookAnswer:
    """POST form parameters as Twilio does and parse the TwiML answer."""
    body = urlencode(dict(params)).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    request.add_header("User-Agent", "TwilioProxy/1.1")
    for name, value in (headers or {}).items():
        request.add_header(name, value)

    def fetch() -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Content-Type", ""), err.read().decode()

    status, ctype, text = await asyncio.to_thread(fetch)
    twiml = None
    if status == 200 and "xml" in ctype:
        twiml = parse_twiml(text)
    return WebhookAnswer(status, ctype, text, twiml)
