"""Twilio request signatures (``X-Twilio-Signature``), checked without I/O.

The algorithm (Twilio, "Validating requests"): take the full URL Twilio requested, append
each POST parameter's name and value sorted by name (Unix, case-sensitive), HMAC-SHA1 it
with the account's Auth Token, base64 the digest. For a JSON body, the URL carries
``bodySHA256`` (hex SHA-256 of the raw body) and no parameters are appended. Voice requests
over HTTPS are signed without the port, so the URL is tried with and without it; a
WebSocket handshake is signed over the ``wss://`` URL with no parameters, sometimes with a
trailing slash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit, urlunsplit

__all__ = ["compute_signature", "check_signature", "url_variants"]

_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}

Params = Mapping[str, str | Sequence[str]]


def compute_signature(auth_token: str, url: str, params: Params | None = None) -> str:
    data = url
    for name in sorted(set(params or {})):
        value = (params or {})[name]
        values = [value] if isinstance(value, str) else list(value)
        for v in sorted(set(values)):
            data += name + v
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_variants(url: str, *, trailing_slash: bool = False) -> list[str]:
    """The URL as given, without its port and with its default port; optionally + "/"."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userless = host + (f":{parts.port}" if parts.port else "")
    bare = urlunsplit(parts._replace(netloc=host))
    default = _DEFAULT_PORTS.get(parts.scheme)
    with_port = urlunsplit(parts._replace(netloc=f"{host}:{parts.port or default}"))
    out = [urlunsplit(parts._replace(netloc=userless)), bare, with_port]
    if trailing_slash:
        out += [_add_slash(u) for u in out]
    return list(dict.fromkeys(out))


def _add_slash(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path + "/"))


def check_signature(
    auth_token: str,
    url: str,
    signature: str | None,
    *,
    form: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    trailing_slash: bool = False,
) -> str | None:
    """None when the signature is valid, else the reason it is not.

    Args:
        url: the public URL Twilio requested, query string included.
        form: decoded ``application/x-www-form-urlencoded`` POST parameters.
        body: the raw body, checked against ``bodySHA256`` when the URL carries one.
    """
    if not signature:
        return "missing_signature"
    params: dict[str, list[str]] = {}
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    if "bodySHA256" in query:
        expected = hashlib.sha256(body or b"").hexdigest()
        if not hmac.compare_digest(expected, query["bodySHA256"][0]):
            return "body_hash_mismatch"
    else:
        for name, value in form:
            params.setdefault(name, []).append(value)
    for candidate in url_variants(url, trailing_slash=trailing_slash):
        if hmac.compare_digest(compute_signature(auth_token, candidate, params), signature):
            return None
    return "bad_signature"
