"""Twilio's side of the voice webhook: POST like Twilio, parse the TwiML answer."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
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
    "http_post",
    "new_sid",
    "parse_twiml",
    "post_webhook",
]


MAX_ANSWER_BYTES = 1 << 20  # Twilio refuses TwiML over 64 kB; anything near this is wrong


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
    # <Connect action>: requested when the stream ends; its answer replaces after_connect.
    connect_action: str | None = None
    verbs: tuple[tuple[str, str], ...] = ()  # every top-level verb and its text, in order


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
    action: str | None = None
    params: dict[str, str] = {}
    for verb in root:
        if verb.tag == "Connect":
            action = verb.get("action") or None
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
    verbs = tuple((verb.tag, (verb.text or "").strip()) for verb in root)
    return TwiML(tuple(says), url, params, tuple(after), action, verbs)


async def post_webhook(
    url: str,
    params: Mapping[str, str],
    *,
    headers: Mapping[str, str] | None = None,
    auth_token: str | None = None,
    proxy: LocalProxy | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 (bounds connect, request and answer together)
) -> WebhookAnswer:
    """POST form parameters as Twilio does (signed when given the Auth Token).

    Raises:
        OSError: the server is unreachable or the connection broke.
        EOFError: the server closed before the whole body (``asyncio.IncompleteReadError``).
        TimeoutError: no whole answer within ``timeout`` seconds.
        ValueError: the answer is not HTTP, or ``url`` is not http(s).
    """
    body = urlencode(dict(params)).encode()
    target, extra = proxy.rewrite(url) if proxy else (url, {})
    sent = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "TwilioProxy/1.1",
    }
    if auth_token:
        sent["X-Twilio-Signature"] = compute_signature(auth_token, url, params)
    sent.update(extra)
    sent.update(headers or {})
    async with asyncio.timeout(timeout):
        status, ctype, text = await http_post(target, body, sent)
    twiml = None
    if status == 200 and "xml" in ctype:
        twiml = parse_twiml(text)
    return WebhookAnswer(status, ctype, text, twiml)


async def http_post(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, str, str]:
    """One HTTP/1.1 POST on its own connection: (status, Content-Type, body text).

    Plain asyncio streams rather than urllib in a thread, so hundreds of concurrent calls
    cost no threads and their webhook latency is not a thread pool's queue.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    fields = {"host": ("Host", parts.netloc)}
    for name, value in headers.items():
        fields[name.lower()] = (name, value)
    fields["content-length"] = ("Content-Length", str(len(body)))
    fields["connection"] = ("Connection", "close")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = f"POST {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields.values())
    reader, writer = await asyncio.open_connection(
        parts.hostname, port, ssl=ssl.create_default_context() if secure else None
    )
    try:
        writer.write(head.encode("latin-1") + b"\r\n" + body)
        await writer.drain()
        status, answer = await _read_response(reader)
        data = await _read_body(reader, answer)
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
    return status, answer.get("content-type", ""), data.decode("utf-8", "replace")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    words = (await reader.readline()).split(None, 2)
    if len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit():
        raise ValueError("the answer is not HTTP")
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            return int(words[1]), headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()


async def _read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            line = await reader.readline()
            if not line:  # closed before the last (empty) chunk: the body is cut short
                raise asyncio.IncompleteReadError(bytes(out), None)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0 or len(out) + size > MAX_ANSWER_BYTES:
                return bytes(out)
            out += await reader.readexactly(size)
            await reader.readline()
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_ANSWER_BYTES:
            raise ValueError(f"answer of {length} bytes is too large")
        return await reader.readexactly(length)
    out = bytearray()  # no length given: the answer ends when the server closes
    while len(out) <= MAX_ANSWER_BYTES:
        data = await reader.read(65536)
        if not data:
            return bytes(out)
        out += data
    raise ValueError("answer too large")
