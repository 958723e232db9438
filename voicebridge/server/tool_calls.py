"""Around each tool call: its count and duration on ``/metrics``, and no dead air while it runs.

A tool that takes longer than ``TOOL_HOLDING_DELAY_S`` gets the model to say a short holding
line (``TOOL_HOLDING_INSTRUCTIONS``), so the caller hears something while the backend works;
the tool's answer follows as soon as it reports (one response at a time: after the holding
line, if that is still playing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["OUTCOMES", "ToolMetrics", "with_holding_line"]

T = TypeVar("T")

# Every outcome a tool call can have: a fixed set, so the label stays bounded.
OUTCOMES = (
    "ok",
    "invalid_arguments",
    "timeout",
    "http_error",
    "invalid_result",
    "unreachable",
    "failed",
    "unknown_tool",
)
_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)


class ToolMetrics:
    """``voicebridge_tool_calls_total{tool,outcome}`` and ``voicebridge_tool_call_seconds``.

    ``tool`` is a configured tool's name or ``unknown``: the model cannot mint labels.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.calls = Counter(
            "voicebridge_tool_calls",
            "tool calls, by tool and outcome",
            ["tool", "outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            "voicebridge_tool_call_seconds",
            "time from a tool call to its output",
            ["tool"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.known: set[str] = set()

    def configure(self, names: Collection[str]) -> None:
        """The tool names that are labels of their own."""
        self.known.update(names)

    def observe(self, tool: str, outcome: str, seconds: float) -> None:
        label = tool if tool in self.known else "unknown"
        self.calls.labels(label, outcome if outcome in OUTCOMES else "failed").inc()
        self.seconds.labels(label).observe(seconds)

    def count(self, tool: str, outcome: str) -> float:
        """One counter's value (for tests and the doctor)."""
        label = tool if tool in self.known else "unknown"
        value: float = self.calls.labels(label, outcome)._value.get()
        return value


async def with_holding_line(
    work: Awaitable[T], delay_s: float, hold: Callable[[], None]
) -> tuple[T, float]:
    """Await ``work``; if it is still running after ``delay_s`` (0: never), call ``hold``
    once. Returns its result and how long it took, in seconds (the loop's clock)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    timer = loop.call_later(delay_s, hold) if delay_s > 0 else None
    try:
        result = await work
    finally:
        if timer is not None:
            timer.cancel()
    return result, loop.time() - began
