"""The business side of an app: profiles per number, tools, call events, one HTTP client.

``create_app`` builds one :class:`Connect` (a start-up error if a file or template is
wrong) and hands it to every call. A call asks it, once ``start`` is admitted, for its
:class:`CallSetup` (the called number's profile, with the call's context quoted into the
instructions), and tells it when it started and how it ended (the call events).
:meth:`Connect.lifespan` runs the event worker while the app serves and closes the HTTP
client after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from voicebridge.config import Settings
from voicebridge.core import realtime as rt
from voicebridge.core import twilio as tw
from voicebridge.core.call import CallPolicy
from voicebridge.core.context import CallContext
from voicebridge.core.outbound import OUTBOUND_PARAMETER, OutboundRequest
from voicebridge.core.transcript import Transcript
from voicebridge.server.call_events import CallEvents
from voicebridge.server.http_client import OutboundHttp
from voicebridge.server.lifetime import CallResult
from voicebridge.server.outbound_profile import outbound_profile
from voicebridge.server.profiles import Profile, Profiles, load_profiles
from voicebridge.server.tool_calls import ToolMetrics
from voicebridge.server.tools import Tool, load_custom_tools

__all__ = ["CallSetup", "Connect"]

Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class CallSetup:
    """What one call runs with, chosen by the number it reached."""

    profile: Profile
    context: CallContext
    session: rt.SessionConfig
    policy: CallPolicy


class Connect:
    """Profiles, tools, events and the outbound client of one app."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        *,
        custom: list[Tool] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Raises:
        ConfigError: ``CUSTOM_TOOLS``, ``PROFILES_FILE``, ``TOOLS_FILE`` or a template is wrong.
        """
        self.settings = settings
        self.http = OutboundHttp(transport)
        self.tool_metrics = ToolMetrics(registry)
        if custom is None:
            custom = load_custom_tools(settings.custom_tools)
        self.profiles: Profiles = load_profiles(settings, custom, self.http, self.tool_metrics)
        self.events = (
            CallEvents(settings, self.http, registry) if settings.call_events_url else None
        )
        # Told of an outbound call's start (server/outbound.py watches for its AMD verdict);
        # answers its request if its webhook came to this instance.
        self.outbound_request: Callable[[str], OutboundRequest | None] = lambda call_sid: None

    def for_number(self, called: str) -> Profile:
        return self.profiles.for_number(called)

    def setup(self, start: tw.Start) -> CallSetup:
        """The call's profile, context, session and policy (``start`` was admitted)."""
        profile = self.for_number(start.custom_parameters.get("To", ""))
        if OUTBOUND_PARAMETER in start.custom_parameters:  # a call POST /calls placed
            profile = outbound_profile(self.profiles, start, self.outbound_request)
        context = CallContext.from_start(start, profile.name)
        session, policy = profile.session(context)
        return CallSetup(profile, context, session, policy)

    # -- call events ---------------------------------------------------------------

    def call_started(self, setup: CallSetup) -> None:
        if self.events is not None:
            self.events.emit("call.started", {"call": setup.context.as_json()})

    def call_ended(self, setup: CallSetup, result: CallResult, transcript: Transcript) -> None:
        """``call.transferred`` (for a transfer), then ``call.ended`` with the transcript."""
        if self.events is None:
            return
        call = setup.context.as_json()
        if result.outcome == "transfer":
            self.events.emit("call.transferred", {"call": call, "destination": result.destination})
        stats = result.stats
        turns = [t.as_record() for t in transcript.spoken()]
        self.events.emit(
            "call.ended",
            {
                "call": call,
                "outcome": result.outcome,
                "reason": result.reason.partition(":")[0][:64],  # never a peer's text
                "duration_s": round(result.duration_s, 1),
                "turns": len(turns),
                "barge_ins": stats.barge_ins,
                "tokens": dict(stats.tokens),
                "transcript": turns,
            },
        )

    # -- the app's lifetime ----------------------------------------------------------

    def lifespan(self, inner: Lifespan | None = None) -> Lifespan:
        """``inner`` (the app's own lifespan) with the event worker and the client around it."""

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            try:
                async with contextlib.AsyncExitStack() as stack:
                    if self.events is not None:
                        await stack.enter_async_context(self.events.running())
                    if inner is not None:
                        await stack.enter_async_context(inner(app))
                    yield
            finally:
                await self.http.aclose()

        return lifespan
