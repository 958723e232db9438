"""Twilio's side of the voice webhook: POST like Twilio, parse the TwiML answer."""

from __future__ import annotations

import asyncio
import secrets
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit
from xml.etree import ElementTree

from voicebridge.core.signature import compute_signature

__all__ = [
    "LocalProxy",
    "TwiML",
    "WebhookAnswer",
    "call_params",
    "new_sid",
    "parse_twiml",
    "post_webhook",
]


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
class LocalProxy:
    """Reach public https/wss URLs at a local address, as a TLS-terminating proxy would.

    The request goes to ``connect_to`` in clear text, with the public ``Host`` and
    ``X-Forwarded-Proto: https``; signatures still cover the public URL.
    """

    connect_to: str  # "127.0.0.1:8000"

    @property
    def host(self) -> str:
        return self.connect_to.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.connect_to.rsplit(":", 1)[1])

    def rewrite(self, public_url: str) -> tuple[str, dict[str, str]]:
        """(local URL, headers) for a public http(s)/ws(s) URL."""
        parts = urlsplit(public_url)
        secure = parts.scheme in ("https", "wss")
        scheme = "ws" if parts.scheme.startswith("ws") else "http"
        local = urlunsplit(parts._replace(scheme=scheme, netloc=self.connect_to))
        headers = {"Host": parts.netloc}
        if secure:
            headers["X-Forwarded-Proto"] = "https"
        return local, headers


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
    auth_token: str | None = None,
    proxy: LocalProxy | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 (urllib in a thread needs its own)
) -> WebhookAnswer:
    """POST form parameters as Twilio does (signed when given the Auth Token)."""
    body = urlencode(dict(params)).encode()
    target, extra = proxy.rewrite(url) if proxy else (url, {})
    request = urllib.request.Request(target, data=body, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    request.add_header("User-Agent", "TwilioProxy/1.1")
    if auth_token:
        request.add_header("X-Twilio-Signature", compute_signature(auth_token, url, params))
    for name, value in {**extra, **(headers or {})}.items():
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
