"""The ``voicebridge call`` command: ask a running voicebridge to place an outbound call.

It POSTs to that voicebridge's ``/calls`` (``--url``, default this machine's ``PORT``) with
``API_TOKEN`` from the same environment, and prints the CallSid Twilio gave the call.
"""

from __future__ import annotations

import argparse
import json
import sys

import httpx

from voicebridge.errors import ConfigError
from voicebridge.startup import configure

__all__ = ["NAME", "add_parser", "run"]

NAME = "call"
TIMEOUT_S = 60.0  # the server paces calls (OUTBOUND_CALLS_PER_S): a request may wait


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(NAME, help="place an outbound call through a running voicebridge")
    p.add_argument("to", help="the number to call, E.164 (+14155550123)")
    p.add_argument("--profile", default=None, help="the profile the call runs with")
    p.add_argument(
        "--context",
        default=None,
        metavar="JSON",
        help='data for the instructions and tools, e.g. \'{"name": "Ada"}\' ({param.name})',
    )
    p.add_argument("--instructions", default=None, help="instructions replacing the profile's")
    p.add_argument("--voicemail", default=None, help="the message left on a voicemail")
    p.add_argument(
        "--url",
        default=None,
        help="the voicebridge to ask (default: http://127.0.0.1:PORT)",
    )


def request_body(args: argparse.Namespace) -> dict[str, object]:
    """The ``POST /calls`` body for the command's arguments.

    Raises:
        ConfigError: ``--context`` is not a JSON object.
    """
    body: dict[str, object] = {"to": args.to}
    if args.context is not None:
        try:
            context = json.loads(args.context)
        except ValueError as exc:
            raise ConfigError(f"--context is not JSON: {exc}") from None
        if not isinstance(context, dict):
            raise ConfigError("--context must be a JSON object")
        body["context"] = context
    for name in ("profile", "instructions", "voicemail"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    return body


def run(args: argparse.Namespace) -> int:
    settings = configure(args.env_file)
    token = settings.api_token.reveal()
    if not token:
        raise ConfigError(
            "API_TOKEN is not set: it turns outbound calls on, and signs this request"
        )
    url = (args.url or f"http://127.0.0.1:{settings.port}").rstrip("/") + "/calls"
    try:
        answer = httpx.post(
            url,
            json=request_body(args),
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT_S,
        )
    except httpx.HTTPError as exc:
        sys.stderr.write(f"voicebridge call: {url} did not answer: {type(exc).__name__}\n")
        return 1
    try:
        data = answer.json()
    except ValueError:
        data = {}
    if answer.status_code == 202:
        sys.stdout.write(f"{data.get('call_sid', '?')}\n")
        return 0
    error = data.get("error") if isinstance(data, dict) else None
    sys.stderr.write(f"voicebridge call: HTTP {answer.status_code}: {error or answer.text[:200]}\n")
    return 1
