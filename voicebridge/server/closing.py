"""Ending a call well, and the model's function calls (one of which may end it).

``closer`` waits for a close request (the session limit, a drain, the end-call or transfer
tool), has the model say a closing line, waits for the caller to hear it (at most
``closing_timeout_s``) and ends the call: closing the stream makes Twilio request
``<Connect action>``, whose answer (the call's recorded outcome) hangs up or dials, so no
apology follows. With REST credentials the call's TwiML is replaced through Twilio's REST
API instead. ``tools`` runs the model's function calls one at a time, off the audio path;
one slower than ``TOOL_HOLDING_DELAY_S`` gets a holding line from the model meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable

from voicebridge.config import Settings
from voicebridge.core.actions import Action, RunTool
from voicebridge.core.call import CallCore
from voicebridge.core.context import CallContext
from voicebridge.server.call_log import CallLog
from voicebridge.server.clock import now_ms, now_s
from voicebridge.server.http_client import OutboundHttp
from voicebridge.server.lifetime import CallEnded
from voicebridge.server.tool_calls import with_holding_line
from voicebridge.server.tools import Ending, Toolbox
from voicebridge.server.twilio_rest import TwilioRestError, rest_configured, update_call

__all__ = ["Closer"]

# Tool calls wait for the tools task in a queue of this size; a model calling more than
# this many at once gets an error output for the excess (counted).
TOOL_QUEUE = 8
CLOSING_POLL_S = 0.05
# After our REST update Twilio stops the stream: its `stop` ends the call within this.
REST_STOP_WAIT_S = 2.0


class Closer:
    """A call's deliberate ending and its tool calls."""

    def __init__(
        self,
        settings: Settings,
        core: CallCore,
        log: CallLog,
        apply: Callable[[list[Action]], None],
        toolbox: Toolbox,
    ) -> None:
        self.settings = settings
        self.core = core
        self.log = log
        self.apply = apply
        self.toolbox = toolbox
        # Set by the call once admitted: who is calling (for the tools), and the app's client.
        self.context = CallContext("")
        self.http = OutboundHttp()
        self.tool_q: asyncio.Queue[RunTool] = asyncio.Queue(maxsize=TOOL_QUEUE)
        self.ending: Ending | None = None
        self.requested = asyncio.Event()
        self.reason = ""
        self.instructions: str | None = settings.closing_instructions
        # Set once Twilio's REST API took our ending: the `stop` that follows is ours.
        self.ended_through_twilio: str | None = None
        self.ending_through_twilio: str | None = None  # asked, not yet answered

    def request_close(self, reason: str, instructions: str | None = "") -> None:
        """End the call well: the model says a closing line, the caller hears it, the end.

        ``instructions`` is the closing line ("" for CLOSING_INSTRUCTIONS; None when the
        model has already said its last words).
        """
        if not self.requested.is_set():
            self.reason = reason
            self.instructions = (
                self.settings.closing_instructions if instructions == "" else instructions
            )
            self.requested.set()

    async def closer(self) -> None:
        while True:
            await self.requested.wait()
            reason = self.reason
            self.log.info("closing the call (%s)", reason)
            # Only the model's own goodbye yields to the caller; a transfer, a drain or the
            # session limit ends the call whatever the caller says over the last line.
            yields = self.ending is not None and self.ending.reason == "end_call"
            await self._session_ready()
            self.apply(self.core.close(reason, self.instructions, yields=yields))
            if await self._line_heard():
                break
            self.log.info("closing called off: the caller spoke over the goodbye (%s)", reason)
            self.ending = None
            self.requested.clear()
        await self._end_through_twilio(reason)
        raise CallEnded(reason, failed=False, deliberate=True)

    async def _session_ready(self) -> None:
        """A close asked before the upstream's session is ready (a call admitted during a
        drain) waits for it, as long as the session may take to open: the line needs it."""
        deadline = now_s() + self.settings.upstream_connect_timeout_s
        # Polled, as the line's playback is: readiness is the core's state, not an event.
        while self.instructions and not self.core.session_ready:
            if now_s() >= deadline:
                return
            await asyncio.sleep(CLOSING_POLL_S)

    async def _line_heard(self) -> bool:
        """Wait until the closing line is heard (or the deadline); False if called off."""
        deadline = now_s() + self.settings.closing_timeout_s
        # Polled: the last echo is an event, but "nothing left to play" is a projection.
        while self.core.closing is not None and now_s() < deadline:
            if self.core.closing_finished(now_ms()):
                return True
            await asyncio.sleep(CLOSING_POLL_S)
        if self.core.closing is None:
            return False
        self.log.warning("closing line not heard within %g s", self.settings.closing_timeout_s)
        return True

    async def _end_through_twilio(self, reason: str) -> None:
        """With REST credentials, replace the call's TwiML (hang up, or transfer).

        Without them (or when Twilio refuses), closing the stream is enough: the after-stream
        answer carries the ending out.
        """
        start = self.core.start
        if start is None or not rest_configured(self.settings):
            return
        params = self.ending.rest_params if self.ending else {"Status": "completed"}
        # Twilio's `stop` for this update may arrive ahead of its answer: still ours.
        self.ending_through_twilio = reason
        try:
            await update_call(self.http, self.settings, start.call_sid, params)
        except TwilioRestError as exc:
            self.ending_through_twilio = None
            self.log.warning(
                "could not end the call through Twilio's REST API (%s): %s; "
                "the after-stream answer ends it",
                reason,
                exc,
            )
            return
        self.log.info("call %s through Twilio's REST API (%s)", reason, ", ".join(params))
        self.ended_through_twilio = reason
        await asyncio.sleep(REST_STOP_WAIT_S)  # twilio-in ends the call on Twilio's `stop`

    # -- tools --------------------------------------------------------------------------

    def submit(self, job: RunTool) -> None:
        """Queue a function call for the tools task, or answer it with an error when full."""
        try:
            self.tool_q.put_nowait(job)
        except asyncio.QueueFull:
            self.core.stats.upstream_ignored["tool_calls_over_limit"] += 1
            error = json.dumps({"ok": False, "error": "too many tool calls at once"})
            self.apply(self.core.tool_result(job.call.call_id, error))

    async def tools(self) -> None:
        """Run the model's function calls one at a time, off the audio path."""
        while True:
            job = await self.tool_q.get()
            slow = self.toolbox.slow(job.call.name)
            outcome, _ = await with_holding_line(
                self.toolbox.run(job.call, self.context),
                self.settings.tool_holding_delay_s if slow else 0.0,
                functools.partial(self._holding_line, job.call.name),
            )
            ending = outcome.ending
            self.apply(
                self.core.tool_result(job.call.call_id, outcome.output, respond=ending is None)
            )
            if ending is not None and not self.requested.is_set():
                self.ending = ending
                self.request_close(ending.reason, None if job.spoke else ending.instructions)

    def _holding_line(self, tool: str) -> None:
        self.log.info("tool %s still running: the model says a holding line", tool)
        self.apply(self.core.holding_line(self.settings.tool_holding_instructions))
