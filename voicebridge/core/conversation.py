"""When the model is asked to speak: one response at a time, retries, tools, the last line.

:class:`Conversation` turns the response sub-machines (:mod:`voicebridge.core.responses`,
:mod:`voicebridge.core.closing`) into Realtime client events.
"""

from __future__ import annotations

from collections.abc import Callable

from voicebridge.core import realtime as rt
from voicebridge.core.actions import Action, EndCall, RunTool, SendUpstream
from voicebridge.core.closing import Closing, ClosingState
from voicebridge.core.responses import (
    AfterFailure,
    FailureLadder,
    Requests,
    Responses,
    ToolCalls,
)
from voicebridge.core.stats import CallStats
from voicebridge.core.tools import function_calls, output_item

__all__ = ["Conversation"]


class Conversation:
    """The model's turns in one call (PROTOCOLS.md C.4): never a create over an active one."""

    def __init__(
        self, stats: CallStats, next_event_id: Callable[[], str], apology_instructions: str
    ) -> None:
        self.responses = Responses()
        self.requests = Requests()
        self.failures = FailureLadder()
        self.tools = ToolCalls()
        self.closing = Closing()
        self._stats = stats
        self._next_event_id = next_event_id
        self._apology = apology_instructions

    def create(self, instructions: str | None = None) -> SendUpstream:
        """``response.create``, for a caller that knows no response is active."""
        return self._ask(instructions)[1]

    def _ask(self, instructions: str | None) -> tuple[str, SendUpstream]:
        event_id = self._next_event_id()
        metadata = self.requests.asked(event_id, instructions)
        return event_id, SendUpstream(rt.response_create(event_id, instructions, metadata))

    def _ask_for_the_line(self) -> SendUpstream:
        request, send = self._ask(self.closing.line)
        self.closing.asked(request)
        return send

    def request_response(self) -> list[Action]:
        """``response.create`` now, or as soon as the active response is done.

        Never while closing: the last line is the last thing asked for.
        """
        if self.closing.reason is not None:
            return []
        return [self.create()] if self.responses.request() else []

    def hold(self, instructions: str) -> list[Action]:
        """A slow tool: a short holding line now, unless a response is active (it speaks
        already) or the call is closing; the tool's answer is asked for after it."""
        if self.closing.reason is not None or self.responses.active is not None:
            return []
        return [self.create(instructions)]

    def response_created(self, ev: rt.ResponseCreated) -> list[Action]:
        self.responses.created(ev.response_id)
        self._stats.responses += 1
        request = self.requests.created(ev.response_id, ev.metadata)
        ours = self.closing.response_created(ev.response_id, request)
        if ours or (request is None and self.closing.reason is not None):
            # The last line of a closing the caller has called off, or a response the server
            # began by itself while the call is closing (an idle re-prompt): never heard.
            self.responses.interrupt(ev.response_id)
            return [SendUpstream(rt.response_cancel(self._next_event_id(), ev.response_id))]
        return []

    def response_done(self, ev: rt.ResponseDone) -> list[Action]:
        queued = self.responses.done(ev.response_id)
        instructions = self.requests.instructions(ev.response_id)
        self._stats.add_usage(ev.usage)
        if self.closing.reason is not None:
            # Closing: nothing else is asked for, and tools are not run.
            return [self._ask_for_the_line()] if self.closing.response_done(ev.response_id) else []
        if ev.status == "failed":
            if queued:
                self.responses.request()  # the next create answers the queued request too
            return self._failed(instructions)
        actions: list[Action] = self.request_response() if queued else []
        if ev.status == "completed":
            calls = function_calls(ev.output)
            self.tools.started(len(calls))
            spoke = self.responses.has_spoken(ev.response_id)
            actions += [RunTool(call, spoke) for call in calls]
            self.failures.completed()
        elif ev.status == "incomplete":
            self._stats.incomplete_responses += 1
        return actions

    def _failed(self, instructions: str | None) -> list[Action]:
        """A failed response: asked again as it was asked (a greeting stays a greeting)."""
        self._stats.failed_responses += 1
        after = self.failures.failed()
        if after is AfterFailure.RETRY:
            return [self.create(instructions)]
        if after is AfterFailure.APOLOGISE:
            return [self.create(self._apology)]
        return [EndCall("responses_failing", failed=True)]

    def tool_result(self, call_id: str, output: str, *, respond: bool) -> list[Action]:
        """The tool's output goes back to the model, which then answers (one at a time)."""
        none_left = self.tools.finished()
        item = rt.create_item(output_item(call_id, output), self._next_event_id())
        actions: list[Action] = [SendUpstream(item)]
        if respond and none_left:
            actions += self.request_response()
        return actions

    def close(
        self, reason: str, instructions: str | None, *, can_speak: bool, yields: bool = False
    ) -> list[Action]:
        """Start the closing (once); see :meth:`voicebridge.core.call.CallCore.close`."""
        if self.closing.reason is not None:
            return []
        active = self.responses.active
        state = self.closing.close(
            reason, instructions, can_speak=can_speak, busy=active is not None, yields=yields
        )
        if state is ClosingState.CANCELLING and active is not None:
            # Let the server finish (cancel) it first: one response at a time.
            self.responses.interrupt(active)
            return [SendUpstream(rt.response_cancel(self._next_event_id(), active))]
        if state is ClosingState.ASKED:
            return [self._ask_for_the_line()]
        return []  # nobody to speak it, or nothing to say: end once playback is done

    def caller_spoke(self) -> bool:
        """The caller started speaking: True if that called off a closing that yields."""
        return self.closing.caller_spoke()
