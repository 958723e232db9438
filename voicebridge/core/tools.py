"""Function calling: the tools voicebridge declares and the calls the model makes. No I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "END_CALL",
    "TRANSFER_CALL",
    "FunctionCall",
    "end_call_tool",
    "function_calls",
    "output_item",
    "parse_destinations",
    "transfer_call_tool",
    "transfer_twiml",
]

END_CALL = "end_call"
TRANSFER_CALL = "transfer_call"


@dataclass(frozen=True, slots=True)
class FunctionCall:
    call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as an object; ``{}`` when the model wrote something else."""
        try:
            value = json.loads(self.arguments or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


def function_calls(output: Iterable[Any]) -> list[FunctionCall]:
    """The function calls in a ``response.done``'s output."""
    calls = []
    for item in output:
        if not isinstance(item, dict) or item.get("type") != "function_call":
            continue
        call_id, name = item.get("call_id"), item.get("name")
        if isinstance(call_id, str) and isinstance(name, str):
            arguments = item.get("arguments")
            calls.append(
                FunctionCall(call_id, name, arguments if isinstance(arguments, str) else "")
            )
    return calls


def output_item(call_id: str, output: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def end_call_tool() -> dict[str, Any]:
    return {
        "type": "function",
        "name": END_CALL,
        "description": (
            "End the phone call. Use it when the caller says goodbye or asks to hang up, "
            "after you have said goodbye."
        ),
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
    }


def transfer_call_tool(destinations: Iterable[str]) -> dict[str, Any]:
    names = sorted(destinations)
    return {
        "type": "function",
        "name": TRANSFER_CALL,
        "description": (
            "Transfer the caller to a person. Choose the destination by name; never invent "
            "a phone number."
        ),
        "parameters": {
            "type": "object",
            "properties": {"destination": {"type": "string", "enum": names}},
            "required": ["destination"],
            "additionalProperties": False,
        },
    }


def transfer_twiml(target: str) -> str:
    """TwiML that dials a number or a SIP URI (the call's document is replaced by it)."""
    from xml.sax.saxutils import escape

    noun = f"<Sip>{escape(target)}</Sip>" if target.startswith("sip:") else escape(target)
    return f"<Response><Dial>{noun}</Dial></Response>"


def parse_destinations(text: str) -> Mapping[str, str]:
    """``sales=+14155550100,support=sip:help@example.com`` -> {name: target}."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, target = part.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise ValueError(f"{part!r} is not name=number or name=sip:uri")
        out[name.strip()] = target.strip()
    return out
