"""HTTP tools: a function the model may call, answered by the business's own backend.

Defined by a URL in ``TOOLS_FILE`` or ``PROFILES_FILE``::

    [tools.check_table]
    url = "https://backend.example.com/voicebridge/check_table"
    description = "Check whether a table is free."
    timeout_s = 4
    parameters = { type = "object", required = ["party_size", "time"], properties = { … } }

A call POSTs JSON ``{"tool", "arguments", "call", "call_id", "request_id"}`` signed with
``SIGNING_SECRET`` (``X-Voicebridge-Signature``, :mod:`voicebridge.core.signing`). The
arguments are validated against ``parameters`` (JSON Schema, with ``jsonschema``) first:
invalid ones never reach the backend. A 2xx answer's JSON is the function output; a timeout,
another status or an answer that is not JSON tells the model, in one sentence, that the tool
failed, so it can tell the caller.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jsonschema
from jsonschema.validators import validator_for

from voicebridge.config import LOOPBACK_HOSTS, Secret
from voicebridge.core.context import CallContext
from voicebridge.core.signing import SIGNATURE_HEADER, sign
from voicebridge.core.tools import END_CALL, TRANSFER_CALL, FunctionCall
from voicebridge.errors import ConfigError, OutboundError
from voicebridge.logs import mask_url
from voicebridge.server.http_client import OutboundHttp

__all__ = ["HttpTool", "HttpToolSpec", "ToolRun", "parse_tool_specs"]

log = logging.getLogger(__name__)

MAX_TIMEOUT_S = 60.0
_TOOL_KEYS = {"url", "description", "parameters", "timeout_s"}
_MAX_DETAIL = 160  # characters of a validation error told to the model


@dataclass(frozen=True)
class HttpToolSpec:
    name: str
    url: str
    description: str
    parameters: Mapping[str, Any]
    timeout_s: float


@dataclass(frozen=True, slots=True)
class ToolRun:
    """A tool call's output for the model, and its outcome label for the metrics."""

    output: str
    outcome: str  # ok, invalid_arguments, timeout, http_error, invalid_result, unreachable


def _spec(name: str, body: Any, where: str, default_timeout: float) -> HttpToolSpec:
    at = f"{where}: tool {name!r}"
    if not isinstance(body, dict):
        raise ConfigError(f"{at} must be a table ([tools.{name}])")
    unknown = sorted(set(body) - _TOOL_KEYS)
    if unknown:
        raise ConfigError(
            f"{at}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOOL_KEYS))})"
        )
    url = body.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    local = parts is not None and parts.hostname in LOOPBACK_HOSTS
    if (
        parts is None
        or not parts.hostname
        or not (parts.scheme == "https" or (parts.scheme == "http" and local))
    ):
        raise ConfigError(f"{at}, key 'url' must be an https:// URL (http:// only on this machine)")
    description = body.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{at}, key 'description' must be a string")
    timeout = body.get("timeout_s", default_timeout)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not (0 < timeout <= MAX_TIMEOUT_S)
    ):
        raise ConfigError(f"{at}, key 'timeout_s' must be a number of seconds, 0 < s <= 60")
    schema = body.get("parameters", {"type": "object", "properties": {}})
    if isinstance(schema, str):  # JSON text: easier than TOML's inline tables for big schemas
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise ConfigError(f"{at}, key 'parameters' is not JSON: {exc}") from None
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ConfigError(f"{at}, key 'parameters' must be a JSON Schema with type = \"object\"")
    try:
        validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(
            f"{at}, key 'parameters' is not a valid JSON Schema: {exc.message}"
        ) from None
    return HttpToolSpec(name, str(url), description, schema, float(timeout))


def parse_tool_specs(table: Any, where: str, default_timeout: float) -> list[HttpToolSpec]:
    """The ``[tools.NAME]`` tables of a file (``where`` names it in errors).

    Raises:
        ConfigError: naming the file, the tool and the key.
    """
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: 'tools' must be a table of tools ([tools.NAME])")
    specs = []
    for name, body in table.items():
        if not isinstance(name, str) or not name.replace("_", "a").replace("-", "a").isalnum():
            raise ConfigError(f"{where}: tool name {name!r}: letters, digits, _ and - only")
        if name in (END_CALL, TRANSFER_CALL) or len(name) > 64:
            raise ConfigError(f"{where}: tool name {name!r} is a built-in's or too long")
        specs.append(_spec(name, body, where, default_timeout))
    return specs


class HttpTool:
    """One configured HTTP tool: its declaration, and how a call of it is made."""

    def __init__(
        self,
        spec: HttpToolSpec,
        http: OutboundHttp,
        secret: Secret,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self._http = http
        self._secret = secret
        cls = validator_for(spec.parameters)
        self._validator = cls(spec.parameters, format_checker=cls.FORMAT_CHECKER)

    def declaration(self) -> dict[str, Any]:
        return {
            "type": "function",
            "name": self.name,
            "description": self.spec.description,
            "parameters": dict(self.spec.parameters),
        }

    def _invalid(self, arguments: str) -> str | None:
        """Why the model's arguments are not acceptable, or None."""
        try:
            value = json.loads(arguments or "{}")
        except ValueError:
            return "the arguments are not JSON"
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(value))
        if error is None:
            return None
        path = ".".join(str(p) for p in error.absolute_path)
        message: str = error.message
        return ((f"{path}: " if path else "") + message)[:_MAX_DETAIL]

    def _failed(self, why: str) -> str:
        return (
            f"The {self.name} tool failed ({why}), so tell the caller you could not do that "
            "just now."
        )

    async def run(self, call: FunctionCall, context: CallContext) -> ToolRun:
        """Validate, POST signed, and turn the answer into the function output."""
        wrong = self._invalid(call.arguments)
        if wrong is not None:
            log.info("tool %s: invalid arguments (%s); not called", self.name, wrong)
            return ToolRun(
                f"The {self.name} tool was not called because its arguments were invalid "
                f"({wrong}); ask the caller for what is missing or call it again correctly.",
                "invalid_arguments",
            )
        arguments = json.loads(call.arguments or "{}")
        body = json.dumps(
            {
                "tool": self.name,
                "arguments": arguments,
                "call": context.as_json(),
                "call_id": call.call_id,
                # Unique per tool call within the call, and the same on a retry of it: an
                # idempotency key for the backend.
                "request_id": f"{context.call_sid}:{call.call_id}",
            },
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret.reveal(), int(time.time()), body),
        }
        try:
            answer = await self._http.post(
                self.spec.url, content=body, headers=headers, timeout_s=self.spec.timeout_s
            )
        except OutboundError as exc:
            kind = "timeout" if exc.kind == "timeout" else "unreachable"
            if exc.kind == "too_big":
                kind = "invalid_result"
            log.warning("tool %s at %s: %s", self.name, mask_url(self.spec.url), exc)
            why = {
                "timeout": f"no answer within {self.spec.timeout_s:g} seconds",
                "unreachable": "the service could not be reached",
                "invalid_result": "its answer was too long",
            }[kind]
            return ToolRun(self._failed(why), kind)
        if not answer.ok:
            log.warning("tool %s answered HTTP %d", self.name, answer.status)
            return ToolRun(self._failed(f"the service answered HTTP {answer.status}"), "http_error")
        try:
            result = json.loads(answer.body)
        except ValueError:
            log.warning("tool %s answered something that is not JSON", self.name)
            return ToolRun(self._failed("its answer was not JSON"), "invalid_result")
        return ToolRun(json.dumps(result, separators=(",", ":"), ensure_ascii=False), "ok")
