"""Running the model's function calls: the built-in ``end_call`` and ``transfer_call``, and
operators' own tools (``CUSTOM_TOOLS=package.module:TOOLS``).

A custom tool is a mapping (or object) with ``name``, ``description``, ``parameters`` (JSON
schema) and ``handler``: a callable taking the arguments as a dict (and, if it takes a second
argument, the call's :class:`~voicebridge.core.context.CallContext`) and returning a string or
a JSON-serialisable value, sync (run in a thread) or async. Tools run with ``TOOL_TIMEOUT_S``
in their own task, never on the audio path. HTTP tools (``server/http_tools.py``) are
answered by the business's backend. Every call is counted by tool and outcome
(``server/tool_calls.py``).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from voicebridge.config import Settings
from voicebridge.core.context import CallContext
from voicebridge.core.tools import (
    END_CALL,
    TRANSFER_CALL,
    FunctionCall,
    end_call_tool,
    parse_destinations,
    transfer_call_tool,
    transfer_twiml,
)
from voicebridge.errors import ConfigError
from voicebridge.server.http_tools import HttpTool
from voicebridge.server.tool_calls import ToolMetrics

__all__ = ["Ending", "Tool", "Toolbox", "ToolOutcome", "load_custom_tools"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any]
    handler: Callable[..., Any]  # (arguments) or (arguments, context)

    def declaration(self) -> dict[str, Any]:
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }


@dataclass(frozen=True)
class Ending:
    """A tool's deliberate ending: hang up, or a transfer to ``destination``.

    The after-stream answer carries it out (``<Hangup/>`` or ``<Dial>``); with REST
    credentials ``rest_params`` replace the call's TwiML instead.
    """

    reason: str  # end_call | transfer
    rest_params: Mapping[str, str]
    instructions: str  # what the model says first, unless it already spoke
    destination: str = ""  # transfer: the number or SIP URI dialled


@dataclass(frozen=True)
class ToolOutcome:
    output: str
    ending: Ending | None = None
    outcome: str = "ok"  # the metrics' label (server/tool_calls.py OUTCOMES)


def load_custom_tools(spec: str) -> list[Tool]:
    """Import ``package.module:ATTRIBUTE`` (a list of tool definitions).

    Raises:
        ConfigError: the import fails or a definition lacks a field.
    """
    if not spec:
        return []
    module_name, sep, attr = spec.partition(":")
    if not sep:
        raise ConfigError(f"CUSTOM_TOOLS={spec!r} must look like package.module:TOOLS")
    try:
        definitions = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"CUSTOM_TOOLS={spec!r} cannot be loaded: {exc}") from None
    tools = []
    for d in definitions:
        get = d.get if isinstance(d, Mapping) else lambda k, d=d: getattr(d, k, None)
        name, handler = get("name"), get("handler")
        if not isinstance(name, str) or not callable(handler):
            raise ConfigError(f"CUSTOM_TOOLS: each tool needs a name and a handler ({d!r})")
        if name in (END_CALL, TRANSFER_CALL):
            raise ConfigError(f"CUSTOM_TOOLS: {name!r} is a built-in tool name")
        tools.append(
            Tool(
                name,
                str(get("description") or ""),
                get("parameters") or {"type": "object", "properties": {}},
                handler,
            )
        )
    return tools


class Toolbox:
    """The tools one instance declares, and how each call is run."""

    def __init__(
        self,
        settings: Settings,
        custom: list[Tool],
        http_tools: list[HttpTool] | None = None,
        metrics: ToolMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.custom = {t.name: t for t in custom}
        self.http = {t.name: t for t in http_tools or []}
        self.metrics = metrics or ToolMetrics()
        self.metrics.configure([END_CALL, TRANSFER_CALL, *self.custom, *self.http])
        try:
            self.destinations = parse_destinations(settings.transfer_destinations)
        except ValueError as exc:
            raise ConfigError(f"TRANSFER_DESTINATIONS: {exc}") from None
        # The after-stream answer dials: no REST credentials needed.
        self.can_transfer = bool(self.destinations)

    def declarations(self) -> tuple[dict[str, Any], ...]:
        tools = [end_call_tool()] if self.settings.end_call_tool else []
        if self.can_transfer:
            tools.append(transfer_call_tool(self.destinations))
        tools += [t.declaration() for t in self.custom.values()]
        tools += [t.declaration() for t in self.http.values()]
        return tuple(tools)

    def slow(self, name: str) -> bool:
        """A tool that may take a while (so it may get a holding line): not a built-in."""
        return name in self.custom or name in self.http

    async def run(self, call: FunctionCall, context: CallContext | None = None) -> ToolOutcome:
        """Run one call, counted by tool and outcome; errors become an output the model can
        explain to the caller."""
        began = asyncio.get_running_loop().time()
        outcome = await self._run(call, context or CallContext(""))
        elapsed = asyncio.get_running_loop().time() - began
        self.metrics.observe(call.name, outcome.outcome, elapsed)
        args = call.parsed_arguments()
        # Argument values may be a caller's personal data: names only unless asked for.
        shown = args if self.settings.tool_log_arguments else ", ".join(sorted(args)) or "none"
        log.info(
            "tool %s: %s in %.0f ms (arguments: %s) call_sid=%s",
            call.name,
            outcome.outcome,
            elapsed * 1000,
            shown,
            context.call_sid if context else "",
        )
        return outcome

    async def _run(self, call: FunctionCall, context: CallContext) -> ToolOutcome:
        args = call.parsed_arguments()
        if call.name == END_CALL and self.settings.end_call_tool:
            return ToolOutcome(
                json.dumps({"ok": True, "note": "the call ends after your goodbye"}),
                Ending("end_call", {"Status": "completed"}, self.settings.goodbye_instructions),
            )
        if call.name == TRANSFER_CALL and self.can_transfer:
            name = args.get("destination")
            target = self.destinations.get(name) if isinstance(name, str) else None
            if target is None:
                # The model chooses a name; a raw number or an unknown name is refused.
                return ToolOutcome(
                    json.dumps(
                        {
                            "ok": False,
                            "error": f"unknown destination {name!r}",
                            "destinations": sorted(self.destinations),
                        }
                    )
                )
            return ToolOutcome(
                json.dumps({"ok": True, "destination": name}),
                Ending(
                    "transfer",
                    {"Twiml": transfer_twiml(target)},
                    self.settings.transfer_instructions,
                    target,
                ),
            )
        http_tool = self.http.get(call.name)
        if http_tool is not None:
            ran = await http_tool.run(call, context)
            return ToolOutcome(ran.output, outcome=ran.outcome)
        tool = self.custom.get(call.name)
        if tool is None:
            return ToolOutcome(
                json.dumps({"ok": False, "error": f"no tool named {call.name!r}"}),
                outcome="unknown_tool",
            )
        # A handler taking two arguments gets the call's context too.
        with_context = len(inspect.signature(tool.handler).parameters) >= 2
        handler_args: tuple[Any, ...] = (args, context) if with_context else (args,)
        try:
            async with asyncio.timeout(self.settings.tool_timeout_s):
                if inspect.iscoroutinefunction(tool.handler):
                    result = await tool.handler(*handler_args)
                else:
                    result = await asyncio.to_thread(tool.handler, *handler_args)
        except TimeoutError:
            log.warning("tool %s timed out after %g s", call.name, self.settings.tool_timeout_s)
            return ToolOutcome(
                json.dumps({"ok": False, "error": "the tool timed out"}), outcome="timeout"
            )
        except Exception as exc:  # an operator's code: report, never crash the call
            log.warning("tool %s failed: %r", call.name, exc, exc_info=True)
            return ToolOutcome(
                json.dumps({"ok": False, "error": "the tool failed"}), outcome="failed"
            )
        return ToolOutcome(result if isinstance(result, str) else json.dumps(result, default=str))
